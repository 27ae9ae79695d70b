/**
 * Runs the disk-formats fuzz cases on worker threads (one per core): each worker compiles the TypeScript
 * sources on the fly (typescript.transpileModule, @vmkeep/* aliases mapped to libs/<lib>/src), runs its share
 * of the cases and reports failures. A watchdog reads the case each worker is on from shared memory: a case
 * that takes longer than the limit (a hang or a busy loop) is reported and its worker replaced. Worker heaps are
 * capped, and the process RSS is sampled, so an allocation bomb fails the run instead of the machine.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FuzzImage } from './fuzz-corpus';
import type { WorkerInput, WorkerMessage } from './fuzz-worker';

const ROOT = path.resolve(__dirname, '..', '..');

export interface FuzzFailure {
  caseNo: number;
  image: string;
  steps: string[];
  error: string;
  /** The failing input, saved for replay (undefined for a hang: see `steps` and the case number). */
  savedInput?: string;
}

export interface FuzzReport {
  cases: number;
  failures: FuzzFailure[];
  stats: Extract<WorkerMessage, { type: 'done' }>['stats'];
  refusals: Record<string, number>;
  maxAlloc: number;
  /** Largest growth of the process RSS seen while the cases ran. */
  rssGrowth: number;
  elapsedMs: number;
}

export interface FuzzOptions {
  images: FuzzImage[];
  seed: number;
  cases: number[];
  workers: number;
  caseTimeoutMs: number;
  allocLimit: number;
  retainLimit: number;
  heapLimitMb: number;
  /** Folder for the inputs of failing cases. */
  failureDir: string;
}

/** JavaScript run by each worker: a require hook for .ts files and the alias mapping, then the worker module. */
const BOOTSTRAP = `
const Module = require('node:module');
const fs = require('node:fs');
const path = require('node:path');
const ts = require('typescript');
const { root, entry } = require('node:worker_threads').workerData.bootstrap;
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  const alias = /^@vmkeep\\/([a-z-]+)$/.exec(request);
  return resolve.call(this, alias ? path.join(root, 'libs', alias[1], 'src') : request, ...rest);
};
const options = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true,
  experimentalDecorators: true, emitDecoratorMetadata: true, sourceMap: false, inlineSourceMap: true };
Module._extensions['.ts'] = function (module, filename) {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), { compilerOptions: options, fileName: filename });
  module._compile(out.outputText, filename);
};
require(entry);
`;

/** Runs the cases and collects what the workers report. */
export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const report: FuzzReport = { cases: opts.cases.length, failures: [], stats: {}, refusals: {}, maxAlloc: 0, rssGrowth: 0, elapsedMs: 0 };
  const rssBase = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    report.rssGrowth = Math.max(report.rssGrowth, process.memoryUsage.rss() - rssBase);
  }, 100);
  const shares: number[][] = Array.from({ length: opts.workers }, () => []);
  opts.cases.forEach((c, i) => shares[i % opts.workers].push(c));
  try {
    await Promise.all(shares.filter((s) => s.length > 0).map((share) => runShare(opts, share, report)));
  } finally {
    clearInterval(sampler);
  }
  report.elapsedMs = Date.now() - started;
  return report;
}

function merge(report: FuzzReport, done: Extract<WorkerMessage, { type: 'done' }>): void {
  for (const [name, s] of Object.entries(done.stats)) {
    const t = (report.stats[name] ??= { cases: 0, opened: 0, refused: 0, readOk: 0, bytesRead: 0 });
    t.cases += s.cases;
    t.opened += s.opened;
    t.refused += s.refused;
    t.readOk += s.readOk;
    t.bytesRead += s.bytesRead;
  }
  for (const [name, n] of Object.entries(done.refusals)) report.refusals[name] = (report.refusals[name] ?? 0) + n;
  report.maxAlloc = Math.max(report.maxAlloc, done.maxAlloc);
}

async function saveInput(opts: FuzzOptions, caseNo: number, file: string, input: Uint8Array): Promise<string> {
  await fs.mkdir(opts.failureDir, { recursive: true });
  const out = path.join(opts.failureDir, `case-${opts.seed}-${caseNo}-${file}`);
  await fs.writeFile(out, input);
  return out;
}

/** Runs one worker over `cases`; when a case hangs or kills the worker, reports it and goes on with the rest. */
async function runShare(opts: FuzzOptions, cases: number[], report: FuzzReport): Promise<void> {
  let remaining = cases;
  let deaths = 0;
  while (remaining.length > 0) {
    const progress = new SharedArrayBuffer(8);
    const view = new Int32Array(progress);
    view[0] = remaining[0];
    const input: WorkerInput & { bootstrap: { root: string; entry: string } } = {
      images: opts.images, seed: opts.seed, cases: remaining, progress, allocLimit: opts.allocLimit, retainLimit: opts.retainLimit,
      bootstrap: { root: ROOT, entry: path.join(__dirname, 'fuzz-worker.ts') },
    };
    const worker = new Worker(BOOTSTRAP, {
      eval: true, workerData: input, resourceLimits: { maxOldGenerationSizeMb: opts.heapLimitMb },
    });
    const saving: Promise<void>[] = [];
    const outcome = await new Promise<{ finished: boolean; problem?: string }>((resolve) => {
      let finished = false;
      let lastCount = -1;
      let lastChange = Date.now();
      const watchdog = setInterval(() => {
        const count = Atomics.load(view, 1);
        if (count !== lastCount) {
          lastCount = count;
          lastChange = Date.now();
        } else if (Date.now() - lastChange > opts.caseTimeoutMs) {
          clearInterval(watchdog);
          void worker.terminate();
          resolve({ finished: false, problem: `no result after ${opts.caseTimeoutMs} ms (hang or busy loop)` });
        }
      }, 100);
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'failure') {
          const failure: FuzzFailure = { caseNo: m.caseNo, image: m.image, steps: m.steps, error: m.error };
          report.failures.push(failure);
          saving.push(saveInput(opts, m.caseNo, m.file, m.input).then((file) => void (failure.savedInput = file)));
        } else {
          finished = true;
          merge(report, m);
        }
      });
      worker.on('error', (err) => {
        clearInterval(watchdog);
        resolve({ finished: false, problem: `worker died: ${err.name}: ${err.message}` });
      });
      worker.on('exit', (code) => {
        clearInterval(watchdog);
        resolve(finished ? { finished } : { finished: false, problem: `worker exited (code ${code}) in the middle of the case: a promise that never settles` });
      });
    });
    await Promise.all(saving);
    if (outcome.finished) return;
    const caseNo = Atomics.load(view, 0);
    report.failures.push({ caseNo, image: opts.images[caseNo % opts.images.length].name, steps: [], error: outcome.problem ?? 'unknown' });
    // Workers that die before finishing any case, again and again, mean a broken harness: stop this share.
    deaths = Atomics.load(view, 1) === 0 ? deaths + 1 : 0;
    if (deaths >= 3) {
      report.failures.push({ caseNo, image: '-', steps: [], error: `3 workers in a row died at once: ${remaining.length} cases not run` });
      return;
    }
    remaining = remaining.slice(remaining.indexOf(caseNo) + 1);
  }
}

export const DEFAULT_FAILURE_DIR = path.join(os.tmpdir(), 'vmkeep-fuzz-failures');
