/**
 * Colours for runs in charts and chips, read from the theme's --jp-* variables so charts
 * follow the light/dark theme (canvas needs concrete colours, so they are resolved at draw time).
 */
const THEME_VARS = [
  '--jp-brand-color1',
  '--jp-warn-color1',
  '--jp-success-color1',
  '--jp-error-color1',
  '--jp-info-color1'
];

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.body).getPropertyValue(name).trim();
  return v || fallback;
}

export function isLightTheme(): boolean {
  return document.body.dataset.jpThemeLight !== 'false';
}

/** The i-th run's colour: the theme's five signal colours, then evenly spaced hues. */
export function seriesColor(i: number): string {
  if (i < THEME_VARS.length) {
    return cssVar(THEME_VARS[i], `hsl(${(i * 67) % 360}, 60%, 50%)`);
  }
  const hue = (i * 137.5 + 200) % 360;
  return `hsl(${hue.toFixed(0)}, 65%, ${isLightTheme() ? 42 : 66}%)`;
}

export interface ChartTheme {
  text: string;
  grid: string;
  font: string;
}

export function chartTheme(): ChartTheme {
  return {
    text: cssVar('--jp-ui-font-color2', '#616161'),
    grid: cssVar('--jp-border-color2', '#e0e0e0'),
    font: `11px ${cssVar('--jp-ui-font-family', 'sans-serif')}`
  };
}

/** Calls `onChange` when JupyterLab switches theme (it rewrites attributes on <body>). */
export function onThemeChange(onChange: () => void): () => void {
  const observer = new MutationObserver(() => onChange());
  observer.observe(document.body, {
    attributes: true,
    attributeFilter: ['data-jp-theme-name', 'data-jp-theme-light']
  });
  return () => observer.disconnect();
}
