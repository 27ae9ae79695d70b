/**
 * Repository locks (FORMAT.md, "Locks"). Two kinds:
 * - shared: held by every writer (backup). A writer's in-progress marker (writers/<pointId>.json) is its shared
 *   lock; see writers.ts. Many at once.
 * - exclusive: `locks/exclusive.json`, held by garbage collection, prune and passphrase change; one at a time.
 *   Created with a hard link (fails if the name exists, also on NFS), refreshed (mtime) periodically.
 * The exclusive operations are built to run alongside writers (FORMAT.md explains why for each), so the exclusive
 * lock excludes only other exclusive holders; shared holders are honoured, not waited for.
 *
 * A lock is stale when its owner process is gone (same host, pid no longer alive) or it was not refreshed for
 * `staleMs` on the repository's file-system clock. A stale lock is taken over, and the caller learns whose it was.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { fsyncDir, tempPathFor } from './atomic';
import { TEMP_MARKER } from './constants';
import { RepositoryError, RepositoryLockedError } from './errors';

/** How often a holder refreshes its exclusive lock. */
export const LOCK_REFRESH_MS = 30_000;
/** An exclusive lock not refreshed for this long is stale. */
export const DEFAULT_LOCK_STALE_MS = 5 * 60_000;

/** The file name of the exclusive lock inside `locks/`. */
export const EXCLUSIVE_LOCK_FILE = 'exclusive.json';

/** Who holds a lock: written into the lock file, shown in errors. */
export interface LockHolder {
  /** What the holder does: 'gc', 'prune', 'passphrase', or a writer's point id. */
  operation: string;
  host: string;
  pid: number;
  /** ISO time the lock was taken (holder's clock). */
  startedAt: string;
  /** Random token telling this holding apart from any other. */
  token: string;
}

/** A lock that was taken over because its owner died or stopped refreshing it. */
export interface StaleLock {
  /** What the holder did: 'gc', 'prune', 'passphrase', 'backup <pointId>'. */
  operation: string;
  host?: string;
  pid?: number;
  startedAt?: string;
  /** Why it counted as stale, e.g. "pid 123 is not running on host h" or "not refreshed for 12 min". */
  reason: string;
}

/** One line for humans: whose lock was taken over and why. */
export function describeStaleLock(s: StaleLock): string {
  const who = [s.host && `host ${s.host}`, s.pid !== undefined && `pid ${s.pid}`, s.startedAt && `since ${s.startedAt}`]
    .filter(Boolean)
    .join(', ');
  return `removed the stale lock of ${s.operation}${who ? ` (${who})` : ''}: ${s.reason}`;
}

export interface LockOptions {
  /** Not refreshed for this long = stale; default 5 min. */
  staleMs?: number;
  /** Called once per stale lock taken over (for a message to the user). */
  onStale?: (stale: StaleLock) => void;
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/** Whether a process with this pid exists on this machine. */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM'); // exists, owned by someone else
  }
}

/** Parses a lock file's content; undefined when it is not one (then only its age decides). */
export function parseHolder(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (
      typeof v.operation === 'string' &&
      typeof v.host === 'string' &&
      typeof v.pid === 'number' &&
      typeof v.startedAt === 'string' &&
      typeof v.token === 'string'
    ) {
      return { operation: v.operation, host: v.host, pid: v.pid, startedAt: v.startedAt, token: v.token };
    }
  } catch {
    // not JSON: treated as unknown holder
  }
  return undefined;
}

