/**
 * Verify: reads every chunk the selected points refer to (each distinct chunk once) and checks it completely:
 * present, header and CRC32, authentication when encrypted, decompression, and id = hash of the plaintext.
 * Damaged chunks are reported with every point, disk and offset they break, and put on the repository's bad
 * chunk list so the next backup stores them again.
 */
import { checkBlobCrc } from './codec';
import { CorruptChunkError, IndexFormatError, MissingChunkError, RepositoryError, RepositoryFormatError } from './errors';
import type { FixedIndex } from './fixed-index';
import type { Repository } from './repository';
import type { Manifest } from './types';

export interface VerifyOptions {
  /** Point ids to check; default every committed point. An unknown id throws PointNotFoundError. */
  points?: string[];
  /** Chunks read at once; default 4. */
  concurrency?: number;
  onProgress?: (p: { chunksDone: number; chunksTotal: number }) => void;
  signal?: AbortSignal;
}

/** Where a chunk is used. */
export interface ChunkRef {
  pointId: string;
  diskKey: string;
  /** Byte offset of the chunk in the disk. */
  offset: number;
}

export interface BadChunkReport {
  id: string;
  problem: 'missing' | 'corrupt';
  reason: string;
  /** Every place in the checked points that needs this chunk. */
  refs: ChunkRef[];
}

export interface BadIndexReport {
  pointId: string;
  diskKey: string;
  reason: string;
}

export interface VerifyReport {
  ok: boolean;
  /** The points checked. */
  points: string[];
  /** Distinct chunks checked. */
  chunksChecked: number;
  /** Stored bytes read. */
  bytesChecked: number;
  badChunks: BadChunkReport[];
  badIndexes: BadIndexReport[];
  /** Points that cannot be restored completely. */
  brokenPoints: string[];
}

const DEFAULT_CONCURRENCY = 4;

interface IndexedDisk {
  pointId: string;
  diskKey: string;
  index: FixedIndex;
}

async function readIndexes(repo: Repository, manifests: Manifest[], report: VerifyReport): Promise<IndexedDisk[]> {
  const out: IndexedDisk[] = [];
  for (const m of manifests) {
    for (const disk of m.disks) {
      try {
        out.push({ pointId: m.id, diskKey: disk.key, index: await repo.readIndex(m.id, disk) });
      } catch (err) {
        if (!(err instanceof IndexFormatError || err instanceof RepositoryFormatError)) throw err;
        report.badIndexes.push({ pointId: m.id, diskKey: disk.key, reason: err.message });
      }
    }
  }
  return out;
}

export async function verifyRepository(repo: Repository, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RepositoryError(`concurrency must be a positive integer, got ${concurrency}`, 'INVALID_OPTION');
  }
  const manifests = opts.points
    ? await Promise.all([...new Set(opts.points)].map((id) => repo.readManifest(id)))
    : await repo.listPoints();
  const report: VerifyReport = {
    ok: true,
    points: manifests.map((m) => m.id),
    chunksChecked: 0,
    bytesChecked: 0,
    badChunks: [],
    badIndexes: [],
    brokenPoints: [],
  };
  const disks = await readIndexes(repo, manifests, report);

  // Each distinct chunk once (zero chunks are never stored).
  const ids = new Map<string, Buffer>();
  for (const { index } of disks) {
    for (let i = 0; i < index.count; i++) {
      if (index.isZero(i)) continue;
      const id = index.idAt(i);
      const hex = id.toString('hex');
      if (!ids.has(hex)) ids.set(hex, Buffer.from(id));
    }
  }

  const knownBad = await repo.badChunks.ids();
  const bad = new Map<string, BadChunkReport>();
  const queue = [...ids.entries()];
  let done = 0;
  const check = async ([hex, id]: [string, Buffer]) => {
    try {
      const blob = await repo.store.get(id);
      report.bytesChecked += blob.length;
      repo.decodeChunk(id, blob);
      checkBlobCrc(id, blob);
      if (knownBad.has(hex)) await repo.badChunks.remove(hex); // stored again since it was found bad
    } catch (err) {
      let entry: BadChunkReport;
      if (err instanceof MissingChunkError) entry = { id: hex, problem: 'missing', reason: 'missing', refs: [] };
      else if (err instanceof CorruptChunkError) entry = { id: hex, problem: 'corrupt', reason: err.reason, refs: [] };
      else throw err;
      bad.set(hex, entry);
      await repo.badChunks.add(hex, entry.reason);
    }
    report.chunksChecked++;
    opts.onProgress?.({ chunksDone: ++done, chunksTotal: ids.size });
  };
  const workers = Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      if (opts.signal?.aborted) throw new RepositoryError('verify was aborted', 'ABORTED');
      await check(next);
    }
  });
  await Promise.all(workers);

  const broken = new Set(report.badIndexes.map((b) => b.pointId));
  if (bad.size) {
    for (const { pointId, diskKey, index } of disks) {
      for (let i = 0; i < index.count; i++) {
        if (index.isZero(i)) continue;
        const entry = bad.get(index.idAt(i).toString('hex'));
        if (!entry) continue;
        entry.refs.push({ pointId, diskKey, offset: i * index.chunkSize });
        broken.add(pointId);
      }
    }
  }
  report.badChunks = [...bad.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  report.brokenPoints = report.points.filter((id) => broken.has(id));
  report.ok = report.badChunks.length === 0 && report.badIndexes.length === 0;
  return report;
}
