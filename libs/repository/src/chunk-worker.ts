/**
 * Entry point of a chunk worker thread: hashes, compresses, encrypts chunks off the main thread, and checks and
 * decodes stored blobs. Buffers travel by transfer, not by copy: the chunk comes in, goes back with its id, the
 * blob goes back on encoding, and the plaintext goes back on decoding.
 */
import { readFileSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { compressChunk, computeChunkId, decodeBlob, encodeChunk, standalone } from './codec';
import type { WorkerReply, WorkerTask } from './chunk-workers';
import { CorruptChunkError } from './errors';

function exclusive(view: Uint8Array, owned: Uint8Array): Uint8Array {
  if (view.buffer === owned.buffer) return view;
  const copy = new Uint8Array(view.byteLength);
  copy.set(view);
  return copy;
}

/** A blob file read on this thread (blocking only this worker); undefined when it does not exist. */
function readBlob(task: { file: string }): Buffer | undefined {
  try {
    return readFileSync(task.file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function run(task: WorkerTask): [WorkerReply, ArrayBuffer[]] {
  try {
    if (task.op === 'hash') {
      const id = new Uint8Array(computeChunkId(task.scheme, task.data));
      return [{ seq: task.seq, ok: true, id, data: task.data }, [task.data.buffer as ArrayBuffer]];
    }
    if (task.op === 'decode' || task.op === 'decode-file') {
      const blob = task.op === 'decode' ? Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength) : readBlob(task);
      if (!blob) return [{ seq: task.seq, ok: false, message: 'chunk file is missing', missing: Buffer.from(task.id).toString('hex') }, []];
      const into = task.op === 'decode-file' ? task.into : undefined;
      const plain = standalone(decodeBlob(Buffer.from(task.id), blob, task.scheme, task.key, into));
      return [{ seq: task.seq, ok: true, plain }, [plain.buffer as ArrayBuffer]];
    }
    if (task.op === 'encode') {
      const blob = encodeChunk(task.data, task.level, task.sealing);
      // The chunk goes back too: the pool reuses its buffer instead of allocating one for the next chunk.
      const spare = task.data;
      return [{ seq: task.seq, ok: true, blob, spare }, [blob.buffer as ArrayBuffer, spare.buffer as ArrayBuffer]];
    }
    const { compression, payload } = compressChunk(task.data, task.level);
    const out = exclusive(payload, task.data);
    return [{ seq: task.seq, ok: true, compression, payload: out }, [out.buffer as ArrayBuffer]];
  } catch (err) {
    const corrupt = err instanceof CorruptChunkError ? { chunkId: err.chunkId, reason: err.reason } : undefined;
    return [{ seq: task.seq, ok: false, message: err instanceof Error ? err.message : String(err), corrupt }, []];
  }
}

parentPort?.on('message', (task: WorkerTask) => {
  const [reply, transfer] = run(task);
  parentPort?.postMessage(reply, transfer);
});
