import { createHmac } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { postSigned, signWebhook } from './signed-post';
import { jobEvent } from './webhooks.module';

describe('signWebhook / postSigned', () => {
  let server: http.Server;
  let url: string;
  const seen: { headers: http.IncomingHttpHeaders; body: string }[] = [];
  const timers: NodeJS.Timeout[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ headers: req.headers, body });
        if (req.url === '/slow') return void timers.push(setTimeout(() => res.end(), 2000));
        res.statusCode = req.url === '/fail' ? 500 : 200;
        res.end('ignored');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    timers.forEach(clearTimeout);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('signs <timestamp>.<body> with HMAC-SHA256 and sends event, delivery and timestamp headers', async () => {
    const body = JSON.stringify({ event: 'backup.succeeded' });
    const out = await postSigned(`${url}/ok`, body, 'k'.repeat(16), { event: 'backup.succeeded', deliveryId: 'd-1' }, 1000);
    expect(out).toMatchObject({ ok: true, status: 200 });
    const got = seen[seen.length - 1];
    expect(got.body).toBe(body);
    const ts = Number(got.headers['x-vmkeep-timestamp']);
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(5);
    expect(got.headers['x-vmkeep-signature']).toBe(`sha256=${createHmac('sha256', 'k'.repeat(16)).update(`${ts}.${body}`).digest('hex')}`);
    expect(got.headers['x-vmkeep-signature']).toBe(signWebhook('k'.repeat(16), ts, body));
    expect(got.headers).toMatchObject({ 'x-vmkeep-event': 'backup.succeeded', 'x-vmkeep-delivery': 'd-1', 'content-type': 'application/json' });
  });

  it('reports a non-2xx answer, a timeout and a refused connection as failures', async () => {
    const meta = { event: 'backup.failed', deliveryId: 'd-2' };
    expect(await postSigned(`${url}/fail`, '{}', 's', meta, 1000)).toMatchObject({ ok: false, status: 500, error: 'the receiver answered HTTP 500' });
    const slow = await postSigned(`${url}/slow`, '{}', 's', meta, 200);
    expect(slow).toMatchObject({ ok: false, status: null, error: 'no answer within 200 ms' });
    expect(slow.durationMs).toBeLessThan(1500);
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const refused = await postSigned(`http://127.0.0.1:${port}/x`, '{}', 's', meta, 1000);
    expect(refused).toMatchObject({ ok: false, status: null, error: 'request failed: ECONNREFUSED' });
  });

  it('maps finished jobs to events; cancelled jobs raise none', () => {
    expect(jobEvent('backup', 'succeeded')).toBe('backup.succeeded');
    expect(jobEvent('backup', 'failed')).toBe('backup.failed');
    expect(jobEvent('restore-vm', 'failed')).toBe('restore.failed');
    expect(jobEvent('backup', 'cancelled')).toBeUndefined();
    expect(jobEvent('backup', 'running')).toBeUndefined();
  });
});
