/**
 * Entry point of a file index worker thread (started by `indexPointInWorker`): opens the repository and the
 * point's disks, runs `indexPoint`, answers with one message and ends. Chunks are decoded on one more thread of its
 * own while this one parses them (the walk's reads run ahead: inode tables, 4 reads in flight): at load 14 on 2
 * cores that cut the wall time of 1,000,000 entries from 11–14 s to 8–9 s (docs/benchmarks.md).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ChunkWorkerPool, Repository } from '@vmkeep/repository';
import { indexPoint } from './indexer';
import { FileIndexStore } from './store';
import { toThreadError, type IndexWorkerJob, type IndexWorkerReply } from './threaded';
import { INDEX_DISK, type WalkTarget } from './walk';

async function run(job: IndexWorkerJob): Promise<IndexWorkerReply> {
  const codec = new ChunkWorkerPool(1);
  let repo: Repository;
  try {
    repo = await Repository.open(job.repository.location, { ...job.repository.runtime, codec });
  } catch (err) {
    await codec.close();
    throw err;
  }
  const disks: WalkTarget[] = [];
  try {
    for (const key of job.diskKeys) disks.push({ key, disk: await repo.openDisk(job.pointId, key, INDEX_DISK) });
    const result = await indexPoint(FileIndexStore.forRepository(repo), job.pointId, disks, { limits: job.limits, paging: job.paging });
    return { ok: true, result };
  } finally {
    for (const { disk } of disks) await disk.close().catch(() => undefined);
    await repo.close().catch(() => undefined);
    await codec.close().catch(() => undefined);
  }
}

run(workerData as IndexWorkerJob).then(
  (reply) => parentPort?.postMessage(reply),
  (err: unknown) => parentPort?.postMessage({ ok: false, error: toThreadError(err) } satisfies IndexWorkerReply),
);
