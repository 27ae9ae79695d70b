/**
 * Entry point of a file index worker thread (started by `indexPointInWorker`): opens the repository and the
 * point's disks, runs `indexPoint`, answers with one message and ends. Chunks are decoded on this thread
 * (inline codec): it is already off the caller's thread, and a pool per worker would only add threads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { inlineChunkCodec, Repository } from '@vmkeep/repository';
import { indexPoint } from './indexer';
import { FileIndexStore } from './store';
import { toThreadError, type IndexWorkerJob, type IndexWorkerReply } from './threaded';
import type { WalkTarget } from './walk';

async function run(job: IndexWorkerJob): Promise<IndexWorkerReply> {
  const repo = await Repository.open(job.repository.location, { ...job.repository.runtime, codec: inlineChunkCodec });
  const disks: WalkTarget[] = [];
  try {
    for (const key of job.diskKeys) disks.push({ key, disk: await repo.openDisk(job.pointId, key) });
    const result = await indexPoint(FileIndexStore.forRepository(repo), job.pointId, disks, { limits: job.limits, paging: job.paging });
    return { ok: true, result };
  } finally {
    for (const { disk } of disks) await disk.close().catch(() => undefined);
    await repo.close().catch(() => undefined);
  }
}

run(workerData as IndexWorkerJob).then(
  (reply) => parentPort?.postMessage(reply),
  (err: unknown) => parentPort?.postMessage({ ok: false, error: toThreadError(err) } satisfies IndexWorkerReply),
);
