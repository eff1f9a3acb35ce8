import { LabIcon } from '@jupyterlab/ui-components';

/** nbops' sidebar icon: a notebook page with a rising line (uses the theme's icon colour). */
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M5 2h11l4 4v16H5zM7 4v16h11V7h-3V4z"/>
    <path d="M8.2 16.8l2.8-3.6 2.4 1.8 3.2-5 1.2.8-4 6.2-2.4-1.8-2 2.6z"/>
  </g>
</svg>`;

export const nbopsIcon = new LabIcon({ name: 'nbops:icon', svgstr: svg });
