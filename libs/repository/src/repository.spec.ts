import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { closeSharedChunkWorkers } from './chunk-workers';
import { CHUNKS_DIR, CONFIG_FILE, FORMAT_VERSION, MANIFEST_FILE, POINTS_DIR } from './constants';
import {
  CorruptChunkError,
  IndexFormatError,
  InvalidDiskKeyError,
  InvalidOptionError,
  MissingChunkError,
  PointDiskNotFoundError,
  PointNotFoundError,
  PointStateError,
  RepositoryFormatError,
  RepositoryNotEmptyError,
  RepositoryNotFoundError,
  UnsupportedFormatError,
  WriteAbortedError,
} from './errors';
import { Repository } from './repository';
import { BufferDisk, CountingDisk, patterned, readAll, tempDir } from './testing/test-disks';
import type { WriteProgress } from './types';

const CS = 256 * 1024;

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(p)));
    else out.push(p);
  }
  return out;
}

const chunkFiles = (repo: Repository) => listFiles(path.join(repo.dir, CHUNKS_DIR));

describe('Repository', () => {
  let tmp: ReturnType<typeof tempDir>;
  let repo: Repository;

  beforeEach(async () => {
    tmp = tempDir('repo');
    repo = await Repository.init(path.join(tmp.dir, 'repo'), { chunkSize: CS });
  });
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  async function backup(disks: Record<string, BufferDisk | CountingDisk>, meta: Record<string, unknown> = {}) {
    const writer = repo.beginPoint();
    const stats = [];
    for (const [key, disk] of Object.entries(disks)) stats.push(await writer.writeDisk(key, disk));
    const manifest = await writer.commit(meta);
    return { manifest, stats };
  }

  describe('init / open', () => {
    it('writes a config with the format version and reopens with the same parameters', async () => {
      const config = JSON.parse(await fs.readFile(path.join(repo.dir, CONFIG_FILE), 'utf8'));
      expect(config).toMatchObject({ format: FORMAT_VERSION, chunkSize: CS, chunkId: 'sha256', encryption: null });
      expect(config.compression).toEqual({ algorithm: 'zstd', level: 3 });
      const again = await Repository.open(repo.dir);
      expect(again.chunkSize).toBe(CS);
      expect(again.config.id).toBe(repo.config.id);
    });

    it('refuses to init a non-empty folder', async () => {
      const dir = path.join(tmp.dir, 'busy');
      await fs.mkdir(dir);
      await fs.writeFile(path.join(dir, 'something'), 'x');
      await expect(Repository.init(dir)).rejects.toBeInstanceOf(RepositoryNotEmptyError);
      await expect(Repository.init(repo.dir)).rejects.toBeInstanceOf(RepositoryNotEmptyError);
    });

    it('refuses bad options', async () => {
      await expect(Repository.init(path.join(tmp.dir, 'a'), { chunkSize: 1000 })).rejects.toBeInstanceOf(InvalidOptionError);
      await expect(Repository.init(path.join(tmp.dir, 'b'), { chunkSize: 16 << 20 })).rejects.toBeInstanceOf(InvalidOptionError);
      await expect(Repository.init(path.join(tmp.dir, 'c'), { compressionLevel: 40 })).rejects.toBeInstanceOf(InvalidOptionError);
    });

    it('refuses a folder without config', async () => {
      await expect(Repository.open(path.join(tmp.dir, 'nothing'))).rejects.toBeInstanceOf(RepositoryNotFoundError);
    });

    it('refuses a newer format and an unknown encryption with clear errors', async () => {
      const file = path.join(repo.dir, CONFIG_FILE);
      const config = JSON.parse(await fs.readFile(file, 'utf8'));
      await fs.writeFile(file, JSON.stringify({ ...config, format: FORMAT_VERSION + 1 }));
      await expect(Repository.open(repo.dir)).rejects.toThrow(/newer than the supported 1/);
      await expect(Repository.open(repo.dir)).rejects.toBeInstanceOf(UnsupportedFormatError);
      await fs.writeFile(file, JSON.stringify({ ...config, encryption: { kdf: 'argon2id' } }));
      await expect(Repository.open(repo.dir)).rejects.toThrow(/unsupported encryption/);
      await expect(Repository.open(repo.dir)).rejects.toBeInstanceOf(UnsupportedFormatError);
      await fs.writeFile(file, '{ not json');
      await expect(Repository.open(repo.dir)).rejects.toBeInstanceOf(RepositoryFormatError);
    });

    it('openOrInit creates once, then opens', async () => {
      const dir = path.join(tmp.dir, 'auto');
      const first = await Repository.openOrInit(dir, { chunkSize: 512 * 1024 });
      const second = await Repository.openOrInit(dir);
      expect(second.config.id).toBe(first.config.id);
      expect(second.chunkSize).toBe(512 * 1024);
    });

    it('openOrInit from several callers at once: one initialises, the others wait for its config', async () => {
      const init = { encrypt: true, kdf: 'insecure-fast-for-tests' as const };
      for (let round = 0; round < 10; round++) {
        const dir = path.join(tmp.dir, `race-${round}`);
        const repos = await Promise.all(Array.from({ length: 4 }, () => Repository.openOrInit(dir, init, { passphrase: 'race-pass' })));
        // One config for all, and it is the one on disk (no caller holds keys that a later config replaced).
        const onDisk = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8')) as { id: string };
        expect(repos.map((r) => r.config.id)).toEqual(new Array(4).fill(onDisk.id));
        expect(repos.every((r) => r.encrypted)).toBe(true);
        await Promise.all(repos.map((r) => r.close()));
      }
    });
  });

  describe('round trip', () => {
    it('restores byte-exact data whose size is not a multiple of the chunk size, with unaligned reads', async () => {
      const data = patterned('rtzzrtr', CS, 12345);
      const { manifest, stats } = await backup({ 'scsi0-0': new BufferDisk(data) }, { vm: 'web01' });
      expect(manifest.meta).toEqual({ vm: 'web01' });
      expect(manifest.disks).toEqual([{ key: 'scsi0-0', size: data.length, chunkSize: CS, chunks: 8, meta: {} }]);
      expect(stats[0]).toMatchObject({ size: data.length, chunks: 8, zeroChunks: 2, newChunks: 6, bytesRead: data.length });

      const disk = await repo.openDisk(manifest.id, 'scsi0-0');
      expect(disk.size).toBe(data.length);
      expect((await readAll(disk)).equals(data)).toBe(true);
      const probes: [number, number][] = [
        [CS - 7, 19], // across a chunk boundary
        [CS * 2 - 1, CS * 2 + 2], // random → zero → zero → text
        [data.length - 12345 - 3, 12348], // into the short last chunk
        [data.length - 1, 1],
        [5, 0],
        [1, data.length - 2],
      ];
      for (const [offset, length] of probes) {
        expect((await disk.read(offset, length)).equals(data.subarray(offset, offset + length))).toBe(true);
      }
      await expect(disk.read(data.length - 1, 2)).rejects.toThrow(/past the end/);
      expect(await disk.extents()).toEqual([
        { offset: 0, length: 2 * CS },
        { offset: 4 * CS, length: data.length - 4 * CS },
      ]);
      await disk.close();
    });

    it('handles an empty disk and a disk smaller than one chunk', async () => {
      const small = patterned('', 0, 1000);
      const { manifest } = await backup({ empty: new BufferDisk(Buffer.alloc(0)), small: new BufferDisk(small) });
      expect((await readAll(await repo.openDisk(manifest.id, 'empty'))).length).toBe(0);
      expect((await readAll(await repo.openDisk(manifest.id, 'small'))).equals(small)).toBe(true);
    });

    it('reports progress and ends with a final callback at 100 %', async () => {
      const data = patterned('rrrr', CS);
      const seen: WriteProgress[] = [];
      const writer = repo.beginPoint();
      await writer.writeDisk('d', new BufferDisk(data), { onProgress: (p) => seen.push(p) });
      expect(seen.length).toBeGreaterThanOrEqual(1);
      expect(seen[seen.length - 1]).toEqual({ bytesDone: data.length, bytesTotal: data.length });
      await writer.abort();
    });
  });

  it('openDisk with readAhead off loads only the chunks a sequential reader asks for', async () => {
    const data = patterned('rrrrrrrrrrrr', CS, 0);
    const { manifest } = await backup({ d: new BufferDisk(data) });
    const loaded = async (opts?: { readAhead?: boolean }) => {
      const spy = jest.spyOn(repo, 'loadChunk');
      try {
        const disk = await repo.openDisk(manifest.id, 'd', opts);
        expect((await disk.read(0, 100)).equals(data.subarray(0, 100))).toBe(true);
        expect((await disk.read(CS, 100)).equals(data.subarray(CS, CS + 100))).toBe(true);
        await new Promise((r) => setTimeout(r, 50)); // loads started ahead have been asked for by now
        return spy.mock.calls.length;
      } finally {
        spy.mockRestore();
      }
    };
    expect(await loaded()).toBeGreaterThan(2);
    expect(await loaded({ readAhead: false })).toBe(2);
  });

  describe('deduplication and zero chunks', () => {
    it('never stores all-zero chunks', async () => {
      const data = Buffer.alloc(CS * 5 + 100);
      data.fill(7, CS * 2, CS * 2 + 10);
      const { stats, manifest } = await backup({ d: new BufferDisk(data) });
      expect(stats[0]).toMatchObject({ chunks: 6, zeroChunks: 5, newChunks: 1 });
      expect(await chunkFiles(repo)).toHaveLength(1);
      expect((await readAll(await repo.openDisk(manifest.id, 'd'))).equals(data)).toBe(true);
    });

    it('stores nothing new when the same disk is written again', async () => {
      const data = patterned('rtrtrzr', CS, 999);
      const first = await backup({ d: new BufferDisk(data) });
      const filesAfterFirst = await chunkFiles(repo);
      const second = await backup({ d: new BufferDisk(data) });
      expect(first.stats[0].newChunks).toBe(7);
      expect(first.stats[0].newBytes).toBeGreaterThan(0);
      expect(second.stats[0]).toMatchObject({ newChunks: 0, newBytes: 0, dedupChunks: 7, zeroChunks: 1 });
      expect(await chunkFiles(repo)).toEqual(filesAfterFirst);
      expect((await readAll(await repo.openDisk(second.manifest.id, 'd'))).equals(data)).toBe(true);
    });

    it('stores a chunk repeated inside one disk once', async () => {
      const block = patterned('r', CS);
      const data = Buffer.concat([block, block, block]);
      const { stats } = await backup({ d: new BufferDisk(data) });
      expect(stats[0]).toMatchObject({ newChunks: 1, dedupChunks: 2 });
      expect(await chunkFiles(repo)).toHaveLength(1);
    });

    it('compresses compressible chunks', async () => {
      const data = patterned('tttt', CS);
      const { stats } = await backup({ d: new BufferDisk(data) });
      expect(stats[0].newBytes).toBeLessThan(data.length / 4);
    });
  });

  describe('extents', () => {
    it('does not read ranges outside the source extents', async () => {
      const data = patterned('rrrrrrrr', CS);
      // Only chunk 1 entirely and part of chunk 5 are allocated; the rest must read as zeros.
      const extents = [
        { offset: CS, length: CS },
        { offset: 5 * CS + 1000, length: 5000 },
      ];
      const expected = Buffer.alloc(data.length);
      for (const e of extents) data.copy(expected, e.offset, e.offset, e.offset + e.length);
      const source = new CountingDisk(expected, extents);
      const { stats, manifest } = await backup({ d: source });
      expect(source.reads).toEqual(extents);
      expect(stats[0]).toMatchObject({ bytesRead: CS + 5000, zeroChunks: 6, newChunks: 2 });
      expect((await readAll(await repo.openDisk(manifest.id, 'd'))).equals(expected)).toBe(true);
    });
  });

  describe('damage is reported, never read as zeros', () => {
    async function onePoint() {
      const data = patterned('rtr', CS);
      const { manifest } = await backup({ d: new BufferDisk(data) });
      const files = (await chunkFiles(repo)).sort();
      return { data, manifest, files };
    }

    it('a flipped byte in a blob → CorruptChunkError naming chunk, point, disk and offset', async () => {
      const { manifest } = await onePoint();
      const disk = await repo.openDisk(manifest.id, 'd');
      const file = repo.localStore.pathOf((disk as unknown as { index: { idAt(i: number): Buffer } }).index.idAt(1));
      const blob = await fs.readFile(file);
      blob[blob.length - 10] ^= 0x40;
      await fs.writeFile(file, blob);
      const err = await disk.read(CS + 5, 10).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CorruptChunkError);
      const corrupt = err as CorruptChunkError;
      expect(corrupt.chunkId).toBe(path.basename(file));
      expect(corrupt.context).toEqual({ pointId: manifest.id, diskKey: 'd', offset: CS });
      expect(corrupt.message).toMatch(/CRC32 mismatch/);
      // The neighbouring chunks still read.
      await expect(disk.read(0, 10)).resolves.toHaveLength(10);
    });

    it('a blob swapped for another chunk fails the id check', async () => {
      const { manifest, files } = await onePoint();
      await fs.copyFile(files[0], files[1]);
      const disk = await repo.openDisk(manifest.id, 'd');
      await expect(readAll(disk)).rejects.toThrow(/content does not match the chunk id/);
    });

    it('a deleted blob → MissingChunkError', async () => {
      const { manifest, files } = await onePoint();
      await fs.rm(files[0]);
      const disk = await repo.openDisk(manifest.id, 'd');
      const err = await readAll(disk).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MissingChunkError);
      expect((err as MissingChunkError).chunkId).toBe(path.basename(files[0]));
      expect((err as MissingChunkError).context?.pointId).toBe(manifest.id);
    });

    it('a truncated or missing index → IndexFormatError', async () => {
      const { manifest } = await onePoint();
      const indexFile = path.join(repo.dir, POINTS_DIR, manifest.id, 'd.fidx');
      const full = await fs.readFile(indexFile);
      await fs.writeFile(indexFile, full.subarray(0, full.length - 1));
      await expect(repo.openDisk(manifest.id, 'd')).rejects.toThrow(/truncated/);
      await fs.writeFile(indexFile, full.subarray(0, 20));
      await expect(repo.openDisk(manifest.id, 'd')).rejects.toBeInstanceOf(IndexFormatError);
      await fs.rm(indexFile);
      await expect(repo.openDisk(manifest.id, 'd')).rejects.toThrow(/index file is missing/);
    });

    it('a hostile manifest → typed format error', async () => {
      const { manifest } = await onePoint();
      const file = path.join(repo.dir, POINTS_DIR, manifest.id, MANIFEST_FILE);
      const bad = { ...manifest, disks: [{ ...manifest.disks[0], key: '../../config.json' }] };
      await fs.writeFile(file, JSON.stringify(bad));
      await expect(repo.readManifest(manifest.id)).rejects.toBeInstanceOf(RepositoryFormatError);
      await fs.writeFile(file, JSON.stringify({ ...manifest, disks: [{ ...manifest.disks[0], size: 2 ** 60 }] }));
      await expect(repo.listPoints()).rejects.toThrow(/invalid size/);
    });
  });

  describe('restore points', () => {
    it('lists committed points oldest first; an uncommitted point is invisible', async () => {
      const a = await backup({ d: new BufferDisk(patterned('r', CS)) }, { n: 1 });
      const pending = repo.beginPoint();
      await pending.writeDisk('d', new BufferDisk(patterned('r', CS)));
      const b = await backup({ d: new BufferDisk(patterned('r', CS)) }, { n: 2 });
      expect(a.manifest.id < pending.id && pending.id < b.manifest.id).toBe(true);
      expect((await repo.listPoints()).map((m) => m.id)).toEqual([a.manifest.id, b.manifest.id]);
      // The pending point's index is on disk, yet it does not exist for readers.
      await expect(fs.access(path.join(repo.dir, POINTS_DIR, pending.id, 'd.fidx'))).resolves.toBeUndefined();
      await expect(repo.readManifest(pending.id)).rejects.toBeInstanceOf(PointNotFoundError);
      await expect(repo.openDisk(pending.id, 'd')).rejects.toBeInstanceOf(PointNotFoundError);
      expect(await repo.readManifest(b.manifest.id)).toEqual(b.manifest);
    });

    it('a crash mid-backup (source fails) leaves no point; abort() removes the partial files', async () => {
      const writer = repo.beginPoint();
      await writer.writeDisk('a', new BufferDisk(patterned('rr', CS)));
      const failing = new CountingDisk(patterned('rrrr', CS));
      failing.read = async (offset) => {
        if (offset >= 2 * CS) throw new Error('datastore went away');
        return Buffer.alloc(CS, 1);
      };
      await expect(writer.writeDisk('b', failing)).rejects.toThrow('datastore went away');
      const pointDir = path.join(repo.dir, POINTS_DIR, writer.id);
      expect(await fs.readdir(pointDir)).toEqual(['a.fidx']); // b's temp index is gone, no manifest
      expect(await repo.listPoints()).toEqual([]);
      await writer.abort();
      await expect(fs.access(pointDir)).rejects.toThrow();
      await expect(writer.commit({})).rejects.toBeInstanceOf(PointStateError);
      expect((await chunkFiles(repo)).length).toBeGreaterThan(0); // chunks stay for GC
    });

    it('reopened repository lists the same points', async () => {
      const { manifest } = await backup({ d: new BufferDisk(patterned('rt', CS)) });
      const reopened = await Repository.open(repo.dir);
      expect(await reopened.listPoints()).toEqual([manifest]);
    });

    it('enforces the writer life cycle', async () => {
      const writer = repo.beginPoint();
      await writer.writeDisk('d', new BufferDisk(patterned('r', CS)));
      await expect(writer.writeDisk('d', new BufferDisk(patterned('r', CS)))).rejects.toBeInstanceOf(PointStateError);
      const manifest = await writer.commit({});
      await expect(writer.commit({})).rejects.toBeInstanceOf(PointStateError);
      await expect(writer.abort()).rejects.toBeInstanceOf(PointStateError);
      await expect(repo.openDisk(manifest.id, 'other')).rejects.toBeInstanceOf(PointDiskNotFoundError);
    });
  });

  describe('names', () => {
    it.each(['../x', 'a/b', '', '.hidden', 'a\\b', 'x'.repeat(200), 'dísk'])('refuses disk key %j', async (key) => {
      const writer = repo.beginPoint();
      await expect(writer.writeDisk(key, new BufferDisk(Buffer.alloc(10)))).rejects.toBeInstanceOf(InvalidDiskKeyError);
      await expect(repo.openDisk('20250101T000000000Z-00000000', key)).rejects.toBeInstanceOf(InvalidDiskKeyError);
    });

    it('treats malformed point ids as unknown points', async () => {
      await expect(repo.readManifest('../../etc')).rejects.toBeInstanceOf(PointNotFoundError);
      await expect(repo.openDisk('..', 'd')).rejects.toBeInstanceOf(PointNotFoundError);
    });
  });

  describe('abort signal', () => {
    it('stops writeDisk promptly with an AbortError and leaves no index behind', async () => {
      const source = new CountingDisk(patterned('r'.repeat(64), CS), undefined, 5);
      const controller = new AbortController();
      const writer = repo.beginPoint();
      setTimeout(() => controller.abort(), 40);
      const started = Date.now();
      const err = await writer.writeDisk('d', source, { signal: controller.signal }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WriteAbortedError);
      expect((err as Error).name).toBe('AbortError');
      expect(Date.now() - started).toBeLessThan(1000);
      expect(source.reads.length).toBeLessThan(64);
      expect(await fs.readdir(path.join(repo.dir, POINTS_DIR, writer.id))).toEqual([]);
      await writer.abort();
      expect(await repo.listPoints()).toEqual([]);
    });

    it('refuses to start with an already aborted signal', async () => {
      const source = new CountingDisk(patterned('r', CS));
      const writer = repo.beginPoint();
      await expect(writer.writeDisk('d', source, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(WriteAbortedError);
      expect(source.reads).toEqual([]);
    });
  });
});
