/**
 * The chunk pipeline of a backup: read a source Disk chunk by chunk (skipping what its extents say is
 * unallocated), drop all-zero chunks, hash, look up, compress, store, and append every id to the fixed index in
 * order. A bounded window of chunks is in flight so reads overlap with hashing/compression on worker threads;
 * chunks needing no read (zero, or taken from an incremental's parent) do not occupy its slots.
 * An incremental chunk with only small changed areas is patched: the parent's copy of the chunk is loaded from
 * the repository (verified) and only the changed areas are read from the source, so the host sends what changed,
 * not whole chunks.
 */
import type { Disk, Extent } from '@vmkeep/disk';
import type { ChunkIdScheme } from './codec';
import type { ChunkCodec } from './chunk-workers';
import type { ChunkStore } from './chunk-store';
import { ZERO_CHUNK_ID } from './constants';
import { CorruptChunkError, MissingChunkError, RepositoryError, WriteAbortedError } from './errors';
import type { FixedIndex, FixedIndexWriter } from './fixed-index';
import type { DiskWriteStats, WriteProgress } from './types';

export interface PipelineDeps {
  store: ChunkStore;
  codec: ChunkCodec;
  scheme: ChunkIdScheme;
  chunkSize: number;
  compressionLevel: number;
  /** Chunks in flight at once (reads + hashing + compression). */
  concurrency: number;
  /** AES key of an encrypted repository: blobs are sealed with it. */
  encryptionKey?: Uint8Array;
  /**
   * Hex ids of chunks verify found bad: stored again (overwriting) instead of deduplicated against. A parent
   * chunk found damaged while patching is added (later chunks of this write then do not reuse it).
   */
  knownBad?: Set<string>;
  /** Called when a parent chunk loaded for a patch turns out corrupt or missing (it is then read whole). */
  onBadChunk?: (idHex: string, reason: string) => Promise<void>;
  /** Called after a known-bad chunk was stored again. */
  onRepaired?: (idHex: string) => Promise<void>;
}

/** An incremental write: chunks outside `changed` are taken from the parent's index instead of read. */
export interface ParentIndex {
  index: FixedIndex;
  /** Where the source may differ from the parent: the rest of the disk is taken from the parent unread. */
  changed: Extent[];
  /** Names the parent in errors ("point X disk Y"). */
  name: string;
  /**
   * The verified plaintext of a parent chunk (the caller's to modify). With it, a chunk whose changed areas are
   * small (see PATCH_MAX_SHARE) is the parent's chunk with just those areas read from the source; without it,
   * or when the parent's chunk cannot be loaded, every chunk touching a changed area is read whole.
   */
  load?: (id: Buffer) => Promise<Buffer>;
}

export interface PipelineOptions {
  diskKey: string;
  parent?: ParentIndex;
  onProgress?: (p: WriteProgress) => void;
  signal?: AbortSignal;
}

/** Minimum interval between two progress callbacks (a final one always follows). */
export const PROGRESS_INTERVAL_MS = 200;

/**
 * Chunks that need no read (zero, or reused from the parent) the window may hold per slot of `concurrency`, on
 * top of the read chunks: enough look-ahead to reach the next changed chunks, few enough pending refreshes.
 */
export const LIGHT_PER_SLOT = 64;

/**
 * A changed chunk is patched (parent's chunk + changed areas read) while its changed areas cover at most this
 * share of it in at most PATCH_MAX_PIECES separate areas; beyond that one whole read is cheaper than many.
 */
export const PATCH_MAX_SHARE = 0.5;
export const PATCH_MAX_PIECES = 16;

type ChunkOutcome = { id: Buffer; kind: 'zero' | 'dedup' | 'parent' } | { id: Buffer; kind: 'new'; storedBytes: number };

const total = (pieces: Extent[]) => pieces.reduce((n, p) => n + p.length, 0);

