import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { closeSharedChunkWorkers } from './chunk-workers';
import { BAD_CHUNKS_DIR, POINTS_DIR } from './constants';
import { CorruptChunkError, MissingChunkError, PointNotFoundError } from './errors';
import { Repository } from './repository';
import { BufferDisk, patterned, readAll, tempDir } from './testing/test-disks';

const CS = 256 * 1024;

describe.each([
  ['plain', false],
  ['encrypted', true],
])('verify (%s repository)', (_name, encrypt) => {
  let tmp: ReturnType<typeof tempDir>;
  let repo: Repository;

  beforeEach(async () => {
    tmp = tempDir('verify');
    repo = await Repository.init(
      path.join(tmp.dir, 'repo'),
      { chunkSize: CS, encrypt, kdf: 'insecure-fast-for-tests' },
      { passphrase: 'pw' },
    );
  });
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  async function backup(disks: Record<string, Buffer>) {
    const writer = repo.beginPoint();
    for (const [key, data] of Object.entries(disks)) await writer.writeDisk(key, new BufferDisk(data));
    return writer.commit({});
  }

  const idAt = async (pointId: string, diskKey: string, i: number) => {
    const m = await repo.readManifest(pointId);
    const index = await repo.readIndex(pointId, m.disks.find((d) => d.key === diskKey)!);
    return Buffer.from(index.idAt(i));
  };

  it('passes a healthy repository and counts each distinct chunk once', async () => {
    const shared = patterned('rr', CS);
    await backup({ a: Buffer.concat([shared, Buffer.alloc(CS)]) });
    await backup({ a: shared, b: patterned('r', CS) });
    const report = await repo.verify();
    expect(report).toMatchObject({ ok: true, chunksChecked: 3, badChunks: [], badIndexes: [], brokenPoints: [] });
    expect(report.bytesChecked).toBeGreaterThan(3 * CS);
  });

  it('names every corrupt and missing chunk with the points, disks and offsets it breaks; the next backup repairs them', async () => {
    const dataA = patterned('rrrr', CS);
    const dataB = patterned('rr', CS);
    const p1 = await backup({ sys: dataA });
    const p2 = await backup({ sys: dataA, data: dataB });
    const flipped = await idAt(p1.id, 'sys', 1);
    const truncated = await idAt(p1.id, 'sys', 2);
    const missing = await idAt(p2.id, 'data', 0);

    const blob = await fs.readFile(repo.localStore.pathOf(flipped));
    blob[blob.length - 1] ^= 0x40;
    await fs.writeFile(repo.localStore.pathOf(flipped), blob);
    await fs.truncate(repo.localStore.pathOf(truncated), 100);
    await fs.rm(repo.localStore.pathOf(missing));

    const report = await repo.verify();
    expect(report.ok).toBe(false);
    expect(report.brokenPoints).toEqual([p1.id, p2.id]);
    const byId = new Map(report.badChunks.map((b) => [b.id, b]));
    expect(byId.get(flipped.toString('hex'))).toMatchObject({
      problem: 'corrupt',
      refs: [
        { pointId: p1.id, diskKey: 'sys', offset: CS },
        { pointId: p2.id, diskKey: 'sys', offset: CS },
      ],
    });
    expect(byId.get(truncated.toString('hex'))?.reason).toMatch(/payload length|shorter/);
    expect(byId.get(missing.toString('hex'))).toMatchObject({ problem: 'missing', refs: [{ pointId: p2.id, diskKey: 'data', offset: 0 }] });

    // Only the selected point is checked.
    const onlyP1 = await repo.verify({ points: [p1.id] });
    expect(onlyP1.points).toEqual([p1.id]);
    expect(onlyP1.badChunks.map((b) => b.id).sort()).toEqual([flipped, truncated].map((b) => b.toString('hex')).sort());
    await expect(repo.verify({ points: ['20250101T000000000Z-00000000'] })).rejects.toBeInstanceOf(PointNotFoundError);

    // Restores fail loudly.
    const disk = await repo.openDisk(p1.id, 'sys');
    await expect(disk.read(CS, 10)).rejects.toBeInstanceOf(CorruptChunkError);
    await expect(readAll(await repo.openDisk(p2.id, 'data'))).rejects.toBeInstanceOf(MissingChunkError);

    // The bad list is persisted in the repository...
    const bad = (await repo.listBadChunks()).map((b) => b.id).sort();
    expect(bad).toEqual([flipped, truncated, missing].map((b) => b.toString('hex')).sort());
    expect((await fs.readdir(path.join(repo.dir, BAD_CHUNKS_DIR))).sort()).toEqual(bad);

    // ...so the next backup of the same data stores those chunks again instead of deduplicating against them.
    const reopened = await Repository.open(repo.dir, { passphrase: 'pw' });
    const writer = reopened.beginPoint();
    const stats = await writer.writeDisk('sys', new BufferDisk(dataA));
    const statsB = await writer.writeDisk('data', new BufferDisk(dataB));
    await writer.commit({});
    expect(stats.newChunks).toBe(2); // the flipped and the truncated chunk
    expect(statsB.newChunks).toBe(1); // the missing one
    expect(await reopened.listBadChunks()).toEqual([]);
    expect(await reopened.verify()).toMatchObject({ ok: true, badChunks: [] });
    expect((await readAll(await reopened.openDisk(p1.id, 'sys'))).equals(dataA)).toBe(true);
  });

  it('reports a missing or damaged index', async () => {
    const p = await backup({ a: patterned('r', CS), b: patterned('r', CS) });
    await fs.rm(path.join(repo.dir, POINTS_DIR, p.id, 'a.fidx'));
    const idx = path.join(repo.dir, POINTS_DIR, p.id, 'b.fidx');
    const buf = await fs.readFile(idx);
    buf[buf.length - 1] ^= 1;
    await fs.writeFile(idx, buf);
    const report = await repo.verify();
    expect(report.ok).toBe(false);
    expect(report.brokenPoints).toEqual([p.id]);
    expect(report.badIndexes.map((b) => [b.diskKey, /missing|CRC32/.test(b.reason)])).toEqual([
      ['a', true],
      ['b', true],
    ]);
  });
});
