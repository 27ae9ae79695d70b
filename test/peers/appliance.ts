// Test peer: the real VMKeep appliance as the user runs it — the compiled API process and worker process(es)
// (dist/, built by scripts/build.js when the sources are newer than the last build), configured only through the
// environment, with their own temp data dir and repository, on 127.0.0.1 and a free port.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { freePort, makeTempDir, spawnPeer, waitUntil, type SpawnedPeer } from './process';
import type { VcsimInstance } from './vcsim';

const run = promisify(execFile);

export const ROOT = path.resolve(__dirname, '..', '..');
/**
 * VMKEEP_TEST_DIST: a copy of dist/ inside the checkout (e.g. .tmp/dist-copy) to run as it is, never rebuilt —
 * for runs while other work keeps rebuilding dist/.
 */
const PINNED_DIST = process.env.VMKEEP_TEST_DIST ? path.resolve(ROOT, process.env.VMKEEP_TEST_DIST) : undefined;
const DIST = PINNED_DIST ?? path.join(ROOT, 'dist');
const STAMP = path.join(DIST, '.build-stamp');
const LOCK = path.join(ROOT, '.tmp', 'build.lock');
export const CLI_BIN = PINNED_DIST ? path.join(PINNED_DIST, 'apps', 'cli', 'src', 'main.js') : path.join(ROOT, 'bin', 'vmkeep.js');

export interface ApplianceOptions {
  /** MySQL/MariaDB URL of a fresh database; omitted = the embedded default (SQLite file in the data dir). */
  databaseUrl?: string;
  /** redis://host:port; `redisDb` selects the logical database so suites running in parallel never share jobs. */
  redisUrl: string;
  redisDb: number;
  /** Extra environment for both processes (e.g. VMKEEP_SNAPSHOT_CLEANUP_SECONDS). */
  env?: Record<string, string>;
}

export interface Appliance {
  /** http://127.0.0.1:PORT */
  url: string;
  adminPassword: string;
  /** Bearer token of the admin. */
  token: string;
  dataDir: string;
  repositoryPath: string;
  env: Record<string, string>;
  /** Calls the REST API as admin; throws with the server's message unless the status is 2xx. */
  api<T = unknown>(method: string, route: string, body?: unknown): Promise<T>;
  /** Calls the REST API as admin and returns the raw response (any status). */
  fetch(method: string, route: string, body?: unknown): Promise<Response>;
  /** Kills the worker process (SIGKILL) and starts a new one. */
  restartWorker(): Promise<void>;
  /** Stops the API process (SIGKILL by default: a crash) and starts a new one on the same port and data. */
  restartApi(signal?: NodeJS.Signals): Promise<void>;
  /** Last output lines of the API and the worker. */
  logs(): string;
  stop(): Promise<void>;
}

/** Compiles the monorepo into dist/ unless dist is newer than every source; safe to call from parallel suites. */
export async function ensureBuilt(): Promise<void> {
  if (PINNED_DIST) return;
  fs.mkdirSync(path.dirname(LOCK), { recursive: true });
  const deadline = Date.now() + 300_000;
  for (;;) {
    if (!isStale()) return;
    let fd: number | undefined;
    try {
      fd = fs.openSync(LOCK, 'wx');
    } catch {
      // Another suite is building (or died while building: a lock older than 5 minutes is stale).
      const age = Date.now() - (fs.statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > 300_000) fs.rmSync(LOCK, { force: true });
      if (Date.now() > deadline) throw new Error('timed out waiting for another build of dist/');
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    try {
      if (!isStale()) return;
      await run(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { cwd: ROOT, maxBuffer: 1 << 24 });
      return;
    } finally {
      fs.closeSync(fd);
      fs.rmSync(LOCK, { force: true });
    }
  }
}

function isStale(): boolean {
  let built: number;
  try {
    built = Number(fs.readFileSync(STAMP, 'utf8'));
  } catch {
    return true;
  }
  const newest = (dir: string): number => {
    let max = 0;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) max = Math.max(max, newest(full));
      else if (!entry.name.endsWith('.spec.ts')) max = Math.max(max, fs.statSync(full).mtimeMs);
    }
    return max;
  };
  return newest(path.join(ROOT, 'apps')) > built || newest(path.join(ROOT, 'libs')) > built;
}

