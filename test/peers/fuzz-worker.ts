/**
 * Worker thread of the disk-formats fuzz test (started by fuzz-runner.ts): runs its share of the cases and
 * reports every case that threw something other than a typed disk error, allocated one oversized buffer, or
 * left memory behind. Before each case it publishes the case number in shared memory, so the runner can tell
 * which case hangs (a busy loop never comes back to post a message) and kill the thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { FuzzImage } from './fuzz-corpus';
import { caseRng, mutate } from './fuzz-mutate';
import { runCase } from './fuzz-target';

export interface WorkerInput {
  images: FuzzImage[];
  seed: number;
  cases: number[];
  /** Int32Array over a SharedArrayBuffer: [case in progress, cases finished]. */
  progress: SharedArrayBuffer;
  /** Largest single Buffer allocation allowed in a case. */
  allocLimit: number;
  /** Largest growth of arrayBuffers memory (over the start) allowed after a case. */
  retainLimit: number;
}

export type WorkerMessage =
  | { type: 'failure'; caseNo: number; image: string; steps: string[]; error: string; file: string; input: Uint8Array }
  | {
      type: 'done';
      stats: Record<string, { cases: number; opened: number; refused: number; readOk: number; bytesRead: number }>;
      refusals: Record<string, number>;
      maxAlloc: number;
    };

/** Case number the image of that case comes from: all images get the same share. */
export function imageOf(images: FuzzImage[], caseNo: number): FuzzImage {
  return images[caseNo % images.length];
}

/** Watches single Buffer allocations of the current case. */
function watchAllocations(): { reset(): number; max(): number } {
  let largest = 0;
  let overall = 0;
  const wrap = <F extends (size: number, ...rest: never[]) => Buffer>(fn: F): F =>
    function (this: unknown, size: number, ...rest: never[]): Buffer {
      if (typeof size === 'number' && size > largest) largest = size;
      return fn.call(Buffer, size, ...rest);
    } as F;
  Buffer.alloc = wrap(Buffer.alloc);
  Buffer.allocUnsafe = wrap(Buffer.allocUnsafe);
  Buffer.allocUnsafeSlow = wrap(Buffer.allocUnsafeSlow);
  return {
    reset() {
      const was = largest;
      overall = Math.max(overall, largest);
      largest = 0;
      return was;
    },
    max: () => Math.max(overall, largest),
  };
}

async function main(): Promise<void> {
  const input = workerData as WorkerInput;
  const progress = new Int32Array(input.progress);
  const allocations = watchAllocations();
  const stats: Extract<WorkerMessage, { type: 'done' }>['stats'] = {};
  const refusals: Record<string, number> = {};
  const baseline = process.memoryUsage().arrayBuffers;
  for (const caseNo of input.cases) {
    Atomics.store(progress, 0, caseNo);
    const image = imageOf(input.images, caseNo);
    const rng = caseRng(input.seed, caseNo);
    const { files, steps } = mutate(image, rng);
    const s = (stats[image.name] ??= { cases: 0, opened: 0, refused: 0, readOk: 0, bytesRead: 0 });
    s.cases++;
    allocations.reset();
    let error: string | undefined;
    try {
      const outcome = await runCase(image, files, rng);
      if (outcome.opened) s.opened++;
      if (outcome.refusedWith) {
        s.refused++;
        refusals[outcome.refusedWith] = (refusals[outcome.refusedWith] ?? 0) + 1;
      } else {
        s.readOk++;
      }
      s.bytesRead += outcome.bytesRead;
    } catch (err) {
      error = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : `non-Error thrown: ${String(err)}`;
    }
    const largest = allocations.reset();
    if (!error && largest > input.allocLimit) error = `allocated a ${largest}-byte buffer (limit ${input.allocLimit})`;
    const retained = process.memoryUsage().arrayBuffers - baseline;
    if (!error && retained > input.retainLimit) {
      (globalThis as { gc?: () => void }).gc?.();
      const after = process.memoryUsage().arrayBuffers - baseline;
      if (after > input.retainLimit) error = `${after} bytes of buffers still held after the case`;
    }
    if (error) {
      const target = steps[0].slice('file '.length);
      parentPort!.postMessage({ type: 'failure', caseNo, image: image.name, steps, error, file: target, input: files[target] } satisfies WorkerMessage);
    }
    Atomics.add(progress, 1, 1);
  }
  parentPort!.postMessage({ type: 'done', stats, refusals, maxAlloc: allocations.max() } satisfies WorkerMessage);
}

void main().catch((err: unknown) => {
  // A failure of the harness itself (not of a case): let the runner see it as a worker error.
  setImmediate(() => {
    throw err;
  });
});
