/**
 * The one place that talks to the nbops server extension (/nbops/api/...).
 * `ServerConnection.makeRequest` adds the token and the XSRF header itself.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error answered by the server (or the network), with a message for the user. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The server extension is missing (not installed, or not enabled). */
  get isMissingExtension(): boolean {
    return this.status === 404 && this.code === 'no_extension';
  }
}

export type Query = Record<string, string | number | undefined | null>;

function queryString(query: Query | undefined): string {
  if (!query) {
    return '';
  }
  const parts: string[] = [];
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') {
      parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/**
 * Call an endpoint under /nbops/api/ and return its JSON body.
 * Errors become `ApiError` carrying the server's `{error, message}`.
 */
export async function requestAPI<T>(
  endPoint: string,
  options: { method?: 'GET' | 'POST' | 'DELETE'; query?: Query; body?: unknown } = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url =
    URLExt.join(settings.baseUrl, 'nbops', 'api', endPoint) + queryString(options.query);
  const init: RequestInit = { method: options.method ?? 'GET' };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(0, 'network', `Cannot reach the Jupyter server: ${String(error)}`);
  }
  const text = await response.text();
  let data: unknown = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const body = (data ?? {}) as Partial<{ error: string; message: string }>;
    if (response.status === 404 && !body.error) {
      throw new ApiError(
        404,
        'no_extension',
        `The nbops server extension does not answer at /nbops/api/${endPoint}. ` +
          'Install nbops in the environment that ' +
          'runs Jupyter (`pip install nbops`), check `jupyter server extension list`, ' +
          'then restart JupyterLab.'
      );
    }
    throw new ApiError(
      response.status,
      body.error ?? 'http_error',
      body.message ?? `${response.status} ${response.statusText}`
    );
  }
  return data as T;
}
