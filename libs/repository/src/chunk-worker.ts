/**
 * Entry point of a chunk worker thread: hashes, compresses, encrypts chunks off the main thread, and checks and
 * decodes stored blobs. Buffers travel by transfer, not by copy: the chunk comes in, goes back with its id, the
 * blob goes back on encoding, and the plaintext goes back on decoding.
 */
import { parentPort } from 'node:worker_threads';
import { decodeBlobFile } from './blob-file';
import { compressChunk, computeChunkId, decodeBlob, encodeChunk, encodeChunkParts, standalone } from './codec';
import type { WorkerReply, WorkerTask } from './chunk-workers';
import { CorruptChunkError } from './errors';

function exclusive(view: Uint8Array, owned: Uint8Array): Uint8Array {
  if (view.buffer === owned.buffer) return view;
  const copy = new Uint8Array(view.byteLength);
  copy.set(view);
  return copy;
}

function run(task: WorkerTask): [WorkerReply, ArrayBuffer[]] {
  try {
    if (task.op === 'hash') {
      const id = new Uint8Array(computeChunkId(task.scheme, task.data));
      return [{ seq: task.seq, ok: true, id, data: task.data }, [task.data.buffer as ArrayBuffer]];
    }
    if (task.op === 'decode' || task.op === 'decode-file') {
      const id = Buffer.from(task.id);
      // A file is read on this thread (blocking only this worker), its payload straight into place (blob-file.ts).
      const decoded =
        task.op === 'decode'
          ? decodeBlob(id, Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength), task.scheme, task.key, task.into)
          : decodeBlobFile(id, task.file, task.scheme, task.key, task.into);
      if (!decoded) return [{ seq: task.seq, ok: false, message: 'chunk file is missing', missing: id.toString('hex') }, []];
      const plain = standalone(decoded);
      return [{ seq: task.seq, ok: true, plain }, [plain.buffer as ArrayBuffer]];
    }
    if (task.op === 'encode') {
      // The blob's parts leave this thread by transfer (unless asked for whole, a sealed blob is not assembled
      // here), so encoding leaves no garbage behind on this thread. The chunk goes back too: the pool reuses its
      // buffer for the next chunk.
      const parts = task.whole ? [encodeChunk(task.data, task.level, task.sealing)] : encodeChunkParts(task.data, task.level, task.sealing);
      const spare = task.data;
      return [{ seq: task.seq, ok: true, parts, spare }, [...parts.map((p) => p.buffer as ArrayBuffer), spare.buffer as ArrayBuffer]];
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