/** Sorted, merged extents clipped to [0, size). Sources are trusted to be sane, but not blindly. */
export function normalizeExtents(extents: Extent[], size: number): Extent[] {
  const clipped = extents
    .map((e) => ({ start: Math.max(0, e.offset), end: Math.min(size, e.offset + e.length) }))
    .filter((e) => Number.isFinite(e.start) && Number.isFinite(e.end) && e.end > e.start)
    .sort((a, b) => a.start - b.start);
  const out: Extent[] = [];
  for (const { start, end } of clipped) {
    const last = out[out.length - 1];
    if (last && start <= last.offset + last.length) {
      last.length = Math.max(last.length, end - last.offset);
    } else {
      out.push({ offset: start, length: end - start });
    }
  }
  return out;
}

/** Parts of [start, end) covered by `extents` (sorted); `from` is a cursor into extents, advanced in place. */
function piecesOf(extents: Extent[], cursor: { from: number }, start: number, end: number): Extent[] {
  while (cursor.from < extents.length && extents[cursor.from].offset + extents[cursor.from].length <= start) {
    cursor.from++;
  }
  const pieces: Extent[] = [];
  for (let k = cursor.from; k < extents.length && extents[k].offset < end; k++) {
    const s = Math.max(start, extents[k].offset);
    const e = Math.min(end, extents[k].offset + extents[k].length);
    if (e > s) pieces.push({ offset: s, length: e - s });
  }
  return pieces;
}

