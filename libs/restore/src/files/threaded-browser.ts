/**
 * A browse session whose file systems live on a worker thread of their own (browse-worker.ts): the thread
 * serving requests keeps the `FileBrowser` surface (volumes, list, stat, readlink, fileSystem) and forwards every
 * call as a numbered request; file systems are proxies with the readers' read-only interface, file bytes come
 * back in transferred buffers. A crashed or hung worker fails its requests with a `BrowseWorkerError` and the
 * browser stays failed (`failure`), so the session holding it is dropped and the next request opens a new one.
 * Pure: no Nest.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { VmkeepError } from '@vmkeep/contracts';
import type { Extent } from '@vmkeep/disk';
import type { FileHandle, FileStat, FileSystem, FileSystemType, ReaddirOptions, ReaddirResult } from '@vmkeep/filesystems';
import { workerScript } from '@vmkeep/repository';
import type { BrowseView, DirPage, ListOptions, VolumeView } from './browser';
import {
  fromThreadError,
  type BrowseAnswers,
  type BrowseReadyMessage,
  type BrowseReplyMessage,
  type BrowseRequest,
  type BrowseWorkerData,
} from './thread-protocol';

/** The worker of a browse session crashed, hung or was closed: the request cannot be answered (HTTP 503). */
export class BrowseWorkerError extends VmkeepError {
  constructor(message: string) {
    super(message, 'unavailable');
  }
}

export interface ThreadedBrowserOptions {
  /** Requests waiting and no message from the worker for this long: it is hung and terminated (default 30 s). */
  hangMs?: number;
  /** What the errors call the session ("restore point …"). */
  label?: string;
  /** @internal another worker entry speaking the same protocol (specs: a worker that hangs or dies). */
  entry?: { file: string; options?: WorkerOptions };
}

/** How often a worker with requests waiting is pinged. */
const tickOf = (hangMs: number) => Math.max(50, Math.min(5000, hangMs / 4));

/** Longest wait for the worker to close its disks and repository before it is terminated. */
const CLOSE_WAIT_MS = 10_000;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class ThreadedFileBrowser implements BrowseView {
  private readonly pending = new Map<number, Pending>();
  private readonly fileSystems = new Map<number, FileSystem>();
  private readonly ticker: NodeJS.Timeout;
  private readonly hangMs: number;
  private nextId = 1;
  private lastHeard = Date.now();
  private closing?: Promise<void>;
  private failed: Error | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly volumes: VolumeView[],
    private readonly label: string,
    hangMs: number,
  ) {
    this.hangMs = hangMs;
    worker.on('message', (m: BrowseReplyMessage) => this.onReply(m));
    worker.on('error', (err) => this.fail(`failed: ${err.message}`));
    worker.on('exit', (code) => this.fail(`stopped (exit code ${code})`));
    this.ticker = setInterval(() => this.checkAlive(), tickOf(hangMs));
    this.ticker.unref();
  }

  /**
   * Starts the worker and waits until it has opened the repository, the disks and every file system. Errors
   * opening them reject as they were thrown on the worker (same class and code); a worker that dies, or answers
   * no ping for `hangMs` while opening, rejects with a BrowseWorkerError.
   */
  static open(data: BrowseWorkerData, options: ThreadedBrowserOptions = {}): Promise<ThreadedFileBrowser> {
    const label = options.label ?? `point ${data.pointId}`;
    const hangMs = options.hangMs ?? 30_000;
    const { file, options: workerOptions } = options.entry ?? workerScript(__filename, 'browse-worker');
    const worker = new Worker(file, { ...workerOptions, workerData: data });
    return new Promise<ThreadedFileBrowser>((resolve, reject) => {
      let lastHeard = Date.now();
      let ping = 0;
      const ticker = setInterval(() => {
        if (Date.now() - lastHeard > hangMs) stop(new BrowseWorkerError(`file browsing thread of ${label} did not answer for ${hangMs / 1000} s while opening and was stopped`));
        else worker.postMessage({ op: 'ping', id: --ping }); // negative ids: never a request's
      }, tickOf(hangMs));
      const detach = () => {
        clearInterval(ticker);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const stop = (err: Error) => {
        detach();
        void worker.terminate();
        reject(err);
      };
      const onMessage = (m: BrowseReadyMessage | BrowseReplyMessage) => {
        lastHeard = Date.now();
        if (!('ready' in m)) return; // a ping's answer
        if (!m.ready) return stop(fromThreadError(m.error));
        detach();
        resolve(new ThreadedFileBrowser(worker, m.volumes, label, hangMs));
      };
      const onError = (err: Error) => stop(new BrowseWorkerError(`file browsing thread of ${label} failed while opening: ${err.message}`));
      const onExit = (code: number) => stop(new BrowseWorkerError(`file browsing thread of ${label} stopped while opening (exit code ${code})`));
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
  }

  /** The worker's thread id (diagnostics and tests: proves the parsing is off this thread). */
  get threadId(): number {
    return this.worker.threadId;
  }

  /** Why the browser cannot serve any more (crashed, hung or closed); null while it works. */
  get failure(): Error | null {
    return this.failed;
  }

  /** @internal the worker itself, for tests that stop it the hard way. */
  get workerForTests(): Worker {
    return this.worker;
  }

  fileSystem(n: number): FileSystem {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.volumes.length) {
      throw new VmkeepError(`no volume ${n} (this restore point has ${this.volumes.length})`, 'not_found');
    }
    const info = this.volumes[n].fileSystem;
    if (!info) throw new VmkeepError(`volume ${n} has no readable file system: ${this.volumes[n].error ?? 'unknown'}`, 'invalid');
    let fs = this.fileSystems.get(n);
    if (!fs) {
      fs = new RemoteFileSystem(this, n, info);
      this.fileSystems.set(n, fs);
    }
    return fs;
  }

  list(volume: number, path: string | undefined, options: ListOptions = {}): Promise<DirPage> {
    return this.request({ op: 'list', volume, path, options });
  }

  stat(volume: number, path: string | undefined): Promise<BrowseAnswers['stat']> {
    return this.request({ op: 'stat', volume, path });
  }

  readlink(volume: number, path: string | undefined): Promise<{ path: string; target: string }> {
    return this.request({ op: 'readlink', volume, path });
  }

  /** Lets the worker close its disks and repository, then ends the thread. Requests after it fail. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.failed) {
        const closed = this.request({ op: 'close' }).catch(() => undefined);
        await Promise.race([closed, new Promise((r) => setTimeout(r, CLOSE_WAIT_MS).unref())]);
      }
      this.fail('was closed');
      await this.worker.terminate();
    })();
    return this.closing;
  }

  /** @internal one request to the worker (RemoteFileSystem and RemoteFileHandle use it). */
  request<R extends BrowseRequest>(req: R): Promise<BrowseAnswers[R['op']]> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    if (this.pending.size === 0) this.lastHeard = Date.now();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...req, id });
    });
  }

  /** A new handle number for an opened file (the worker keeps the file open under it). */
  nextHandle(): number {
    return this.nextId++;
  }

  private onReply(m: BrowseReplyMessage): void {
    this.lastHeard = Date.now();
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(fromThreadError(m.error));
  }

  /** While requests wait: a ping keeps a working worker heard from; silence for `hangMs` means it is hung. */
  private checkAlive(): void {
    if (this.failed || this.pending.size === 0) return;
    if (Date.now() - this.lastHeard > this.hangMs) {
      this.fail(`did not answer for ${this.hangMs / 1000} s and was stopped`);
      return;
    }
    this.request({ op: 'ping' }).catch(() => undefined);
  }

  private fail(why: string): void {
    if (this.failed) return;
    const err = new BrowseWorkerError(`file browsing thread of ${this.label} ${why}; the next request opens it again`);
    this.failed = err;
    clearInterval(this.ticker);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    if (!this.closing) void this.worker.terminate();
  }
}

