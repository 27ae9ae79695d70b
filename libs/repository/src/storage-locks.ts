/**
 * Locks and writer markers on object storage (S3), where there is no rename, hard link or atime (FORMAT.md,
 * "Object storage"):
 * - the exclusive lock `locks/exclusive.json` is created with a conditional put (create-once); its holder
 *   refreshes it by writing it again (its time is the heartbeat); a stale one is deleted after checking its
 *   token once more, then taken with a conditional put like a free one;
 * - a writer's marker `writers/<pointId>.json` holds its start on the storage clock; the writer rewrites it as
 *   heartbeat, so the object's time is the last heartbeat.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { LOCKS_DIR, WRITERS_DIR } from './constants';
import { RepositoryError, RepositoryLockedError } from './errors';
import {
  DEFAULT_LOCK_STALE_MS,
  EXCLUSIVE_LOCK_FILE,
  HeldExclusiveLock,
  LOCK_REFRESH_MS,
  LockHolder,
  LockOptions,
  RepositoryExclusiveLock,
  StaleLock,
  deadOwnerReason,
  parseHolder,
} from './locks';
import { isPointId } from './names';
import type { ObjectStorage } from './storage';
import { WRITER_HEARTBEAT_MS, WriterHandle, WriterMarker, WriterMarkerStore } from './writers';

const LOCK_KEY = `${LOCKS_DIR}/${EXCLUSIVE_LOCK_FILE}`;

function age(ms: number): string {
  return ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}

/** A lock of this process on object storage; refreshed until release(). */
export class StorageHeldLock implements HeldExclusiveLock {
  private readonly timer: NodeJS.Timeout;
  private released = false;

  constructor(
    private readonly storage: ObjectStorage,
    readonly holder: LockHolder,
    refreshMs = LOCK_REFRESH_MS,
  ) {
    this.timer = setInterval(() => void this.refresh(), refreshMs);
    this.timer.unref();
  }

  private async mine(): Promise<boolean> {
    const text = (await this.storage.get(LOCK_KEY).catch(() => undefined))?.toString('utf8') ?? '';
    return parseHolder(text)?.token === this.holder.token;
  }

  /** Rewrites the lock (its time is the heartbeat), unless it was taken over meanwhile. */
  async refresh(): Promise<void> {
    if (this.released || !(await this.mine())) return;
    await this.storage.put(LOCK_KEY, JSON.stringify(this.holder) + '\n').catch(() => undefined);
  }

  async assertHeld(): Promise<void> {
    if (!(await this.mine())) {
      throw new RepositoryError(
        `the repository lock of this ${this.holder.operation} was taken over by another process (judged stale); stopped`,
        'LOCK_LOST',
      );
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    if (await this.mine()) await this.storage.delete(LOCK_KEY);
  }
}

/** The exclusive lock of a repository on object storage. */
export class StorageExclusiveLock implements RepositoryExclusiveLock {
  constructor(private readonly storage: ObjectStorage) {}

  async holder(): Promise<{ holder?: LockHolder; refreshedAtMs: number } | undefined> {
    const [data, info] = await Promise.all([this.storage.get(LOCK_KEY), this.storage.stat(LOCK_KEY)]);
    if (!data || !info) return undefined;
    return { holder: parseHolder(data.toString('utf8')), refreshedAtMs: info.mtimeMs };
  }

  /** Why the current lock is stale, or RepositoryLockedError when it is live; undefined when there is none. */
  async staleReason(staleMs: number): Promise<{ reason: string; holder: LockHolder } | undefined> {
    const current = await this.holder();
    if (!current) return undefined;
    const holder = current.holder ?? {
      operation: 'an unknown operation (unreadable lock)',
      host: 'unknown',
      pid: 0,
      startedAt: 'unknown',
      token: '',
    };
    const ageMs = (await this.storage.now()) - current.refreshedAtMs;
    // The storage clock has 1 s resolution: a lock is stale only when clearly older than staleMs.
    const reason = deadOwnerReason(current.holder) ?? (ageMs > staleMs + 1000 ? `not refreshed for ${age(ageMs)}` : undefined);
    if (!reason) throw new RepositoryLockedError(holder, new Date(current.refreshedAtMs).toISOString());
    return { reason, holder };
  }