export async function writeDiskChunks(
  deps: PipelineDeps,
  source: Disk,
  index: FixedIndexWriter,
  opts: PipelineOptions,
): Promise<DiskWriteStats> {
  const { chunkSize } = deps;
  const size = source.size;
  const stats: DiskWriteStats = {
    size,
    chunks: index.count,
    zeroChunks: 0,
    dedupChunks: 0,
    newChunks: 0,
    newBytes: 0,
    bytesRead: 0,
    parentChunks: 0,
  };
  const parent = opts.parent;
  if (parent && (parent.index.diskSize !== size || parent.index.chunkSize !== chunkSize)) {
    throw new RepositoryError(
      `${parent.name} has ${parent.index.diskSize} bytes in ${parent.index.chunkSize}-byte chunks; the disk has ${size} in ${chunkSize}`,
      'PARENT_MISMATCH',
    );
  }
  const zeros = Buffer.alloc(chunkSize);
  const inFlight = new Map<string, Promise<unknown>>();
  const checkAbort = () => {
    if (opts.signal?.aborted) throw new WriteAbortedError(opts.diskKey);
  };

  const storeChunk = async (chunk: Buffer): Promise<ChunkOutcome> => {
    const { id, data } = await deps.codec.hash(deps.scheme, chunk);
    const hex = id.toString('hex');
    const pending = inFlight.get(hex);
    if (pending) {
      await pending;
      return { id, kind: 'dedup' };
    }
    const work = (async (): Promise<ChunkOutcome> => {
      const knownBad = deps.knownBad?.has(hex) ?? false;
      // refresh() marks a deduplicated chunk as used now, so a concurrent garbage collection keeps it.
      if (!knownBad && (await deps.store.refresh(id))) return { id, kind: 'dedup' };
      const sealing = deps.encryptionKey ? { key: deps.encryptionKey, id } : undefined;
      // The blob in parts: a sealed one is written as the worker made it, never joined into one more buffer.
      const blob = await deps.codec.encodeParts(data, deps.compressionLevel, sealing);
      const { existed } = await deps.store.insert(id, blob, { overwrite: knownBad });
      if (knownBad) await deps.onRepaired?.(hex);
      return existed ? { id, kind: 'dedup' } : { id, kind: 'new', storedBytes: blob.reduce((n, b) => n + b.length, 0) };
    })();
    inFlight.set(hex, work);
    try {
      return await work;
    } finally {
      inFlight.delete(hex);
    }
  };

  /** Reads `pieces` (inside [start, start + length)) from the source into `into`, which holds the rest. */
  const readPieces = async (into: Buffer, start: number, pieces: Extent[]) => {
    for (const p of pieces) {
      const data = await source.read(p.offset, p.length);
      if (data.length !== p.length) {
        throw new RepositoryError(`source returned ${data.length} bytes for a ${p.length}-byte read at ${p.offset}`, 'SHORT_READ');
      }
      data.copy(into, p.offset - start);
    }
    stats.bytesRead += total(pieces);
  };

  const storeUnlessZero = (data: Buffer, length: number): Promise<ChunkOutcome> | ChunkOutcome =>
    data.equals(length === chunkSize ? zeros : zeros.subarray(0, length)) ? { id: ZERO_CHUNK_ID, kind: 'zero' } : storeChunk(data);

  const processChunk = async (start: number, length: number, pieces: Extent[]): Promise<ChunkOutcome> => {
    if (!pieces.length) return { id: ZERO_CHUNK_ID, kind: 'zero' };
    if (pieces.length === 1 && pieces[0].length === length) {
      const data = await source.read(start, length);
      if (data.length !== length) {
        throw new RepositoryError(`source returned ${data.length} bytes for a ${length}-byte read at ${start}`, 'SHORT_READ');
      }
      stats.bytesRead += length;
      try {
        return await storeUnlessZero(data, length);
      } finally {
        // Stored (its blob written) or failed: nothing reads this buffer any more, the source may fill it again.
        source.release?.(data);
      }
    }
    const data = Buffer.alloc(length);
    await readPieces(data, start, pieces);
    return storeUnlessZero(data, length);
  };

  /**
   * The parent's chunk with the changed areas read over it (`reads`: those areas where the source has data,
   * `changed`: all of them, zeroed first). Falls back to reading the chunk whole when the parent's chunk cannot
   * be loaded or does not have the chunk's length.
   */
  const patchChunk = async (start: number, length: number, base: Buffer, changedPieces: Extent[], reads: Extent[], allocated: Extent[]) => {
    let data: Buffer | undefined;
    if (base === ZERO_CHUNK_ID) data = Buffer.alloc(length);
    else {
      data = await parent!.load!(base).catch(async (err: unknown) => {
        // Damage is recorded like verify records it; anything else (a read that failed this time) is not.
        if (err instanceof CorruptChunkError || err instanceof MissingChunkError) {
          const hex = base.toString('hex');
          deps.knownBad?.add(hex);
          await deps.onBadChunk?.(hex, err instanceof CorruptChunkError ? err.reason : 'missing');
        }
        return undefined;
      });
      if (data?.length !== length) data = undefined;
    }
    if (!data) return processChunk(start, length, allocated);
    stats.patchedChunks = (stats.patchedChunks ?? 0) + 1;
    for (const p of changedPieces) data.fill(0, p.offset - start, p.offset - start + p.length);
    await readPieces(data, start, reads);
    return storeUnlessZero(data, length);
  };

  /**
   * The id the parent holds for chunk `i`, when it can be reused: a zero chunk, or a stored chunk verify did not
   * mark bad (a bad one is read from the source again). Decided without I/O, so the window can tell in advance.
   */
  const parentId = (index: FixedIndex, i: number): Buffer | undefined => {
    if (index.isZero(i)) return ZERO_CHUNK_ID;
    const id = index.idAt(i);
    return deps.knownBad?.has(id.toString('hex')) ? undefined : id;
  };
  /** A chunk the parent holds unchanged: its id, refreshed so a concurrent garbage collection keeps it. */
  const fromParent = async (id: Buffer): Promise<ChunkOutcome> => {
    if (id === ZERO_CHUNK_ID) return { id, kind: 'zero' };
    if (!(await deps.store.refresh(id))) {
      throw new RepositoryError(`${parent?.name}: chunk ${id.toString('hex')} is missing from the store`, 'PARENT_UNREADABLE');
    }
    return { id, kind: 'parent' };
  };

  let bytesDone = 0;
  let lastProgress = Date.now();
  const consume = async (outcome: ChunkOutcome, length: number) => {
    await index.append(outcome.id);
    if (outcome.kind === 'new') {
      stats.newChunks++;
      stats.newBytes += outcome.storedBytes;
    } else if (outcome.kind === 'zero') stats.zeroChunks++;
    else {
      // A parent chunk is already in the repository too: it counts as deduplicated, and separately.
      stats.dedupChunks++;
      if (outcome.kind === 'parent') stats.parentChunks = (stats.parentChunks ?? 0) + 1;
    }
    bytesDone += length;
    const now = Date.now();
    if (opts.onProgress && now - lastProgress >= PROGRESS_INTERVAL_MS) {
      lastProgress = now;
      opts.onProgress({ bytesDone, bytesTotal: size });
    }
  };

  checkAbort();
  const syncMark = deps.store.syncMark();
  const extents = normalizeExtents(await source.extents(), size);
  const cursor = { from: 0 };
  const changed = parent ? normalizeExtents(parent.changed, size) : [];
  const changedCursor = { from: 0 };
  // The window: chunks in order, consumed (appended to the index) from its head. Only chunks that are read
  // ("heavy": read, hashed, compressed, stored, about 2 x chunk size of memory each) count against
  // `concurrency`; zero chunks and ids taken from the parent pass through without a slot, so the changed chunks
  // of an incremental overlap however far apart they lie. Light entries are bounded separately (they hold no
  // chunk data, only a pending refresh), which keeps the window finite on a disk that barely changed.
  const window: { promise: Promise<ChunkOutcome>; length: number; heavy: boolean }[] = [];
  const maxLight = deps.concurrency * LIGHT_PER_SLOT;
  let heavy = 0;
  const consumeHead = async () => {
    const head = window.shift() as (typeof window)[number];
    if (head.heavy) heavy--;
    await consume(await head.promise, head.length);
  };
  try {
    for (let i = 0; i < index.count; i++) {
      checkAbort();
      const start = i * chunkSize;
      const length = Math.min(chunkSize, size - start);
      const pieces = piecesOf(extents, cursor, start, start + length);
      const changedPieces = parent ? piecesOf(changed, changedCursor, start, start + length) : [];
      const base = parent ? parentId(parent.index, i) : undefined;
      const reused = changedPieces.length === 0 ? base : undefined;
      const patchable = changedPieces.length > 0 && base !== undefined && parent?.load !== undefined && total(changedPieces) <= length * PATCH_MAX_SHARE;
      // The changed areas the source holds data in (outside its extents it reads as zeros).
      const reads = patchable ? changedPieces.flatMap((c) => piecesOf(pieces, { from: 0 }, c.offset, c.offset + c.length)) : [];
      const patch = patchable && reads.length <= PATCH_MAX_PIECES;
      const isHeavy = reused === undefined && (pieces.length > 0 || patch);
      const promise = reused
        ? fromParent(reused)
        : patch
          ? patchChunk(start, length, base!, changedPieces, reads, pieces)
          : processChunk(start, length, pieces);
      // Rejections are handled when the chunk reaches the head of the window (or in the cleanup below).
      promise.catch(() => undefined);
      window.push({ promise, length, heavy: isHeavy });
      if (isHeavy) heavy++;
      while (heavy >= deps.concurrency || window.length - heavy >= maxLight) {
        checkAbort();
        await consumeHead();
      }
    }
    while (window.length) {
      checkAbort();
      await consumeHead();
    }
  } catch (err) {
    // Let the chunks still in flight settle so nothing runs on after we return.
    await Promise.allSettled(window.map((w) => w.promise));
    throw err;
  }
  // The chunks this disk stored or deduplicated against are durable before its index can be finished.
  await deps.store.flush(syncMark);
  opts.onProgress?.({ bytesDone, bytesTotal: size });
  return stats;
}
