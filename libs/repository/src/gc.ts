/**
 * Garbage collection: mark every chunk referenced by a manifest, sweep the others that nobody wrote or
 * refreshed since the cutoff. Safe while writers run (the argument is in FORMAT.md):
 * - a writer creates its in-progress marker before it touches any chunk, and refreshes (mtime) every chunk it
 *   deduplicates against; new chunks get a fresh mtime anyway;
 * - cutoff = min(GC start − grace, start of the oldest live writer), both on the file system's clock;
 * - a chunk is deleted by renaming it aside and checking its time again, so a refresh that races with the
 *   sweep either lands before (the chunk is put back) or fails (the writer stores the chunk again);
 * - a marker without a heartbeat for `staleWriterMs` belongs to a crashed writer: it is removed, and should
 *   that writer still be alive, its commit fails (StaleWriterError) instead of referencing swept chunks.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { isTempName } from './atomic';
import { CHUNK_ID_BYTES, GC_TRASH_MARKER } from './constants';
import { RepositoryError } from './errors';
import { StaleLock } from './locks';
import type { Repository } from './repository';
import type { WriterMarker } from './writers';

export interface GcOptions {
  /** Unreferenced chunks younger than this are kept; default 24 h. */
  graceMs?: number;
  /** A writer marker without heartbeat for this long is stale (crashed writer); default 1 h. */
  staleWriterMs?: number;
  /** Count what would be swept, delete nothing. */
  dryRun?: boolean;
  /**
   * Object storage only: how long the collection waits for running writers before it gives up
   * (WRITERS_ACTIVE); default 15 min. New writers refuse to start meanwhile.
   */
  writerWaitMs?: number;
}

/** @internal hooks of the locked caller (Repository.collectGarbage). */
export interface GcHooks {
  /** Runs right before the sweep (checks the exclusive lock is still ours). */
  beforeSweep?: () => Promise<void>;
  /** The exclusive lock this collection took over from a dead holder, if any. */
  staleLocks?: StaleLock[];
  /** Told about each stale writer marker removed. */
  onStale?: (stale: StaleLock) => void;
}

export interface GcReport {
  dryRun: boolean;
  /** Chunks older than this (ISO time, file-system clock) and unreferenced were swept. */
  cutoff: string;
  referencedChunks: number;
  sweptChunks: number;
  sweptBytes: number;
  /** Unreferenced chunks kept because they are newer than the cutoff. */
  keptRecentChunks: number;
  activeWriters: string[];
  staleWritersRemoved: string[];
  /** Locks taken over from dead or silent holders (the exclusive lock, writers' markers), with the reason. */
  staleLocks: StaleLock[];
  /** Point folders without a manifest (aborted or crashed writers) removed. */
  partialPointsRemoved: string[];
  /** Interrupted deletes finished, and interrupted deletes undone because the point is archived. */
  deletesFinished: string[];
  deletesUndone: string[];
  tempFilesRemoved: number;
}

export const DEFAULT_GC_GRACE_MS = 24 * 3600 * 1000;
export const DEFAULT_STALE_WRITER_MS = 3600 * 1000;

const ID_HEX = new RegExp(`^[0-9a-f]{${CHUNK_ID_BYTES * 2}}$`);