  async acquire(operation: string, opts: LockOptions = {}): Promise<StorageHeldLock> {
    const staleMs = opts.staleMs ?? DEFAULT_LOCK_STALE_MS;
    if (!Number.isFinite(staleMs) || staleMs <= 0) {
      throw new RepositoryError('lock stale age must be a positive number of ms', 'INVALID_OPTION');
    }
    const holder: LockHolder = {
      operation,
      host: hostname(),
      pid: process.pid,
      startedAt: new Date().toISOString(),
      token: randomBytes(12).toString('hex'),
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      if (await this.storage.putIfAbsent(LOCK_KEY, JSON.stringify(holder) + '\n')) {
        return new StorageHeldLock(this.storage, holder);
      }
      const stale = await this.staleReason(staleMs);
      if (!stale) continue; // released meanwhile
      // Delete only the lock we judged: a lock taken meanwhile by another process carries another token.
      const again = await this.holder();
      if (again?.holder?.token !== stale.holder.token) continue;
      await this.storage.delete(LOCK_KEY);
      const { operation: op, host, pid, startedAt } = stale.holder;
      opts.onStale?.({ operation: op, host, pid, startedAt, reason: stale.reason } satisfies StaleLock);
    }
    throw new RepositoryError('could not take the repository lock: it keeps changing hands', 'LOCK_CONTENDED');
  }
}

interface StoredMarker {
  pointId: string;
  host: string;
  pid: number;
  startedAt: string;
  /** Start on the storage clock (ms). */
  startedAtMs: number;
}

function parseMarker(text: string): StoredMarker | undefined {
  try {
    const v = JSON.parse(text) as Partial<StoredMarker>;
    if (typeof v.host !== 'string' || typeof v.pid !== 'number' || typeof v.startedAtMs !== 'number') return undefined;
    return v as StoredMarker;
  } catch {
    return undefined;
  }
}

/** Writer markers as objects: `writers/<pointId>.json`, rewritten as heartbeat. */
export class StorageWriterMarkers implements WriterMarkerStore {
  constructor(private readonly storage: ObjectStorage) {}

  keyOf(pointId: string): string {
    return `${WRITERS_DIR}/${pointId}.json`;
  }

  async create(pointId: string): Promise<WriterHandle> {
    const key = this.keyOf(pointId);
    const marker: StoredMarker = {
      pointId,
      host: hostname(),
      pid: process.pid,
      startedAt: new Date().toISOString(),
      startedAtMs: await this.storage.now(),
    };
    const text = JSON.stringify(marker) + '\n';
    await this.storage.put(key, text);
    return new StorageWriterHandle(this.storage, key, text);
  }

  async list(): Promise<WriterMarker[]> {
    const out: WriterMarker[] = [];
    for (const o of await this.storage.list(`${WRITERS_DIR}/`)) {
      const pointId = o.key.slice(WRITERS_DIR.length + 1).replace(/\.json$/, '');
      if (!isPointId(pointId) || o.key !== this.keyOf(pointId)) continue;
      const stored = parseMarker((await this.storage.get(o.key))?.toString('utf8') ?? '');
      if (!stored && !(await this.storage.stat(o.key))) continue; // finished meanwhile
      const owner = stored && { host: stored.host, pid: stored.pid, startedAt: stored.startedAt };
      out.push({
        pointId,
        startedAtMs: stored?.startedAtMs ?? o.mtimeMs,
        heartbeatAtMs: o.mtimeMs,
        owner,
        deadReason: deadOwnerReason(owner),
      });
    }
    return out;
  }

  async remove(pointId: string): Promise<void> {
    await this.storage.delete(this.keyOf(pointId));
  }
}

class StorageWriterHandle implements WriterHandle {
  private readonly timer: NodeJS.Timeout;
  private released = false;

  constructor(
    private readonly storage: ObjectStorage,
    private readonly key: string,
    private readonly text: string,
  ) {
    // A missed heartbeat (storage briefly unreachable) is harmless: the marker only goes stale after many.
    this.timer = setInterval(() => void this.beat().catch(() => undefined), WRITER_HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Rewrites the marker (new time = heartbeat) unless garbage collection removed it as stale. */
  async beat(): Promise<void> {
    if (this.released || !(await this.isPresent())) return;
    await this.storage.put(this.key, this.text).catch(() => undefined);
  }

  async isPresent(): Promise<boolean> {
    return (await this.storage.stat(this.key)) !== undefined;
  }

  async release(): Promise<void> {
    this.released = true;
    clearInterval(this.timer);
    await this.storage.delete(this.key);
  }
}
