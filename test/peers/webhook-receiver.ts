// Test peer: a real HTTP server receiving VMKeep webhooks on 127.0.0.1 and a free port, recording every request,
// and the receiver-side signature check the docs describe (docs/observability.md).
import { createHmac } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface WebhookReceiver {
  /** http://127.0.0.1:PORT */
  url: string;
  /** Every request in arrival order. */
  received: ReceivedWebhook[];
  close(): Promise<void>;
}

/** A webhook receiver: `/flaky` answers 500 to the first two attempts of each delivery, every other path 204. */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  const attempts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(parts).toString('utf8') });
      const id = String(req.headers['x-vmkeep-delivery']);
      const n = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, n);
      res.statusCode = req.url === '/flaky' && n <= 2 ? 500 : 204;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The receiver's check: HMAC-SHA256 with `secret` over `<timestamp>.<raw body>`, timestamp within 5 minutes. */
export function validSignature(r: ReceivedWebhook, secret: string): boolean {
  const ts = String(r.headers['x-vmkeep-timestamp']);
  const expected = `sha256=${createHmac('sha256', secret).update(`${ts}.${r.body}`).digest('hex')}`;
  return r.headers['x-vmkeep-signature'] === expected && Math.abs(Date.now() / 1000 - Number(ts)) < 300;
}

/** Polls `probe` every 200 ms until it returns a value. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
