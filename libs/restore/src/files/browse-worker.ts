/**
 * Entry point of a browse session's worker thread (started by `ThreadedFileBrowser.open`): opens the repository
 * and the point's disks, opens every file system with `FileBrowser`, announces the volumes, then answers requests
 * until told to close. All parsing (partition tables, LVM, file-system metadata, sorting) runs here; chunks are
 * decoded on a pool of this thread's own (2 threads, started on first use): decoding inline on this thread cost
 * 1.5 times the CPU per downloaded byte (docs/benchmarks.md).
 */
import { availableParallelism } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { Disk } from '@vmkeep/disk';
import type { FileHandle } from '@vmkeep/filesystems';
import { ChunkWorkerPool, Repository } from '@vmkeep/repository';
import { FileBrowser } from './browser';
import { toThreadError, type BrowseReadyMessage, type BrowseReplyMessage, type BrowseRequest, type BrowseRequestMessage, type BrowseWorkerData } from './thread-protocol';

/** Opened files kept for reads by handle number; the oldest is dropped past this (a read then reopens by path). */
const MAX_HANDLES = 256;

interface Opened {
  repository: Repository;
  /** Owns the disks (closing it closes them). */
  browser: FileBrowser;
}

/** Decodes this session's chunks (decryption, decompression, checks); closed with the session. */
const codec = new ChunkWorkerPool(Math.max(1, Math.min(2, availableParallelism())));

async function openAll(data: BrowseWorkerData): Promise<Opened> {
  const repository = await Repository.open(data.repository.location, { ...data.repository.runtime, codec });
  const disks: { key: string; disk: Disk }[] = [];
  try {
    for (const key of data.diskKeys) disks.push({ key, disk: await repository.openDisk(data.pointId, key) });
    const browser = await FileBrowser.open(disks);
    return { repository, browser };
  } catch (err) {
    await Promise.allSettled(disks.map((d) => d.disk.close()));
    await repository.close().catch(() => undefined);
    throw err;
  }
}

class Server {
  private readonly handles = new Map<number, Promise<FileHandle>>();

  constructor(private readonly opened: Opened) {}

  /** The handle numbered `id` (opened again by path when it was dropped). */
  private handle(volume: number, path: string, id: number): Promise<FileHandle> {
    let handle = this.handles.get(id);
    if (handle) {
      this.handles.delete(id); // re-inserted: the map's order is least recently used first
    } else {
      handle = this.opened.browser.fileSystem(volume).open(path);
      handle.catch(() => this.handles.delete(id));
    }
    this.handles.set(id, handle);
    while (this.handles.size > MAX_HANDLES) this.handles.delete(this.handles.keys().next().value!);
    return handle;
  }

  async answer(r: BrowseRequest): Promise<{ value: unknown; transfer?: ArrayBuffer[] }> {
    const b = this.opened.browser;
    switch (r.op) {
      case 'ping': // answered before it gets here
        return { value: null };
      case 'list':
        return { value: await b.list(r.volume, r.path, r.options) };
      case 'stat':
        return { value: await b.stat(r.volume, r.path) };
      case 'readlink':
        return { value: await b.readlink(r.volume, r.path) };
      case 'fs.readdir':
        return { value: await b.fileSystem(r.volume).readdir(r.path, { offset: r.offset, limit: r.limit }) };
      case 'fs.readdirNames': {
        const fs = b.fileSystem(r.volume);
        if (!fs.readdirNames) throw new Error(`volume ${r.volume} (${fs.type}) cannot list names only`);
        return { value: await fs.readdirNames(r.path, r.limit) };
      }
      case 'fs.stat':
        return { value: await b.fileSystem(r.volume).stat(r.path) };
      case 'fs.readlink':
        return { value: await b.fileSystem(r.volume).readlink(r.path) };
      case 'fs.open':
        return { value: { size: (await this.handle(r.volume, r.path, r.handle)).size } };
      case 'file.extents':
        return { value: await (await this.handle(r.volume, r.path, r.handle)).extents() };
      case 'file.read': {
        const bytes = await (await this.handle(r.volume, r.path, r.handle)).read(r.offset, r.length);
        // The reader's buffer may be a view of a cache block: the bytes go over in an ArrayBuffer of their own.
        const own = new ArrayBuffer(bytes.length);
        new Uint8Array(own).set(bytes);
        return { value: own, transfer: [own] };
      }
      case 'close':
        this.handles.clear();
        await this.opened.browser.close();
        await this.opened.repository.close().catch(() => undefined);
        await codec.close();
        return { value: null };
    }
  }
}

function main(port: NonNullable<typeof parentPort>): void {
  let server: Server | undefined;
  // Registered first: pings are answered while the file systems are still being opened.
  port.on('message', (m: BrowseRequestMessage) => {
    if (m.op === 'ping') return port.postMessage({ id: m.id, ok: true, value: null } satisfies BrowseReplyMessage);
    if (!server) return port.postMessage({ id: m.id, ok: false, error: toThreadError(new Error('the browse session is not open yet')) } satisfies BrowseReplyMessage);
    server.answer(m).then(
      ({ value, transfer }) => port.postMessage({ id: m.id, ok: true, value } satisfies BrowseReplyMessage, transfer ?? []),
      (err: unknown) => port.postMessage({ id: m.id, ok: false, error: toThreadError(err) } satisfies BrowseReplyMessage),
    );
  });
  openAll(workerData as BrowseWorkerData).then(
    (opened) => {
      server = new Server(opened);
      port.postMessage({ ready: true, volumes: opened.browser.volumes } satisfies BrowseReadyMessage);
    },
    (err: unknown) => port.postMessage({ ready: false, error: toThreadError(err) } satisfies BrowseReadyMessage),
  );
}

if (parentPort) main(parentPort);
