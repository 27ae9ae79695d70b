import type { Logger } from '@nestjs/common';
import { FileIndexStore, INDEX_DISK, indexPoint, indexPointInWorker, type IndexPointResult, type RepositoryOpening } from '@vmkeep/file-index';
import type { Disk } from '@vmkeep/disk';
import type { Repository } from '@vmkeep/repository';
import type { JobEntity, RestorePointEntity } from '@vmkeep/persistence';
import { describeFailure } from './failure';

/** What indexing adds to a finished backup job. */
export interface FileIndexOutcome {
  /** The job's final phase, with a note when indexing had warnings or failed. */
  phase: string;
  /** Counters merged into the job's stats. */
  stats: Record<string, number>;
}

/** Whether a backup job indexes guest files (job option `indexFiles`, default on). */
export const indexesFiles = (job: Pick<JobEntity, 'options'>): boolean => job.options?.indexFiles !== false;

/**
 * Indexes the guest files of a committed restore point (job option `indexFiles`, default on). Never throws:
 * the backup already succeeded, so a failure or an unreadable file system is only a note on the job's phase
 * (the point's index record keeps every warning). Also drops index records of points no longer in the repository.
 */
export async function indexBackupFiles(args: {
  repo: Repository;
  /** Not used any more (the index lives in `repo`'s own storage); kept so callers need not change at once. */
  repositoryPath?: string;
  /**
   * How a worker thread opens `repo` again (its location, passphrase and S3 settings). Given, the walk runs on a
   * worker thread of its own; without it, on this thread (yielding to the event loop every 1000 entries).
   */
  reopen?: RepositoryOpening;
  job: JobEntity;
  point: RestorePointEntity;
  phase: string;
  signal: AbortSignal;
  log: Logger;
  setPhase: (phase: string) => Promise<void>;
}): Promise<FileIndexOutcome> {
  const { repo, job, point, phase, signal, log } = args;
  if (!indexesFiles(job)) return { phase, stats: {} };
  const note = (text: string) => `${phase}; file index: ${text}`.slice(0, 255);
  await args.setPhase('indexing guest files').catch(() => undefined);
  const disks: { key: string; disk: Disk }[] = [];
  try {
    // Beside the chunks, in the repository's storage; sealed with keys derived from its master keys when encrypted.
    const store = FileIndexStore.forRepository(repo);
    const started = Date.now();
    const keys = point.disks.map((d) => d.key);
    let result: IndexPointResult;
    if (args.reopen) {
      const opening = workerOpening(repo, args.reopen);
      // The worker got its own copy when it started: this one is wiped once the walk is over.
      result = await indexPointInWorker(opening, point.repositoryPointId, keys, { signal }).finally(() => opening.runtime?.unlockedKeys?.keys.fill(0));
    } else {
      for (const key of keys) disks.push({ key, disk: await repo.openDisk(point.repositoryPointId, key, INDEX_DISK) });
      result = await indexPoint(store, point.repositoryPointId, disks, { signal });
    }
    const { record } = result;
    await dropIndexesOfDeletedPoints(repo, store).catch((err: unknown) =>
      log.warn(`job ${job.id}: file index cleanup failed: ${describeFailure(err)}`),
    );
    const stats = {
      indexedFiles: record.entries,
      indexPages: record.pages.length,
      indexNewPages: result.newPages,
      indexNewBytes: result.newBytes,
      indexMs: Date.now() - started,
    };
    if (!record.warnings.length) return { phase, stats };
    log.warn(`job ${job.id}: file index of point ${point.id}: ${record.warnings.length} warning(s): ${record.warnings[0]}`);
    const more = record.warnings.length > 1 ? ` (+${record.warnings.length - 1} more)` : '';
    return { phase: note(`${record.warnings[0]}${more}`), stats };
  } catch (err) {
    const why = signal.aborted ? 'interrupted' : `failed: ${describeFailure(err)}`;
    log.warn(`job ${job.id}: file index of point ${point.id} ${why}`);
    return { phase: note(why), stats: {} };
  } finally {
    for (const { disk } of disks) await disk.close().catch(() => undefined);
  }
}

/**
 * The worker opens an encrypted repository with `repo`'s unwrapped keys, not the passphrase: the backup runs the
 * KDF once (when it opened `repo`), not a second time on the worker.
 */
function workerOpening(repo: Repository, reopen: RepositoryOpening): RepositoryOpening {
  const unlockedKeys = repo.unlockedKeys();
  if (!unlockedKeys) return reopen;
  const s3 = reopen.runtime?.s3;
  return { location: reopen.location, runtime: { unlockedKeys, ...(s3 ? { s3 } : {}) } };
}

/** Runs the index's garbage collection when points were deleted (pruned) since: their records and unshared pages go. */
async function dropIndexesOfDeletedPoints(repo: Repository, store: FileIndexStore): Promise<void> {
  const live = new Set((await repo.listPointFolders()).filter((f) => f.state !== 'deleting').map((f) => f.id));
  const indexed = await store.listPoints();
  if (indexed.some((id) => !live.has(id))) await store.collectGarbage(live);
}
