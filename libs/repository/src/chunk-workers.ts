/**
 * Runs the CPU-heavy part of the chunk pipeline (hashing, compression, encryption, and on reads decryption and
 * decompression) on worker threads so backups and restores use every core. `ChunkCodec` is the narrow
 * interface the pipeline consumes; `inlineChunkCodec` does the same work on the calling thread (tests, tiny
 * jobs).
 */
import { availableParallelism } from 'node:os';
import { promises as fs } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { BlobSealing, ChunkIdScheme, EncodedPayload, compressChunk, computeChunkId, decodeBlob, encodeChunk, encodeChunkParts, standalone } from './codec';
import { CorruptChunkError, MissingChunkError } from './errors';
import { workerScript } from './worker-script';

export interface ChunkCodec {
  /**
   * The chunk's id, and the chunk's bytes to use from now on (`data` itself, or an equal buffer the codec owns
   * and can hand to compress() without copying).
   */
  hash(scheme: ChunkIdScheme, data: Buffer): Promise<{ id: Buffer; data: Buffer }>;
  /** Compresses a chunk. `data` must not be used by the caller afterwards (it may be transferred). */
  compress(data: Buffer, level: number): Promise<EncodedPayload>;
  /**
   * The complete blob of a chunk: compressed when it pays, encrypted with `sealing`. `data` must not be used by
   * the caller afterwards (it may be transferred).
   */
  encode(data: Buffer, level: number, sealing?: BlobSealing): Promise<Buffer>;
  /**
   * encode(), the blob as consecutive parts (their concatenation is the blob), so a sealed blob's ciphertext is
   * neither copied nor left behind on the codec's thread. Same ownership rule for `data`.
   */
  encodeParts(data: Buffer, level: number, sealing?: BlobSealing): Promise<Buffer[]>;
  /**
   * Checks a stored blob and returns the chunk's plaintext (decodeBlob: CorruptChunkError on any damage).
   * `blob` must not be used by the caller afterwards (it may be transferred).
   */
  decode(id: Buffer, blob: Buffer, scheme: ChunkIdScheme, key?: Uint8Array): Promise<Buffer>;
  /**
   * decode() of the blob stored in `file`, read by the codec's own thread (the caller's thread neither reads
   * nor holds the blob). A missing file is MissingChunkError.
   */
  decodeFile(id: Buffer, file: string, scheme: ChunkIdScheme, key?: Uint8Array): Promise<Buffer>;
  /**
   * Gives back a plaintext buffer decode()/decodeFile() returned, once nothing uses it any more, so a later
   * decode can reuse it instead of allocating (optional; the buffer must not be touched afterwards).
   */
  recycle?(plain: Buffer): void;
}

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

export const inlineChunkCodec: ChunkCodec = {
  async hash(scheme, data) {
    return { id: computeChunkId(scheme, data), data };
  },
  async compress(data, level) {
    return compressChunk(data, level);
  },
  async encode(data, level, sealing) {
    return encodeChunk(data, level, sealing);
  },
  async encodeParts(data, level, sealing) {
    return encodeChunkParts(data, level, sealing);
  },
  async decode(id, blob, scheme, key) {
    return decodeBlob(id, blob, scheme, key);
  },
  async decodeFile(id, file, scheme, key) {
    const blob = await fs.readFile(file).catch((err: unknown) => {
      throw isMissing(err) ? new MissingChunkError(id.toString('hex')) : err;
    });
    return decodeBlob(id, blob, scheme, key);
  },
};

/** Message to a chunk worker. */
export type WorkerTask =
  | { seq: number; op: 'hash'; scheme: ChunkIdScheme; data: Uint8Array }
  | { seq: number; op: 'compress'; level: number; data: Uint8Array }
  | { seq: number; op: 'encode'; level: number; data: Uint8Array; sealing?: BlobSealing; whole?: boolean }
  | { seq: number; op: 'decode'; id: Uint8Array; scheme: ChunkIdScheme; key?: Uint8Array; data: Uint8Array; into?: Uint8Array }
  | { seq: number; op: 'decode-file'; id: Uint8Array; scheme: ChunkIdScheme; key?: Uint8Array; file: string; into?: Uint8Array };