/** Starts the API, waits until it answers, logs in as admin, then starts one worker. */
export async function startAppliance(options: ApplianceOptions): Promise<Appliance> {
  await ensureBuilt();
  const dataDir = makeTempDir('vmkeep-appliance-');
  const port = await freePort();
  const adminPassword = randomBytes(12).toString('hex');
  const env: Record<string, string> = {
    VMKEEP_DATA_DIR: dataDir,
    VMKEEP_API_HOST: '127.0.0.1',
    VMKEEP_API_PORT: String(port),
    VMKEEP_ADMIN_USER: 'admin',
    VMKEEP_ADMIN_PASSWORD: adminPassword,
    VMKEEP_SECRET_KEY: randomBytes(32).toString('hex'),
    VMKEEP_REPOSITORY: path.join(dataDir, 'repository'),
    VMKEEP_LOG_LEVEL: 'log',
    NO_COLOR: '1',
    REDIS_URL: `${options.redisUrl.replace(/\/\d*$/, '')}/${options.redisDb}`,
    ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
    ...options.env,
  };
  const url = `http://127.0.0.1:${port}`;
  // Only our settings on top of PATH/HOME: nothing of the caller's VMKEEP_*, DATABASE_URL or REDIS_URL leaks in.
  // (A jest test's process.env is a sandbox copy that child_process does not see, so it is always passed.)
  const childEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...env };
  const spawnApp = (entry: string): SpawnedPeer =>
    spawnPeer(process.execPath, [path.join(DIST, entry)], { cwd: dataDir, env: childEnv });

  let api = spawnApp('apps/api/src/main.js');
  let worker: SpawnedPeer | undefined;
  let token = '';
  const send = (method: string, route: string, body?: unknown): Promise<Response> =>
    fetch(url + route, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const call = async <T>(method: string, route: string, body?: unknown): Promise<T> => {
    const res = await send(method, route, body);
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route} → HTTP ${res.status}: ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  const startWorker = async (): Promise<void> => {
    worker = spawnApp('apps/worker/src/main.js');
    await waitUntil('vmkeep worker', async () => /processing vmkeep-backup/.test(worker!.tail()), worker, 60_000);
  };
  const stop = async (): Promise<void> => {
    await Promise.allSettled([worker?.stop(10_000), api.stop(10_000)]);
    fs.rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    await waitUntil('vmkeep api', async () => (await fetch(`${url}/api/health`)).ok, api, 60_000);
    token = (await call<{ token: string }>('POST', '/api/auth/login', { username: 'admin', password: adminPassword })).token;
    await startWorker();
  } catch (err) {
    const tail = `--- api ---\n${api.tail()}\n--- worker ---\n${worker?.tail() ?? ''}`;
    await stop();
    throw new Error(`${(err as Error).message}\n${tail}`, { cause: err });
  }

  return {
    url,
    adminPassword,
    get token() {
      return token;
    },
    dataDir,
    repositoryPath: env.VMKEEP_REPOSITORY,
    env,
    api: call,
    fetch: send,
    async restartWorker() {
      worker?.child.kill('SIGKILL');
      await worker?.stop(1000);
      await startWorker();
    },
    async restartApi(signal: NodeJS.Signals = 'SIGKILL') {
      api.child.kill(signal);
      await api.stop(10_000);
      api = spawnApp('apps/api/src/main.js');
      await waitUntil('vmkeep api', async () => (await fetch(`${url}/api/health`)).ok, api, 60_000);
    },
    logs: () => `--- api ---\n${api.tail()}\n--- worker ---\n${worker?.tail() ?? ''}`,
    stop,
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the compiled `vmkeep` CLI (bin/vmkeep.js) as a user would. HOME points at `home` so the saved-token file
 * lands in a temp folder; VMKEEP_URL / VMKEEP_TOKEN are passed only when given in `env`.
 */
export function vmkeep(
  args: string[],
  options: { home: string; env?: Record<string, string>; input?: string; timeoutMs?: number },
): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: options.home, ...options.env };
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [CLI_BIN, ...args],
      { cwd: options.home, env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        if (err && code === -1) reject(new Error(`vmkeep ${args.join(' ')} did not finish: ${err.message}\n${stderr}`));
        else resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

/** The fields of a job the suites look at. */
export interface JobRow {
  id: string;
  state: string;
  phase: string | null;
  error: string | null;
  progress: number;
  bytesDone: number;
  bytesTotal: number;
  speed: number;
  snapshotMoref?: string | null;
  restorePointId: string | null;
  stats: Record<string, number> | null;
}

/** Polls GET /api/jobs/:id until `until(job)` holds (default: a final state). */
export async function waitForJob(
  app: Pick<Appliance, 'api' | 'logs'>,
  jobId: string,
  until: (job: JobRow) => boolean = (job) => ['succeeded', 'failed', 'cancelled'].includes(job.state),
  timeoutMs = 120_000,
): Promise<JobRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await app.api<JobRow>('GET', `/api/jobs/${jobId}`);
    if (until(job)) return job;
    if (Date.now() > deadline) {
      throw new Error(`job ${jobId} did not reach the awaited state (now ${JSON.stringify(job)})\n${app.logs()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Lists from the API come as an array or as { items }. */
export function itemsOf<T>(data: T[] | { items: T[] }): T[] {
  return Array.isArray(data) ? data : data.items;
}

/** Registers a vCenter simulator (or any host with those credentials) as host `name` and syncs its inventory. */
export async function addVcsimHost(
  app: Pick<Appliance, 'api'>,
  sim: Pick<VcsimInstance, 'url' | 'username' | 'password' | 'thumbprint'>,
  name = 'vcsim',
): Promise<string> {
  const host = await app.api<{ id: string }>('POST', '/api/hosts', {
    name,
    url: sim.url,
    username: sim.username,
    password: sim.password,
    thumbprint: sim.thumbprint,
  });
  await app.api('POST', `/api/hosts/${host.id}/sync`);
  return host.id;
}

/** The id of the synced VM called `name`; throws when the inventory has none. */
export async function vmIdByName(app: Pick<Appliance, 'api'>, name: string): Promise<string> {
  const vm = itemsOf(await app.api<{ id: string; name: string }[]>('GET', '/api/vms')).find((v) => v.name === name);
  if (!vm) throw new Error(`no VM named ${name} in the appliance's inventory`);
  return vm.id;
}

/** Starts a backup of the VM through the API and waits until its job is final (the caller checks the state). */
export async function runBackup(
  app: Pick<Appliance, 'api' | 'logs'>,
  vmId: string,
  body: Record<string, unknown> = { quiesce: false },
): Promise<JobRow> {
  const job = await app.api<{ id: string }>('POST', `/api/vms/${vmId}/backup`, body);
  return waitForJob(app, job.id);
}