/** @internal */
export function checkDuration(value: number, what: string): number {
  if (!Number.isFinite(value) || value < 0) throw new RepositoryError(`${what} must be a non-negative number of ms`, 'INVALID_OPTION');
  return value;
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** A report with nothing done yet; both collectors fill it in. */
export function emptyGcReport(dryRun: boolean, hooks: GcHooks): GcReport {
  return {
    dryRun,
    cutoff: '',
    referencedChunks: 0,
    sweptChunks: 0,
    sweptBytes: 0,
    keptRecentChunks: 0,
    activeWriters: [],
    staleWritersRemoved: [],
    staleLocks: [...(hooks.staleLocks ?? [])],
    partialPointsRemoved: [],
    deletesFinished: [],
    deletesUndone: [],
    tempFilesRemoved: 0,
  };
}

export async function collectGarbage(repo: Repository, opts: GcOptions = {}, hooks: GcHooks = {}): Promise<GcReport> {
  const graceMs = checkDuration(opts.graceMs ?? DEFAULT_GC_GRACE_MS, 'graceMs');
  const staleMs = checkDuration(opts.staleWriterMs ?? DEFAULT_STALE_WRITER_MS, 'staleWriterMs');
  const dryRun = !!opts.dryRun;
  const start = await repo.storage.now();

  // 1. Writers: live ones bound the cutoff, stale ones are removed.
  const report = emptyGcReport(dryRun, hooks);
  let cutoff = start - graceMs;
  for (const marker of await repo.writers.list()) {
    if (await dropStaleWriter(repo, marker, { start, staleMs, dryRun, report, hooks })) continue;
    report.activeWriters.push(marker.pointId);
    cutoff = Math.min(cutoff, marker.startedAtMs);
  }
  report.cutoff = new Date(cutoff).toISOString();

  // 2. Point folders.
  await settlePointFolders(repo, { start, staleMs, cutoff, dryRun, report }, (id) => fs.rm(repo.pointDir(id), { recursive: true, force: true }));

  // 3. Mark.
  const marked = await markReferencedChunks(repo);
  report.referencedChunks = marked.size;

  // 4. Sweep.
  await hooks.beforeSweep?.();
  const badIds = await repo.badChunks.ids();
  const chunksDir = repo.localStore.dir;
  for (const fan of (await entries(chunksDir)).sort()) {
    const fanDir = path.join(chunksDir, fan);
    for (const name of await entries(fanDir)) {
      const file = path.join(fanDir, name);
      if (name.includes(GC_TRASH_MARKER)) {
        // Left by an interrupted collection: finish it with today's cutoff.
        const hex = name.slice(1, name.indexOf(GC_TRASH_MARKER));
        if (!dryRun && ID_HEX.test(hex)) await repo.localStore.settleTrash(file, path.join(fanDir, hex), cutoff);
        continue;
      }
      if (isTempName(name)) {
        const st = await fs.stat(file).catch(() => undefined);
        if (st && st.mtimeMs < cutoff) {
          if (!dryRun) await fs.rm(file, { force: true });
          report.tempFilesRemoved++;
        }
        continue;
      }
      if (!ID_HEX.test(name) || marked.has(name)) continue;
      const id = Buffer.from(name, 'hex');
      let freed: number | undefined;
      if (dryRun) {
        const st = await fs.stat(file).catch(() => undefined);
        freed = st && st.mtimeMs < cutoff ? st.size : undefined;
      } else {
        freed = await repo.localStore.deleteIfUnusedSince(id, cutoff);
        if (freed !== undefined && badIds.has(name)) await repo.badChunks.remove(name);
      }
      if (freed === undefined) report.keptRecentChunks++;
      else {
        report.sweptChunks++;
        report.sweptBytes += freed;
      }
    }
  }
  return report;
}

/** What the collectors' shared steps read and fill in. */
interface GcStep {
  /** The collection's start on the storage's clock. */
  start: number;
  staleMs: number;
  dryRun: boolean;
  report: GcReport;
}

/**
 * @internal A writer marker without a heartbeat for `staleMs`, or marked dead, belongs to a crashed writer: it is
 * removed (not in a dry run) and reported; true when it was such a marker.
 */
export async function dropStaleWriter(repo: Repository, marker: WriterMarker, step: GcStep & { hooks: GcHooks }): Promise<boolean> {
  const { start, staleMs, dryRun, report, hooks } = step;
  if (marker.heartbeatAtMs >= start - staleMs && !marker.deadReason) return false;
  if (!dryRun) await repo.writers.remove(marker.pointId);
  report.staleWritersRemoved.push(marker.pointId);
  const reason = marker.deadReason ?? `no heartbeat for ${Math.round((start - marker.heartbeatAtMs) / 60_000)} min`;
  const stale: StaleLock = { operation: `backup ${marker.pointId}`, ...marker.owner, reason };
  report.staleLocks.push(stale);
  if (!dryRun) hooks.onStale?.(stale);
  return true;
}

/**
 * @internal Settles deletes interrupted long ago (a delete takes milliseconds; one in progress is left to its
 * owner): undone when the point is archived, finished otherwise; and drops partial points of writers that are no
 * longer active (`report.activeWriters`) and older than `cutoff`, through `removePartial` (not in a dry run).
 */
export async function settlePointFolders(
  repo: Repository,
  step: GcStep & { cutoff: number },
  removePartial: (pointId: string) => Promise<void>,
): Promise<void> {
  const { start, staleMs, cutoff, dryRun, report } = step;
  const active = new Set(report.activeWriters);
  for (const folder of await repo.listPointFolders()) {
    if (folder.state === 'deleting' && folder.mtimeMs < start - staleMs && !dryRun) {
      if ((await repo.archives.status(folder.id))?.locked) {
        await repo.restoreDeleting(folder.id);
        report.deletesUndone.push(folder.id);
      } else {
        await repo.finishDelete(folder.id);
        report.deletesFinished.push(folder.id);
      }
    } else if (folder.state === 'partial' && !active.has(folder.id) && folder.mtimeMs < cutoff) {
      if (!dryRun) await removePartial(folder.id);
      report.partialPointsRemoved.push(folder.id);
    }
  }
}

/**
 * @internal every chunk of every point that has a manifest (archived points and points being deleted included),
 * as hex ids. An unreadable manifest or index stops the collection: sweeping without knowing what it references
 * could destroy data.
 */
export async function markReferencedChunks(repo: Repository): Promise<Set<string>> {
  const marked = new Set<string>();
  for (const folder of await repo.listPointFolders()) {
    if (folder.state === 'partial') continue;
    const manifest = await repo.readAnyManifest(folder.id);
    if (!manifest) continue; // deleted meanwhile
    for (const disk of manifest.disks) {
      let index;
      try {
        index = await repo.readIndex(manifest.id, disk);
      } catch (err) {
        throw new RepositoryError(
          `garbage collection stopped: ${(err as Error).message}. Verify the repository and delete or repair the point first`,
          'GC_MARK_FAILED',
        );
      }
      for (let i = 0; i < index.count; i++) if (!index.isZero(i)) marked.add(index.idAt(i).toString('hex'));
    }
  }
  return marked;
}
