/**
 * Incremental writes: writeDisk with `parent` reuses the parent's ids for unchanged chunks and reads only the
 * changed areas of chunks that changed a little (the parent's chunk patched), whole chunks that changed a lot.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { closeSharedChunkWorkers } from './chunk-workers';
import { CHUNKS_DIR } from './constants';
import { PointDiskNotFoundError, RepositoryError } from './errors';
import { Repository } from './repository';
import { randomBytes } from 'node:crypto';
import { BufferDisk, CountingDisk, readAll, tempDir } from './testing/test-disks';

const CS = 256 * 1024;
const SIZE = 32 * CS + 1000; // a short last chunk

jest.setTimeout(60_000);

describe('incremental writeDisk (parent)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let repo: Repository;

  beforeEach(async () => {
    tmp = tempDir('repo-parent');
    repo = await Repository.init(path.join(tmp.dir, 'repo'), { chunkSize: CS });
  });
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  async function full(data: Buffer): Promise<string> {
    const writer = repo.beginPoint();
    await writer.writeDisk('disk-1', new BufferDisk(data));
    return (await writer.commit({})).id;
  }

  it('reads only the changed areas (whole chunks where most of one changed) and restores the new data byte-exact', async () => {
    const old = randomBytes(SIZE);
    old.fill(0, 4 * CS, 6 * CS); // zero chunks stay zero through the parent
    const parentId = await full(old);

    const next = Buffer.from(old);
    randomBytes(100).copy(next, 10 * CS + 5); // inside chunk 10
    randomBytes(CS).copy(next, 20 * CS - 50); // chunks 19 and 20
    randomBytes(500).copy(next, SIZE - 500); // the short last chunk
    const changed = [
      { offset: 10 * CS + 5, length: 100 },
      { offset: 20 * CS - 50, length: CS },
      { offset: SIZE - 500, length: 500 },
    ];
    const source = new CountingDisk(next);
    const writer = repo.beginPoint();
    const stats = await writer.writeDisk('disk-1', source, { parent: { pointId: parentId, diskKey: 'disk-1', changed } });
    const { id } = await writer.commit({});

    // Chunks 10 and 19 and the 1000-byte last one are patched (100, 50 and 500 bytes read); chunk 20 changed
    // all but 50 bytes and is read whole.
    expect(stats.bytesRead).toBe(100 + 50 + CS + 500);
    expect(stats.patchedChunks).toBe(3);
    expect(source.bytesRead).toBe(stats.bytesRead);
    expect(stats.parentChunks).toBe(33 - 4 - 2); // 33 chunks, 4 changed, 2 zero
    expect(stats.zeroChunks).toBe(2);
    expect((await readAll(await repo.openDisk(id, 'disk-1'))).equals(next)).toBe(true); // toEqual on MiB buffers takes tens of seconds
    expect((await readAll(await repo.openDisk(parentId, 'disk-1'))).equals(old)).toBe(true); // toEqual on MiB buffers takes tens of seconds
  });

  it('an over-reported change still gives the right data', async () => {
    const old = randomBytes(SIZE);
    const parentId = await full(old);
    const next = Buffer.from(old);
    next[7 * CS] ^= 0xff;
    const writer = repo.beginPoint();
    const stats = await writer.writeDisk('disk-1', new BufferDisk(next), {
      parent: { pointId: parentId, diskKey: 'disk-1', changed: [{ offset: 0, length: 16 * CS }] },
    });
    const { id } = await writer.commit({});
    expect(stats.bytesRead).toBe(16 * CS);
    expect(stats.parentChunks).toBe(17); // chunks 16..32
    expect(stats.dedupChunks).toBe(15 + 17); // 15 read again and already stored, plus the parent's
    expect((await readAll(await repo.openDisk(id, 'disk-1'))).equals(next)).toBe(true); // toEqual on MiB buffers takes tens of seconds
  });

  it('reads a changed chunk whole when its parent chunk is damaged, or when its changes are many small areas', async () => {
    const old = randomBytes(SIZE);
    const parentId = await full(old);
    const next = Buffer.from(old);
    const changed = [{ offset: 3 * CS + 10, length: 20 }];
    randomBytes(20).copy(next, 3 * CS + 10);
    for (let k = 0; k < 17; k++) {
      // 17 separate 8-byte changes in chunk 5: more areas than a patch reads one by one
      randomBytes(8).copy(next, 5 * CS + k * 1000);
      changed.push({ offset: 5 * CS + k * 1000, length: 8 });
    }
    // Damage the parent's copy of chunk 3 in the store.
    const index = await readAll(await repo.openDisk(parentId, 'disk-1')); // (reads fine before the damage)
    expect(index.equals(old)).toBe(true);
    const chunk3 = await repo.chunkIdOf(old.subarray(3 * CS, 4 * CS));
    const files = await fs.readdir(path.join(repo.dir, CHUNKS_DIR), { recursive: true });
    const name = files.find((f) => path.basename(f) === chunk3.toString('hex'));
    expect(name).toBeDefined();
    const file = path.join(repo.dir, CHUNKS_DIR, name!);
    const blob = await fs.readFile(file);
    blob[blob.length - 1] ^= 0xff;
    await fs.writeFile(file, blob);

    const source = new CountingDisk(next);
    const writer = repo.beginPoint();
    const stats = await writer.writeDisk('disk-1', source, { parent: { pointId: parentId, diskKey: 'disk-1', changed } });
    const { id } = await writer.commit({});
    expect(stats.bytesRead).toBe(2 * CS);
    expect(stats.patchedChunks ?? 0).toBe(0);
    // The damage is recorded as verify would record it, so verify reports it and a backup stores it again.
    expect((await repo.listBadChunks()).map((b) => b.id)).toEqual([chunk3.toString('hex')]);
    expect((await readAll(await repo.openDisk(id, 'disk-1'))).equals(next)).toBe(true);
  });

  it('refuses a parent of another size, a missing disk, and a parent whose chunks are gone', async () => {
    const parentId = await full(randomBytes(SIZE));
    const write = (data: Buffer, diskKey = 'disk-1') =>
      repo.beginPoint().writeDisk('disk-1', new BufferDisk(data), { parent: { pointId: parentId, diskKey, changed: [] } });

    await expect(write(randomBytes(SIZE + CS))).rejects.toMatchObject({ code: 'PARENT_MISMATCH' });
    await expect(write(randomBytes(SIZE), 'disk-9')).rejects.toBeInstanceOf(PointDiskNotFoundError);

    await fs.rm(path.join(repo.dir, CHUNKS_DIR), { recursive: true });
    await fs.mkdir(path.join(repo.dir, CHUNKS_DIR));
    const err = await write(randomBytes(SIZE)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RepositoryError);
    expect((err as RepositoryError).code).toBe('PARENT_UNREADABLE');
  });
});
