import type { Readable } from 'node:stream';
import { Readable as NodeReadable } from 'node:stream';

/** The server answered with an error status; `message` is the server's own explanation. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The server could not be reached at all. */
export class UnreachableError extends Error {
  constructor(url: string, cause: unknown) {
    // fetch() reports "fetch failed" and keeps the reason (ECONNREFUSED, ENOTFOUND, ...) in `cause`.
    const err = cause as { message?: string; cause?: { message?: string; code?: string } } | undefined;
    const detail = err?.cause?.message ?? err?.cause?.code ?? err?.message ?? String(cause);
    super(`cannot reach VMKeep at ${url}: ${detail}`);
    this.name = 'UnreachableError';
  }
}

/** A download in progress: its length (when the server sent one) and the body. */
export interface Download {
  length?: number;
  body: Readable;
}

/** A small JSON client for the VMKeep REST API on Node's fetch. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token?: string,
  ) {}

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body ?? {});
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, body);
    const text = await res.text();
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(res.status, `the server sent a response that is not JSON (${method} ${path})`);
    }
  }

  /** GET of a binary resource, streamed. */
  async download(path: string): Promise<Download> {
    const res = await this.send('GET', path);
    if (!res.body) throw new ApiError(res.status, `empty response to GET ${path}`);
    const header = res.headers.get('content-length');
    return {
      length: header === null ? undefined : Number(header),
      body: NodeReadable.fromWeb(res.body as Parameters<typeof NodeReadable.fromWeb>[0]),
    };
  }

  private async send(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new UnreachableError(this.baseUrl, err);
    }
    if (!res.ok) throw new ApiError(res.status, await errorMessage(res));
    return res;
  }
}

/** The server's explanation of an error response (Nest: { message: string | string[] }). */
async function errorMessage(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const parsed = JSON.parse(text) as { message?: unknown; error?: unknown };
    const m = parsed.message ?? parsed.error;
    if (Array.isArray(m)) return m.join('; ');
    if (typeof m === 'string' && m) return m;
  } catch {
    // not JSON: fall through
  }
  return text.trim().slice(0, 500) || `HTTP ${res.status} ${res.statusText}`;
}
