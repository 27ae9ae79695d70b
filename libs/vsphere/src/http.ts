/** A small HTTPS GET over the session's verifying agent, for /folder and /sdk/vimServiceVersions.xml. */
import type { IncomingHttpHeaders } from 'node:http';
import * as https from 'node:https';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { ConnectionError } from './errors';
import { mapSoapError } from './faults';

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpGetOptions {
  agent: https.Agent;
  host: string;
  headers?: Record<string, string>;
  timeoutMs: number;
  /** Refuse bodies larger than this (bytes). */
  maxBytes: number;
  /**
   * Collect the body into this buffer (at least `maxBytes` long) instead of allocating one: the response's body
   * is then `into` itself when the body fills it, else a view of its start.
   */
  into?: Buffer;
}

export function httpGet(url: string, options: HttpGetOptions): Promise<HttpResponse> {
  const what = `GET ${new URL(url).pathname}`;
  return new Promise<HttpResponse>((resolve, reject) => {
    const into = options.into && options.into.length >= options.maxBytes ? options.into : undefined;
    const request = https.get(url, { agent: options.agent, headers: options.headers }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        if (size + chunk.length > options.maxBytes) {
          request.destroy(new ConnectionError(`${what} on ${options.host}: response larger than ${options.maxBytes} bytes`));
          return;
        }
        if (into) chunk.copy(into, size);
        else chunks.push(chunk);
        size += chunk.length;
      });
      response.once('end', () => {
        if (!response.complete) {
          reject(new ConnectionError(`${what} on ${options.host}: connection closed mid-response`));
          return;
        }
        const body = !into ? Buffer.concat(chunks) : size === into.length ? into : into.subarray(0, size);
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body });
      });
      response.once('error', (error) => reject(mapSoapError(error, options.host, what)));
    });
    request.setTimeout(options.timeoutMs, () => {
      request.destroy(new ConnectionError(`cannot reach ${options.host} (${what}): timed out`));
    });
    request.once('error', (error) => reject(mapSoapError(error, options.host, what)));
  });
}

/** A request body of known length. */
export interface PutBody {
  stream: Readable;
  size: number;
}

/**
 * HTTPS PUT of a streamed body with Content-Length. Rejects with ConnectionError when the connection breaks or
 * times out, and with the signal's reason when aborted (the request is destroyed, the host sees a short body).
 */
export function httpPut(url: string, body: PutBody, options: HttpGetOptions & { signal?: AbortSignal }): Promise<HttpResponse> {
  const what = `PUT ${new URL(url).pathname}`;
  return new Promise<HttpResponse>((resolve, reject) => {
    let settled = false;
    // An error of the body's source (e.g. a repository read) is passed on as it is, not as a network error.
    let sourceError: unknown;
    body.stream.once('error', (error) => (sourceError ??= error));
    const fail = (error: unknown, mapped = false) => {
      if (settled) return;
      settled = true;
      body.stream.destroy();
      request.destroy();
      reject(sourceError ?? (mapped ? error : mapSoapError(error, options.host, what)));
    };
    const request = https.request(
      url,
      {
        method: 'PUT',
        agent: options.agent,
        headers: { ...options.headers, 'Content-Type': 'application/octet-stream', 'Content-Length': String(body.size) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size <= options.maxBytes) chunks.push(chunk);
        });
        response.once('end', () => {
          if (settled) return;
          settled = true;
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) });
        });
        response.once('error', fail);
      },
    );
    request.setTimeout(options.timeoutMs, () => fail(new ConnectionError(`cannot reach ${options.host} (${what}): timed out`)));
    request.once('error', fail);
    const onAbort = () => fail(options.signal?.reason instanceof Error ? options.signal.reason : new ConnectionError(`${what}: cancelled`), true);
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    pipeline(body.stream, request)
      .catch((error: unknown) => fail(error))
      .finally(() => options.signal?.removeEventListener('abort', onAbort));
  });
}
