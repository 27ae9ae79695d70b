// Test peer: a throw-away redis-server process on 127.0.0.1, a free port and a temp dir, without persistence.
// Also home of the small process helpers the other peers share (free port, wait, spawn with a log tail).
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Peer {
  url: string;
  stop(): Promise<void>;
}

/** Raised when a peer binary is missing: the message says how to get it. */
export class PeerUnavailableError extends Error {
  constructor(binary: string) {
    super(
      `${binary} not found on PATH (or /usr/sbin). Run the README test command (scripts/test.sh), which installs ` +
        'the Debian packages the tests need.',
    );
    this.name = 'PeerUnavailableError';
  }
}

/** Finds a binary on PATH, /usr/sbin or /usr/local/sbin; undefined when absent. */
export function findBinary(...names: string[]): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const name of names) {
    for (const dir of dirs) {
      if (!dir) continue;
      const candidate = path.join(dir, name);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        return candidate;
      } catch {
        // keep looking
      }
    }
  }
  return undefined;
}

export function requireBinary(...names: string[]): string {
  const found = findBinary(...names);
  if (!found) throw new PeerUnavailableError(names[0]);
  return found;
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A child process whose last output lines are kept for error messages. */
export interface SpawnedPeer {
  child: ChildProcess;
  /** Last lines of stdout/stderr. */
  tail(): string;
  /** Set once the process has exited. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export function spawnPeer(bin: string, args: string[], cwd: string): SpawnedPeer {
  const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve();
    });
  });
  child.once('error', (err) => {
    keep(Buffer.from(String(err)));
  });
  return {
    child,
    tail: () => output.trim(),
    exited: () => exit,
    stop: async (graceMs = 5000) => {
      if (exit) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exitedPromise;
      clearTimeout(timer);
    },
  };
}

/** Polls probe() until it resolves true; fails with describe() after timeoutMs or when the process died. */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  peer: SpawnedPeer,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exit = peer.exited();
    if (exit) throw new Error(`${what} exited early (code ${exit.code}, signal ${exit.signal}):\n${peer.tail()}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms:\n${peer.tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
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
  const peer = spawnPeer(bin, args, dir);
  try {
    await waitUntil('redis-server', async () => (await redisCommand(port, 'PING')) === '+PONG', peer, 15000);
  } catch (err) {
    await peer.stop(1000);
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      await peer.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