/** Reads a file without touching its atime where the platform allows it (writer markers keep a heartbeat there). */
export async function readNoAtime(file: string): Promise<string> {
  const noAtime = (fsConstants as Record<string, number>).O_NOATIME ?? 0;
  let handle;
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | noAtime);
  } catch (err) {
    if (!noAtime || !isErrno(err, 'EPERM')) throw err;
    handle = await fs.open(file, fsConstants.O_RDONLY);
  }
  try {
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Why the holder is certainly dead: it ran on this host and its pid is gone. Undefined when it may be alive
 * (another host, or the pid exists).
 */
export function deadOwnerReason(holder: { host: string; pid: number } | undefined): string | undefined {
  if (!holder || holder.host !== hostname() || holder.pid === process.pid) return undefined;
  return processAlive(holder.pid) ? undefined : `pid ${holder.pid} is not running on host ${holder.host}`;
}

/** The repository file system's current time (mtime of a file created now), so hosts with skewed clocks agree. */
export async function fileSystemNow(dir: string): Promise<number> {
  await fs.mkdir(dir, { recursive: true });
  const probe = path.join(dir, `.clock${TEMP_MARKER}${process.pid}-${randomBytes(6).toString('hex')}`);
  await fs.writeFile(probe, '');
  try {
    return (await fs.stat(probe)).mtimeMs;
  } finally {
    await fs.rm(probe, { force: true });
  }
}

function minutes(ms: number): string {
  return ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}

/** The exclusive lock of one repository (`<repo>/locks/exclusive.json`). */
export class ExclusiveLock implements RepositoryExclusiveLock {
  readonly file: string;

  constructor(readonly dir: string) {
    this.file = path.join(dir, EXCLUSIVE_LOCK_FILE);
  }

  /** The current holder, if any (with the time of its last refresh). */
  async holder(): Promise<{ holder?: LockHolder; refreshedAtMs: number } | undefined> {
    try {
      const [text, st] = await Promise.all([fs.readFile(this.file, 'utf8'), fs.stat(this.file)]);
      return { holder: parseHolder(text), refreshedAtMs: st.mtimeMs };
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  /**
   * Takes the lock for `operation`; a stale lock is taken over (reported through `onStale`). Throws
   * RepositoryLockedError when a live process holds it.
   */
  async acquire(operation: string, opts: LockOptions = {}): Promise<HeldLock> {
    const staleMs = opts.staleMs ?? DEFAULT_LOCK_STALE_MS;
    if (!Number.isFinite(staleMs) || staleMs <= 0) {
      throw new RepositoryError('lock stale age must be a positive number of ms', 'INVALID_OPTION');
    }
    await fs.mkdir(this.dir, { recursive: true });
    const holder: LockHolder = {
      operation,
      host: hostname(),
      pid: process.pid,
      startedAt: new Date().toISOString(),
      token: randomBytes(12).toString('hex'),
    };
    const temp = tempPathFor(this.file);
    await fs.writeFile(temp, JSON.stringify(holder) + '\n', { flag: 'wx' });
    try {
      const handle = await fs.open(temp, 'r+');
      await handle.sync().finally(() => handle.close());
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await fs.link(temp, this.file);
          await fsyncDir(this.dir);
          return new HeldLock(this.file, holder);
        } catch (err) {
          if (!isErrno(err, 'EEXIST')) throw err;
        }
        await this.takeOverIfStale(staleMs, opts.onStale);
      }
      throw new RepositoryError('could not take the repository lock: it keeps changing hands', 'LOCK_CONTENDED');
    } finally {
      await fs.rm(temp, { force: true });
    }
  }

  /** Removes the existing lock when it is stale; throws RepositoryLockedError when it is live. */
  private async takeOverIfStale(staleMs: number, onStale?: (s: StaleLock) => void): Promise<void> {
    const current = await this.holder();
    if (!current) return; // released meanwhile
    const now = await fileSystemNow(this.dir);
    const age = now - current.refreshedAtMs;
    const reason =
      deadOwnerReason(current.holder) ?? (age > staleMs ? `not refreshed for ${minutes(age)}` : undefined);
    const holder = current.holder ?? {
      operation: 'an unknown operation (unreadable lock file)',
      host: 'unknown',
      pid: 0,
      startedAt: 'unknown',
      token: '',
    };
    if (!reason) throw new RepositoryLockedError(holder, new Date(current.refreshedAtMs).toISOString());
    // Move it aside, then make sure what we moved is the lock we judged (not one taken meanwhile by another
    // process that also found the stale one): otherwise put it back.
    const aside = path.join(this.dir, `.stale${TEMP_MARKER}${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await fs.rename(this.file, aside);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    const moved = parseHolder(await fs.readFile(aside, 'utf8').catch(() => ''));
    if (current.holder && moved?.token !== current.holder.token) {
      await fs.link(aside, this.file).catch(() => undefined);
      await fs.rm(aside, { force: true });
      return;
    }
    await fs.rm(aside, { force: true });
    onStale?.({ operation: holder.operation, host: holder.host, pid: holder.pid, startedAt: holder.startedAt, reason });
  }
}

/** A lock this process holds; refreshed until release(). */
export class HeldLock implements HeldExclusiveLock {
  private readonly timer: NodeJS.Timeout;
  private released = false;

  constructor(
    readonly file: string,
    readonly holder: LockHolder,
    refreshMs = LOCK_REFRESH_MS,
  ) {
    this.timer = setInterval(() => void this.refresh(), refreshMs);
    this.timer.unref();
  }

  /** Sets the lock's mtime to now (the heartbeat others judge staleness by). */
  async refresh(): Promise<void> {
    const now = new Date();
    await fs.utimes(this.file, now, now).catch(() => undefined);
  }

  /** Throws when the lock file is gone or belongs to someone else (it was taken over as stale). */
  async assertHeld(): Promise<void> {
    const text = await fs.readFile(this.file, 'utf8').catch(() => '');
    if (parseHolder(text)?.token !== this.holder.token) {
      throw new RepositoryError(
        `the repository lock of this ${this.holder.operation} was taken over by another process (judged stale); stopped`,
        'LOCK_LOST',
      );
    }
  }

  /** Removes the lock if it is still ours. Safe to call more than once. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    const text = await fs.readFile(this.file, 'utf8').catch(() => '');
    if (parseHolder(text)?.token === this.holder.token) await fs.rm(this.file, { force: true });
  }
}

/** A held exclusive lock, in a folder (HeldLock) or on object storage. */
export interface HeldExclusiveLock {
  readonly holder: LockHolder;
  /** Throws when the lock was taken over (judged stale) by another process. */
  assertHeld(): Promise<void>;
  release(): Promise<void>;
}

/** An exclusive lock, in a folder (ExclusiveLock) or on object storage. */
export interface RepositoryExclusiveLock {
  holder(): Promise<{ holder?: LockHolder; refreshedAtMs: number } | undefined>;
  acquire(operation: string, opts?: LockOptions): Promise<HeldExclusiveLock>;
}

/** Runs `fn` while holding the exclusive lock for `operation`. */
export async function withExclusiveLock<T>(
  lock: RepositoryExclusiveLock,
  operation: string,
  opts: LockOptions,
  fn: (held: HeldExclusiveLock) => Promise<T>,
): Promise<T> {
  const held = await lock.acquire(operation, opts);
  try {
    return await fn(held);
  } finally {
    await held.release();
  }
}