/** Message from a chunk worker. */
export type WorkerReply =
  | { seq: number; ok: true; id: Uint8Array; data: Uint8Array }
  | { seq: number; ok: true; compression: number; payload: Uint8Array }
  | { seq: number; ok: true; parts: Uint8Array[]; spare: Uint8Array }
  | { seq: number; ok: true; plain: Uint8Array }
  | { seq: number; ok: false; message: string; corrupt?: { chunkId: string; reason: string }; missing?: string };

/** An exact-size copy of a small key, for posting to a worker. */
const keyCopy = (key: Uint8Array) => new Uint8Array(key);
const exactScheme = (scheme: ChunkIdScheme): ChunkIdScheme =>
  scheme.algorithm === 'sha256' ? scheme : { algorithm: scheme.algorithm, key: keyCopy(scheme.key) };

interface Pending {
  resolve(reply: WorkerReply): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

/** Spare chunk buffers a pool keeps (a few chunks' worth of memory, saved from the garbage collector). */
const MAX_SPARES = 4;

const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** A fixed set of worker threads. Idle workers are unref'd so they never keep the process alive. */
export class ChunkWorkerPool implements ChunkCodec {
  private readonly slots: (Slot | undefined)[];
  private seq = 0;
  private readonly ownedBuffers = new WeakSet<ArrayBufferLike>();
  /** Chunk buffers back from encoding, reused for the next copies instead of allocating (bounded). */
  private readonly spares: Uint8Array[] = [];
  /** Plaintext buffers given back by readers, sent along to be decoded into (bounded). */
  private readonly plainSpares: Uint8Array[] = [];
  private closed = false;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`worker pool size must be ≥ 1, got ${size}`);
    this.slots = new Array<Slot | undefined>(size).fill(undefined);
  }

  async hash(scheme: ChunkIdScheme, data: Buffer): Promise<{ id: Buffer; data: Buffer }> {
    const reply = await this.run({ seq: 0, op: 'hash', scheme, data: this.owned(data) });
    if (!reply.ok || !('id' in reply)) throw new Error('chunk worker returned no id');
    const back = asBuffer(reply.data);
    this.ownedBuffers.add(back.buffer);
    return { id: asBuffer(reply.id), data: back };
  }

  async compress(data: Buffer, level: number): Promise<EncodedPayload> {
    const reply = await this.run({ seq: 0, op: 'compress', level, data: this.owned(data) });
    if (!reply.ok || !('payload' in reply)) throw new Error('chunk worker returned no payload');
    return { compression: reply.compression, payload: asBuffer(reply.payload) };
  }

  async encode(data: Buffer, level: number, sealing?: BlobSealing): Promise<Buffer> {
    // The worker joins the parts: the blob comes back as one buffer, with no copy on this thread.
    return (await this.encodeOn(data, level, sealing, true))[0];
  }

  encodeParts(data: Buffer, level: number, sealing?: BlobSealing): Promise<Buffer[]> {
    return this.encodeOn(data, level, sealing, false);
  }

  private async encodeOn(data: Buffer, level: number, sealing: BlobSealing | undefined, whole: boolean): Promise<Buffer[]> {
    // Exact-size copies: posting a view of a pooled buffer would clone the whole pool slab.
    const exact = sealing && { key: keyCopy(sealing.key), id: keyCopy(sealing.id) };
    const reply = await this.run({ seq: 0, op: 'encode', level, data: this.owned(data), sealing: exact, whole });
    if (!reply.ok || !('parts' in reply)) throw new Error('chunk worker returned no blob');
    if (this.spares.length < MAX_SPARES) this.spares.push(reply.spare);
    return reply.parts.map(asBuffer);
  }

  async decode(id: Buffer, blob: Buffer, scheme: ChunkIdScheme, key?: Uint8Array): Promise<Buffer> {
    // The blob was read for this call only: moved to the worker when it is a buffer of its own, never copied twice.
    const data = this.owned(blob, true);
    const into = this.plainSpares.pop();
    return this.plain(await this.run({ seq: 0, op: 'decode', id: keyCopy(id), scheme: exactScheme(scheme), key: key && keyCopy(key), data, into }));
  }

  async decodeFile(id: Buffer, file: string, scheme: ChunkIdScheme, key?: Uint8Array): Promise<Buffer> {
    const into = this.plainSpares.pop();
    return this.plain(await this.run({ seq: 0, op: 'decode-file', id: keyCopy(id), scheme: exactScheme(scheme), key: key && keyCopy(key), file, into }));
  }

  recycle(plain: Buffer): void {
    // Only whole buffers can be moved to a worker; the rest is left to the garbage collector.
    if (this.plainSpares.length < MAX_SPARES && plain.byteOffset === 0 && plain.byteLength === plain.buffer.byteLength && plain.byteLength > 0) {
      this.plainSpares.push(plain);
    }
  }

  private plain(reply: WorkerReply): Buffer {
    if (!reply.ok || !('plain' in reply)) throw new Error('chunk worker returned no plaintext');
    return asBuffer(reply.plain);
  }

  /** Terminates the workers; pending tasks fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.slots.map(async (slot, i) => {
        this.slots[i] = undefined;
        if (slot) await slot.worker.terminate();
      }),
    );
  }

  /**
   * A buffer that may be transferred to a worker: one this pool handed out (the caller gave it back), or else
   * a fresh copy, since detaching a caller's buffer could break whoever else holds it.
   */
  private owned(data: Buffer, callerGivesUp = false): Uint8Array {
    if (callerGivesUp || this.ownedBuffers.has(data.buffer)) {
      this.ownedBuffers.delete(data.buffer);
      return standalone(data);
    }
    const i = this.spares.findIndex((b) => b.byteLength === data.byteLength);
    const copy = i >= 0 ? this.spares.splice(i, 1)[0] : new Uint8Array(data.byteLength);
    copy.set(data);
    return copy;
  }

  private run(task: WorkerTask): Promise<WorkerReply> {
    if (this.closed) return Promise.reject(new Error('chunk worker pool is closed'));
    const slot = this.leastBusy();
    const seq = ++this.seq;
    return new Promise<WorkerReply>((resolve, reject) => {
      slot.pending.set(seq, { resolve, reject });
      if (slot.pending.size === 1) slot.worker.ref();
      const transfer = [...('data' in task ? [task.data.buffer] : []), ...('into' in task && task.into ? [task.into.buffer] : [])];
      slot.worker.postMessage({ ...task, seq }, transfer as ArrayBuffer[]);
    }).then((reply) => {
      if (!reply.ok) {
        if (reply.corrupt) throw new CorruptChunkError(reply.corrupt.chunkId, reply.corrupt.reason);
        if (reply.missing) throw new MissingChunkError(reply.missing);
        throw new Error(`chunk worker: ${reply.message}`);
      }
      return reply;
    });
  }

  private leastBusy(): Slot {
    let best: Slot | undefined;
    for (let i = 0; i < this.slots.length; i++) {
      const slot = (this.slots[i] ??= this.spawn(i));
      if (!best || slot.pending.size < best.pending.size) best = slot;
      if (slot.pending.size === 0) break;
    }
    return best as Slot;
  }

  private spawn(index: number): Slot {
    const { file, options } = workerScript(__filename, 'chunk-worker');
    const worker = new Worker(file, options);
    worker.unref();
    const slot: Slot = { worker, pending: new Map() };
    const failAll = (err: Error) => {
      if (this.slots[index] === slot) this.slots[index] = undefined;
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
    };
    worker.on('message', (reply: WorkerReply) => {
      const p = slot.pending.get(reply.seq);
      if (!p) return;
      slot.pending.delete(reply.seq);
      if (slot.pending.size === 0) worker.unref();
      p.resolve(reply);
    });
    worker.on('error', (err) => failAll(new Error(`chunk worker failed: ${err.message}`)));
    worker.on('exit', (code) => failAll(new Error(`chunk worker exited with code ${code}`)));
    return slot;
  }
}

let shared: ChunkWorkerPool | undefined;

/** The process-wide pool (one worker per core, at most 4), created on first use. */
export function sharedChunkWorkers(): ChunkWorkerPool {
  shared ??= new ChunkWorkerPool(Math.max(1, Math.min(4, availableParallelism())));
  return shared;
}

/** Stops the process-wide pool (tests, graceful shutdown). The next use starts a new one. */
export async function closeSharedChunkWorkers(): Promise<void> {
  const pool = shared;
  shared = undefined;
  await pool?.close();
}
