/** Helpers for the CLI's specs: a real HTTP server standing in for the API, and in-memory stdio for runCli. */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';

/** What the fake API answers: JSON (default `{}`), or raw bytes with a content-length. */
export interface FakeReply {
  status: number;
  json?: unknown;
  raw?: Buffer;
}

/** One request the fake API took, in arrival order. */
export interface SeenRequest {
  method?: string;
  url?: string;
  auth?: string;
  body: string;
}

export interface FakeApi {
  /** http://127.0.0.1:PORT */
  url: string;
  seen: SeenRequest[];
  close(): Promise<void>;
}

/** Starts a fake API on 127.0.0.1 and a free port; `handler` answers each request from it and its body. */
export function fakeApi(handler: (req: http.IncomingMessage, body: string) => FakeReply): Promise<FakeApi> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, body });
      const out = handler(req, body);
      if (out.raw) {
        res.writeHead(out.status, { 'content-length': out.raw.length });
        res.end(out.raw);
      } else {
        res.writeHead(out.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(out.json ?? {}));
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        seen,
        close: () => new Promise((r) => server.close(() => r())),
      }),
    ),
  );
}

/** stdin holding `input`, and stdout/stderr collected as text. */
export function io(input = '') {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  stdin.end(input);
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  return { streams: { stdout, stderr, stdin }, out: () => out, err: () => err };
}
