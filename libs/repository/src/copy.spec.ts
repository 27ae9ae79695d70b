import * as path from 'node:path';
import { closeSharedChunkWorkers } from './chunk-workers';
import { copyPoints } from './copy';
import { Repository } from './repository';
import { filesUnder } from './testing/repo-files';
import { BufferDisk, patterned, readAll, tempDir } from './testing/test-disks';

const CS = 256 * 1024;
const KDF = { kdf: 'insecure-fast-for-tests' as const };

describe('copyPoints', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir('copy');
  });
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  const plain = (name: string) => Repository.init(path.join(tmp.dir, name), { chunkSize: CS });
  const encrypted = (name: string, passphrase: string) =>
    Repository.init(path.join(tmp.dir, name), { chunkSize: CS, encrypt: true, ...KDF }, { passphrase });

  async function backup(repo: Repository, disks: Record<string, Buffer>, vm: string) {
    const w = repo.beginPoint();
    for (const [key, data] of Object.entries(disks)) await w.writeDisk(key, new BufferDisk(data), { meta: { label: key } });
    return w.commit({ vm: { name: vm } });
  }

  async function expectSamePoints(source: Repository, target: Repository, data: Map<string, Record<string, Buffer>>) {
    expect((await target.listPoints()).map((m) => [m.id, m.createdAt, m.meta, m.disks])).toEqual(
      (await source.listPoints()).map((m) => [m.id, m.createdAt, m.meta, m.disks]),
    );
    for (const [id, disks] of data) {
      for (const [key, bytes] of Object.entries(disks)) {
        const disk = await target.openDisk(id, key);
        expect((await readAll(disk)).equals(bytes)).toBe(true);
      }
    }
    const report = await target.verify();
    expect(report.badChunks).toEqual([]);
    expect(report.brokenPoints).toEqual([]);
  }

  it('copies encrypted → plain byte-exactly; a second copy transfers nothing', async () => {
    const source = await encrypted('src', 'source pass');
    const target = await plain('dst');
    const a = { 'scsi0-0': patterned('rtzr', CS, 1000), 'scsi0-1': patterned('ttz', CS) };
    const shared = a['scsi0-0'].subarray(0, 2 * CS);
    const b = { 'scsi0-0': Buffer.concat([shared, patterned('r', CS)]) };
    const data = new Map<string, Record<string, Buffer>>([
      [(await backup(source, a, 'web01')).id, a],
      [(await backup(source, b, 'web01')).id, b],
    ]);
    const progress: number[] = [];
    const first = await copyPoints(source, target, { onProgress: (p) => progress.push(p.chunksDone) });
    expect(first.copied).toEqual([...data.keys()]);
    // Distinct non-zero chunks: a has r,t,r + tail,t,t (5), b adds one random chunk (its first two are shared).
    expect(first.chunksTransferred).toBe(7);
    expect(progress[progress.length - 1]).toBe(9);
    await expectSamePoints(source, target, data);
    const chunkFiles = (await filesUnder(path.join(target.dir, 'chunks'))).length;
    expect(chunkFiles).toBe(7);

    const second = await copyPoints(source, target);
    expect(second).toMatchObject({ copied: [], skipped: [...data.keys()], chunksTransferred: 0, bytesTransferred: 0 });
  });

  it('re-encrypts between differently keyed repositories, deduplicating against what the target has', async () => {
    const source = await encrypted('src', 'first');
    const target = await encrypted('dst', 'second');
    const d = { 'scsi0-0': patterned('rrt', CS, 77) };
    const p1 = await backup(source, d, 'db');
    // The target already holds the same content from its own backup: nothing new travels.
    await backup(target, d, 'db-local');
    const report = await copyPoints(source, target, { points: [p1.id] });
    expect(report).toMatchObject({ copied: [p1.id], chunksTransferred: 0, chunksPresent: 4 });
    expect((await readAll(await target.openDisk(p1.id, 'scsi0-0'))).equals(d['scsi0-0'])).toBe(true);
    const reopened = await Repository.open(target.dir, { passphrase: 'second' });
    expect((await reopened.verify()).brokenPoints).toEqual([]);
    await expect(Repository.open(target.dir, { passphrase: 'first' })).rejects.toMatchObject({ code: 'WRONG_PASSPHRASE' });
  });

  it('plain → encrypted: stored names in the target are keyed ids, not the source SHA-256 names', async () => {
    const source = await plain('src');
    const target = await encrypted('dst', 'pass');
    const d = { 'scsi0-0': patterned('rt', CS) };
    const p = await backup(source, d, 'x');
    await copyPoints(source, target);
    const names = (files: string[]) => new Set(files.map((f) => path.basename(f)));
    const srcNames = names(await filesUnder(path.join(source.dir, 'chunks')));
    const dstNames = names(await filesUnder(path.join(target.dir, 'chunks')));
    expect(dstNames.size).toBe(2);
    for (const n of dstNames) expect(srcNames.has(n)).toBe(false);
    expect((await readAll(await target.openDisk(p.id, 'scsi0-0'))).equals(d['scsi0-0'])).toBe(true);
  });

  it('an interrupted copy leaves no visible point and resumes without sending chunks twice', async () => {
    const source = await plain('src');
    const target = await encrypted('dst', 'pass');
    const d = { 'scsi0-0': patterned('rrrrrr', CS) };
    const p = await backup(source, d, 'big');
    const controller = new AbortController();
    const insert = target.store.insert.bind(target.store);
    let inserted = 0;
    target.store.insert = async (...args) => {
      const r = await insert(...args);
      if (++inserted === 3) controller.abort();
      return r;
    };
    await expect(copyPoints(source, target, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(await target.listPoints()).toEqual([]);
    expect(await target.hasPoint(p.id)).toBe(false);
    const resumed = await copyPoints(source, target);
    expect(resumed.copied).toEqual([p.id]);
    expect(resumed.chunksPresent).toBe(3);
    expect(resumed.chunksTransferred).toBe(3);
    expect((await readAll(await target.openDisk(p.id, 'scsi0-0'))).equals(d['scsi0-0'])).toBe(true);
  });

  it('refuses different chunk sizes and unknown points with typed errors', async () => {
    const source = await plain('src');
    const other = await Repository.init(path.join(tmp.dir, 'big'), { chunkSize: 2 * CS });
    await expect(copyPoints(source, other)).rejects.toMatchObject({ code: 'CHUNK_SIZE_MISMATCH' });
    const target = await plain('dst');
    await expect(copyPoints(source, target, { points: ['20200101T000000000Z-deadbeef'] })).rejects.toMatchObject({
      code: 'POINT_NOT_FOUND',
    });
  });
});
