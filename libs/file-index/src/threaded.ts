/**
 * `indexPoint` on a worker thread: the worker opens the repository itself (location + passphrase + S3 settings),
 * opens the point's disks, walks them and writes the pages and the record, so the calling thread only waits.
 */
import { Worker } from 'node:worker_threads';
import { workerScript, type RuntimeOptions } from '@vmkeep/repository';
import { FileIndexError } from './errors';
import type { IndexPointResult } from './indexer';
import type { PagingParams } from './page';
import type { WalkLimits } from './walk';

/**
 * How another thread opens the same repository. The keys, passphrase and S3 secret go to the worker only, never to
 * a log. `unlockedKeys` (from `Repository.unlockedKeys()` of the caller's open repository) opens an encrypted
 * repository without running the KDF again; a passphrase alone costs the worker a second KDF run.
 */
export interface RepositoryOpening {
  /** Folder path or `s3://BUCKET/PREFIX`. */
  location: string;
  runtime?: Pick<RuntimeOptions, 'passphrase' | 's3' | 'unlockedKeys'>;
}

/** What the worker is given (workerData). */
export interface IndexWorkerJob {
  repository: RepositoryOpening;
  pointId: string;
  diskKeys: string[];
  limits?: Partial<WalkLimits>;
  paging?: PagingParams;
}

/** An error crossing the thread boundary: what it takes to rebuild it on the other side. */
export interface ThreadError {
  name: string;
  message: string;
  code?: string;
}

/** The worker's one message. */
export type IndexWorkerReply = { ok: true; result: IndexPointResult } | { ok: false; error: ThreadError };

export function toThreadError(err: unknown): ThreadError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const code = (err as { code?: unknown }).code;
  return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
}

/** The error as the calling thread sees it: a FileIndexError stays one, others keep name, message and code. */
export function fromThreadError(e: ThreadError): Error {
  if (e.name === 'FileIndexError' && e.code) return new FileIndexError(e.message, e.code);
  const err = new Error(e.message) as Error & { code?: string };
  err.name = e.name;
  if (e.code) err.code = e.code;
  return err;
}

export interface IndexPointInWorkerOptions {
  /** Aborting terminates the worker; the promise rejects with the signal's reason (no record is written). */
  signal?: AbortSignal;
  limits?: Partial<WalkLimits>;
  paging?: PagingParams;
}

/**
 * Indexes the disks `diskKeys` of point `pointId` of the repository at `repository` like `indexPoint` (same
 * record, same pages, same warnings), on a worker thread of its own. Errors of the walk or the storage reject
 * with the same name, message and code as `indexPoint` would throw.
 */
export function indexPointInWorker(
  repository: RepositoryOpening,
  pointId: string,
  diskKeys: readonly string[],
  opts: IndexPointInWorkerOptions = {},
): Promise<IndexPointResult> {
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const job: IndexWorkerJob = {
    repository,
    pointId,
    diskKeys: [...diskKeys],
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.paging ? { paging: opts.paging } : {}),
  };
  const { file, options } = workerScript(__filename, 'index-worker');
  return new Promise<IndexPointResult>((resolve, reject) => {
    const worker = new Worker(file, { ...options, workerData: job });
    let settled = false;
    const settle = (done: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      done();
      void worker.terminate();
    };
    const onAbort = () => settle(() => reject(signal?.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (reply: IndexWorkerReply) =>
      settle(() => (reply.ok ? resolve(reply.result) : reject(fromThreadError(reply.error)))),
    );
    worker.once('error', (err) => settle(() => reject(new Error(`file index worker failed: ${err.message}`))));
    worker.once('exit', (code) => settle(() => reject(new Error(`file index worker exited with code ${code} before it answered`))));
  });
}
