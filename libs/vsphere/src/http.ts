/** A small HTTPS GET over the session's verifying agent, for /folder and /sdk/vimServiceVersions.xml. */
import type { IncomingHttpHeaders } from 'node:http';
import * as https from 'node:https';
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
}

export function httpGet(url: string, options: HttpGetOptions): Promise<HttpResponse> {
  const what = `GET ${new URL(url).pathname}`;
  return new Promise<HttpResponse>((resolve, reject) => {
    const request = https.get(url, { agent: options.agent, headers: options.headers }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) {
          request.destroy(new ConnectionError(`${what} on ${options.host}: response larger than ${options.maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.once('end', () => {
        if (!response.complete) {
          reject(new ConnectionError(`${what} on ${options.host}: connection closed mid-response`));
          return;
        }
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) });
      });
      response.once('error', (error) => reject(mapSoapError(error, options.host, what)));
    });
    request.setTimeout(options.timeoutMs, () => {
      request.destroy(new ConnectionError(`cannot reach ${options.host} (${what}): timed out`));
    });
    request.once('error', (error) => reject(mapSoapError(error, options.host, what)));
  });
}
