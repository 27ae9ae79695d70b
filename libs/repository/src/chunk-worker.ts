/**
 * Entry point of a chunk worker thread: hashes and compresses chunks off the main thread. Buffers travel by
 * transfer, not by copy: the chunk comes in, goes back with its id, and the payload goes back on compression.
 */
import { parentPort } from 'node:worker_threads';
import { compressChunk, computeChunkId, encodeChunk } from './codec';
import type { WorkerReply, WorkerTask } from './chunk-workers';

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
    if (task.op === 'encode') {
      const blob = encodeChunk(task.data, task.level, task.sealing);
      return [{ seq: task.seq, ok: true, blob }, [blob.buffer as ArrayBuffer]];
    }
    const { compression, payload } = compressChunk(task.data, task.level);
    const out = exclusive(payload, task.data);
    return [{ seq: task.seq, ok: true, compression, payload: out }, [out.buffer as ArrayBuffer]];
  } catch (err) {
    return [{ seq: task.seq, ok: false, message: err instanceof Error ? err.message : String(err) }, []];
  }
}

parentPort?.on('message', (task: WorkerTask) => {
  const [reply, transfer] = run(task);
  parentPort?.postMessage(reply, transfer);
});
