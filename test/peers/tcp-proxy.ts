// Test peer: a tiny TCP proxy on 127.0.0.1 that sits between the appliance and a server (vcsim). It can be cut
// (every open connection is reset and new ones are reset on arrival, like a host that dropped off the network)
// and restored, and it can throttle the server→client direction so a backup is reliably "mid-read" for a while.
import * as net from 'node:net';

export interface TcpProxy {
  /** Port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /** Bytes forwarded from the target to clients so far. */
  readonly bytesDown: number;
  /** Resets every open connection and every new one until restore(). */
  cut(): void;
  restore(): void;
  /** Limits target→client bytes per second over all connections together; undefined = unlimited. */
  throttle(bytesPerSecond: number | undefined): void;
  close(): Promise<void>;
}

/** Rewrites the port of an http(s) URL, e.g. to send a client through the proxy. */
export function viaProxy(url: string, proxy: Pick<TcpProxy, 'port'>): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString().replace(/\/$/, '');
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<net.Socket>();
  let isCut = false;
  let rate: number | undefined;
  let bytesDown = 0;
  let nextSlot = 0;

  const server = net.createServer((client) => {
    if (isCut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    open.add(client);
    open.add(upstream);
    const forget = (): void => {
      open.delete(client);
      open.delete(upstream);
    };
    client.once('close', () => {
      upstream.destroy();
      forget();
    });
    upstream.once('close', () => {
      client.destroy();
      forget();
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.resetAndDestroy());

    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      bytesDown += chunk.length;
      if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
      if (rate !== undefined) {
        // One budget for all connections: this chunk takes the next free slot; hold the target back until then.
        const now = Date.now();
        nextSlot = Math.max(now, nextSlot) + (chunk.length / rate) * 1000;
        upstream.pause();
        setTimeout(() => {
          if (!upstream.destroyed && !client.writableNeedDrain) upstream.resume();
        }, nextSlot - now);
      }
    });
    upstream.on('end', () => client.end());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('tcp proxy has no port');

  return {
    port: address.port,
    get bytesDown() {
      return bytesDown;
    },
    cut() {
      isCut = true;
      for (const socket of open) socket.resetAndDestroy();
      open.clear();
    },
    restore() {
      isCut = false;
    },
    throttle(bytesPerSecond) {
      rate = bytesPerSecond;
    },
    close() {
      for (const socket of open) socket.destroy();
      open.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
