/**
 * Garbage collection on object storage (FORMAT.md, "Object storage"). S3 has no rename to move a chunk aside and
 * check it again, and not every server updates a chunk's time when a writer refreshes it, so the protection of
 * the folder collector (refresh on dedup + cutoff at the oldest writer) is replaced by mutual exclusion:
 * - the collection runs under the exclusive lock (taken by the caller, Repository.collectGarbage);
 * - a writer puts its marker first and then checks the lock: while a live collection holds it, the writer
 *   withdraws and refuses to start (RepositoryLockedError);
 * - the collection, holding the lock, waits until no live writer marker is left (stale ones are removed, as in
 *   a folder), and only then marks and sweeps. Either the collection sees a writer's marker, or the writer sees
 *   the lock (both are strongly consistent writes followed by reads), so no writer runs during mark and sweep.
 * Unreferenced chunks younger than the grace period are still kept (chunks of a crashed writer, kept for a while).
 */
import { RepositoryError } from './errors';
import {
  DEFAULT_GC_GRACE_MS, DEFAULT_STALE_WRITER_MS, GcHooks, GcOptions, GcReport, checkDuration, dropStaleWriter, emptyGcReport, markReferencedChunks,
  settlePointFolders,
} from './gc';
import type { Repository } from './repository';
import { StorageChunkStore } from './storage-chunk-store';

/** How long a collection on object storage waits for running writers by default. */
export const DEFAULT_GC_WRITER_WAIT_MS = 15 * 60_000;
const WRITER_POLL_MS = 500;

export async function collectGarbageOnStorage(repo: Repository, opts: GcOptions = {}, hooks: GcHooks = {}): Promise<GcReport> {
  const graceMs = checkDuration(opts.graceMs ?? DEFAULT_GC_GRACE_MS, 'graceMs');
  const staleMs = checkDuration(opts.staleWriterMs ?? DEFAULT_STALE_WRITER_MS, 'staleWriterMs');
  const waitMs = checkDuration(opts.writerWaitMs ?? DEFAULT_GC_WRITER_WAIT_MS, 'writerWaitMs');
  const dryRun = !!opts.dryRun;
  const report = emptyGcReport(dryRun, hooks);

  // 1. Writers: stale ones are removed; live ones are waited for (a dry run only reports them).
  const deadline = Date.now() + waitMs;
  let start: number;
  for (;;) {
    start = await repo.storage.now();
    const live: string[] = [];
    for (const marker of await repo.writers.list()) {
      if (report.staleWritersRemoved.includes(marker.pointId)) continue;
      if (!(await dropStaleWriter(repo, marker, { start, staleMs, dryRun, report, hooks }))) live.push(marker.pointId);
    }
    report.activeWriters = live;
    if (!live.length || dryRun) break;
    if (Date.now() >= deadline) {
      throw new RepositoryError(
        `garbage collection gave up waiting for running writers (${live.join(', ')}); try again later`,
        'WRITERS_ACTIVE',
      );
    }
    await new Promise((r) => setTimeout(r, WRITER_POLL_MS));
  }
  const cutoff = start - graceMs;
  report.cutoff = new Date(cutoff).toISOString();

  // 2. Points.
  await settlePointFolders(repo, { start, staleMs, cutoff, dryRun, report }, (id) => repo.removePointObjects(id));

  // 3. Mark.
  const marked = await markReferencedChunks(repo);
  report.referencedChunks = marked.size;

  // 4. Sweep.
  await hooks.beforeSweep?.();
  const badIds = await repo.badChunks.ids();
  const store = new StorageChunkStore(repo.storage);
  for (const chunk of await store.list()) {
    if (marked.has(chunk.hex)) continue;
    if (chunk.mtimeMs >= cutoff) {
      report.keptRecentChunks++;
      continue;
    }
    if (!dryRun) {
      await store.delete(Buffer.from(chunk.hex, 'hex'));
      if (badIds.has(chunk.hex)) await repo.badChunks.remove(chunk.hex);
    }
    report.sweptChunks++;
    report.sweptBytes += chunk.size;
  }
  return report;
}
