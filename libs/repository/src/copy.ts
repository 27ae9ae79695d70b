/**
 * Backup copy: copies restore points from one repository to another (e.g. local → S3). Only chunks the target
 * lacks are transferred, checked by the target's own chunk id; when the repositories' chunk ids differ (either is
 * encrypted: ids are keyed), each chunk is decrypted, its target id computed, and it is re-encoded with the
 * target's key; the index is rewritten with the target's ids. The target manifest is written last, so a killed
 * copy leaves an invisible partial point and a re-run skips what is already there.
 */
import { ZERO_CHUNK_ID } from './constants';
import { RepositoryError, WriteAbortedError } from './errors';
import type { Repository } from './repository';
import type { Manifest, ManifestDisk } from './types';

export interface CopyProgress {
  /** Point being copied, and how many of the selected points are done. */
  pointId: string;
  pointsDone: number;
  pointsTotal: number;
  /** Non-zero chunks of the selected points looked at so far, and their total. */
  chunksDone: number;
  chunksTotal: number;
  /** Chunks and stored bytes written to the target so far. */
  chunksTransferred: number;
  bytesTransferred: number;
}

export interface CopyOptions {
  /** Point ids to copy; default every committed point of the source. */
  points?: string[];
  /** Called at most every 200 ms, and once at the end. */
  onProgress?: (p: CopyProgress) => void;
  signal?: AbortSignal;
}

export interface CopyReport {
  /** Points written to the target. */
  copied: string[];
  /** Points the target already had (left as they are). */
  skipped: string[];
  /** Chunks stored in the target, and their stored bytes. */
  chunksTransferred: number;
  bytesTransferred: number;
  /** Chunks the target already had. */
  chunksPresent: number;
}

const PROGRESS_INTERVAL_MS = 200;

/** Copies restore points from `source` to `target` (see the module comment). */
export async function copyPoints(source: Repository, target: Repository, opts: CopyOptions = {}): Promise<CopyReport> {
  if (source.dir === target.dir) throw new RepositoryError('source and target are the same repository', 'INVALID_OPTION');
  if (source.chunkSize !== target.chunkSize) {
    throw new RepositoryError(
      `chunk sizes differ (source ${source.chunkSize}, target ${target.chunkSize}): copy into a repository with the same chunk size`,
      'CHUNK_SIZE_MISMATCH',
    );
  }
  const manifests = opts.points
    ? await Promise.all([...new Set(opts.points)].map((id) => source.readManifest(id)))
    : await source.listPoints();
  const report: CopyReport = { copied: [], skipped: [], chunksTransferred: 0, bytesTransferred: 0, chunksPresent: 0 };
  const todo: Manifest[] = [];
  for (const m of manifests) {
    if (await target.hasPoint(m.id)) report.skipped.push(m.id);
    else todo.push(m);
  }

  const progress: CopyProgress = {
    pointId: '',
    pointsDone: report.skipped.length,
    pointsTotal: manifests.length,
    chunksDone: 0,
    chunksTotal: 0,
    chunksTransferred: 0,
    bytesTransferred: 0,
  };
  for (const m of todo) for (const d of m.disks) progress.chunksTotal += d.chunks;
  let lastReport = 0;
  const tell = (final = false) => {
    const now = Date.now();
    if (!opts.onProgress || (!final && now - lastReport < PROGRESS_INTERVAL_MS)) return;
    lastReport = now;
    opts.onProgress({ ...progress });
  };

  const sameIds = source.sharesChunkIdsWith(target);
  /** Source id (hex) → target id, for chunks already settled in this run. */
  const settled = new Map<string, Buffer>();

  const copyChunk = async (sourceId: Buffer, where: string): Promise<Buffer> => {
    const hex = sourceId.toString('hex');
    const known = settled.get(hex);
    if (known) return known;
    if (opts.signal?.aborted) throw new WriteAbortedError(where);
    let targetId: Buffer;
    // refresh() marks a chunk the target has as used now, so a concurrent GC on the target keeps it.
    if (sameIds && (await target.store.refresh(sourceId))) {
      targetId = sourceId;
      report.chunksPresent++;
    } else {
      const data = await source.loadChunk(sourceId); // verified: a damaged source chunk stops the copy
      targetId = sameIds ? sourceId : await target.chunkIdOf(data);
      if (!sameIds && (await target.store.refresh(targetId))) {
        report.chunksPresent++;
      } else {
        const stored = await target.storeChunk(targetId, data);
        report.chunksTransferred++;
        report.bytesTransferred += stored;
        progress.chunksTransferred = report.chunksTransferred;
        progress.bytesTransferred = report.bytesTransferred;
      }
    }
    settled.set(hex, targetId);
    return targetId;
  };

  const copyDisk = async (m: Manifest, disk: ManifestDisk): Promise<void> => {
    const index = await source.readIndex(m.id, disk);
    const writer = await target.createIndexWriter(m.id, disk.key, disk.size);
    try {
      for (let i = 0; i < index.count; i++) {
        if (index.isZero(i)) await writer.append(ZERO_CHUNK_ID);
        else {
          await writer.append(await copyChunk(index.idAt(i), `${m.id}/${disk.key}`));
          progress.chunksDone++;
          tell();
        }
      }
      await writer.finish();
    } catch (err) {
      await writer.abort();
      throw err;
    }
  };

  for (const m of todo) {
    progress.pointId = m.id;
    const point = target.continuePoint(m.id, new Date(m.createdAt));
    try {
      for (const disk of m.disks) {
        const { key, size, chunkSize, chunks, meta } = disk;
        await point.addDisk({ key, size, chunkSize, chunks, meta }, () => copyDisk(m, disk));
      }
      await point.commit(m.meta);
    } catch (err) {
      // Leave the partial point's indexes for a re-run; only this writer's marker goes.
      await point.release().catch(() => undefined);
      throw err;
    }
    report.copied.push(m.id);
    progress.pointsDone++;
    tell();
  }
  tell(true);
  return report;
}