/** A volume's file system on the worker, with the readers' read-only interface. */
class RemoteFileSystem implements FileSystem {
  readonly type: FileSystemType;
  readonly label: string;
  readonly uuid: string;
  readonly size: number;
  readonly dirty: boolean;
  readonly warnings: string[];

  constructor(
    private readonly browser: ThreadedFileBrowser,
    private readonly volume: number,
    info: NonNullable<VolumeView['fileSystem']>,
  ) {
    this.type = info.type as FileSystemType;
    this.label = info.label;
    this.uuid = info.uuid;
    this.size = info.size;
    this.dirty = info.dirty;
    this.warnings = info.warnings;
  }

  readdir(path: string, options: ReaddirOptions = {}): Promise<ReaddirResult> {
    return this.browser.request({ op: 'fs.readdir', volume: this.volume, path, offset: options.offset, limit: options.limit });
  }

  readdirNames(path: string, limit?: number): Promise<{ names: string[]; complete: boolean }> {
    return this.browser.request({ op: 'fs.readdirNames', volume: this.volume, path, limit });
  }

  stat(path: string): Promise<FileStat> {
    return this.browser.request({ op: 'fs.stat', volume: this.volume, path });
  }

  readlink(path: string): Promise<string> {
    return this.browser.request({ op: 'fs.readlink', volume: this.volume, path });
  }

  async open(path: string): Promise<FileHandle> {
    const handle = this.browser.nextHandle();
    const { size } = await this.browser.request({ op: 'fs.open', volume: this.volume, path, handle });
    return new RemoteFileHandle(this.browser, this.volume, path, handle, size);
  }
}

/** An opened file on the worker: reads answer with the bytes in a buffer transferred to this thread. */
class RemoteFileHandle implements FileHandle {
  constructor(
    private readonly browser: ThreadedFileBrowser,
    private readonly volume: number,
    private readonly path: string,
    private readonly handle: number,
    readonly size: number,
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    const bytes = await this.browser.request({ op: 'file.read', volume: this.volume, path: this.path, handle: this.handle, offset, length });
    return Buffer.from(bytes);
  }

  extents(): Promise<Extent[]> {
    return this.browser.request({ op: 'file.extents', volume: this.volume, path: this.path, handle: this.handle });
  }
}
