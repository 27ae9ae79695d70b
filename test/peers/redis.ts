// Test peer: a throw-away redis-server process on 127.0.0.1, a free port and a temp dir, without persistence; and a
// helper emptying one logical database of the shared test Redis.
import * as net from 'node:net';
import Redis from 'ioredis';
import { freePort, makeTempDir, requireBinary, startServerPeer, type Peer } from './process';

/** Sends one inline command to Redis over TCP and returns the first reply line. */
export function redisCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    socket.setTimeout(2000, () => socket.destroy(new Error('redis command timed out')));
    socket.once('error', reject);
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      const end = reply.indexOf('\r\n');
      if (end >= 0) {
        socket.end();
        resolve(reply.slice(0, end));
      }
    });
    socket.once('connect', () => socket.write(`${command}\r\n`));
  });
}

/** Starts redis-server; url is redis://127.0.0.1:PORT. */
export async function startRedis(): Promise<Peer> {
  const bin = requireBinary('redis-server');
  const dir = makeTempDir('vmkeep-redis-');
  const port = await freePort();
  const args = [
    '--bind', '127.0.0.1',
    '--port', String(port),
    '--dir', dir,
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'yes',
    '--daemonize', 'no',
    '--loglevel', 'warning',
  ];
  return startServerPeer({
    what: 'redis-server',
    bin,
    args,
    dir,
    url: `redis://127.0.0.1:${port}`,
    ready: async () => (await redisCommand(port, 'PING')) === '+PONG',
    readyTimeoutMs: 15_000,
  });
}

/** Empties logical database `db` of the Redis at `url` (redis://host:port[/n]), so a suite starts without old jobs. */
export async function flushRedisDb(url: string, db: number): Promise<void> {
  const redis = new Redis(`${url.replace(/\/\d*$/, '')}/${db}`, { lazyConnect: true });
  try {
    await redis.connect();
    await redis.flushdb();
  } finally {
    redis.disconnect();
  }
}
