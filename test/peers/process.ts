// Process helpers shared by the test peers: finding a binary, a free port, a temp folder, spawning a server with a
// tail of its output for error messages, and waiting until it answers.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** A server a peer started: where to reach it, and how to stop it (removing its files). */
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

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** How a spawned process ended. */
export interface PeerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child process whose last output lines are kept for error messages. */
export interface SpawnedPeer {
  child: ChildProcess;
  /** Last lines of stdout/stderr. */
  tail(): string;
  /** Set once the process has exited (or could not be started). */
  exited(): PeerExit | undefined;
  /** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  cwd: string;
  /** The whole environment of the child; default: inherited. */
  env?: NodeJS.ProcessEnv;
}

/** Characters of output kept for messages. */
const TAIL_CHARS = 8000;

/** Starts `bin args` with stdout and stderr piped into a tail buffer; stdin is closed. */
export function spawnPeer(bin: string, args: string[], options: SpawnOptions): SpawnedPeer {
  const child = spawn(bin, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer | string): void => {
    output = (output + chunk.toString()).slice(-TAIL_CHARS);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exit: PeerExit | undefined;
  const exited = new Promise<void>((resolve) => {
    const done = (code: number | null, signal: NodeJS.Signals | null): void => {
      exit ??= { code, signal };
      resolve();
    };
    child.once('exit', done);
    // A binary that cannot be started emits 'error' and never 'exit'.
    child.once('error', (err) => {
      keep(String(err));
      if (child.pid === undefined) done(null, null);
    });
  });
  return {
    child,
    tail: () => output.trim(),
    exited: () => exit,
    stop: async (graceMs = 5000) => {
      if (exit) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls probe() until it resolves true; fails after timeoutMs or as soon as the process died. */
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

export interface ServerPeerOptions {
  /** Name for messages, e.g. "redis-server". */
  what: string;
  bin: string;
  args: string[];
  /** The server's private temp folder: its working directory, removed when it stops. */
  dir: string;
  /** What the returned Peer reports as its url. */
  url: string;
  /** Resolves true once the server answers. */
  ready: () => Promise<boolean>;
  readyTimeoutMs: number;
  /** Time between SIGTERM and SIGKILL on stop (default 5 s). */
  stopGraceMs?: number;
}

/**
 * Spawns a server in its temp folder and waits until it answers. The returned Peer's stop() ends the process and
 * removes the folder; if the server does not come up, both happen before the error is thrown.
 */
export async function startServerPeer(options: ServerPeerOptions): Promise<Peer> {
  const peer = spawnPeer(options.bin, options.args, { cwd: options.dir });
  const stop = async (graceMs = options.stopGraceMs): Promise<void> => {
    await peer.stop(graceMs);
    fs.rmSync(options.dir, { recursive: true, force: true });
  };
  try {
    await waitUntil(options.what, options.ready, peer, options.readyTimeoutMs);
  } catch (err) {
    await stop(1000);
    throw err;
  }
  return { url: options.url, stop: () => stop() };
}
