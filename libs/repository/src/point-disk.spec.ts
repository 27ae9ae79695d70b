import * as path from 'node:path';
import { inlineChunkCodec } from './chunk-workers';
import { PointDisk } from './point-disk';
import { Repository } from './repository';
import { BufferDisk, patterned, tempDir } from './testing/test-disks';

const CS = 256 * 1024;

describe('PointDisk read-ahead', () => {
  let tmp: ReturnType<typeof tempDir>;
  let repo: Repository;
  // 16 chunks; chunk 5 is zeros (a hole: never loaded).
  const data = patterned('rrrrrzrrrrrrrrrr', CS);
  let pointId: string;

  beforeAll(async () => {
    tmp = tempDir('point-disk');
    repo = await Repository.init(path.join(tmp.dir, 'repo'), { chunkSize: CS }, { codec: inlineChunkCodec });
    const writer = repo.beginPoint();
    await writer.writeDisk('d', new BufferDisk(data));
    pointId = (await writer.commit({})).id;
  });
  afterAll(() => tmp.cleanup());

  async function open(readAhead: number, recycle?: (b: Buffer) => void) {
    const manifest = await repo.readManifest(pointId);
    const index = await repo.readIndex(pointId, manifest.disks[0]);
    const loaded: number[] = [];
    const disk = new PointDisk(
      index,
      (id) => {
        for (let i = 0; i < index.count; i++) if (!index.isZero(i) && index.idAt(i).equals(id)) loaded.push(i);
        return repo.loadChunk(id);
      },
      pointId,
      'd',
      2,
      readAhead,
      recycle,
    );
    return { disk, loaded };
  }

  it('loads the next non-zero chunks of a sequential reader ahead, once each, and reads byte-exact', async () => {
    const { disk, loaded } = await open(4);
    expect((await disk.read(0, 2 * CS)).equals(data.subarray(0, 2 * CS))).toBe(true);
    expect(loaded).toEqual([0, 1]); // a first read may be random access: nothing ahead yet
    expect((await disk.read(2 * CS, 2 * CS)).equals(data.subarray(2 * CS, 4 * CS))).toBe(true);
    // Chunks 4..7 are asked for ahead of the reader, skipping the zero chunk 5.
    expect(loaded).toEqual([0, 1, 4, 6, 7, 2, 3]);
    for (let at = 4 * CS; at < data.length; at += CS) {
      expect((await disk.read(at, CS)).equals(data.subarray(at, at + CS))).toBe(true);
    }
    expect([...loaded].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    await disk.close();
  });

  it('loads nothing extra for random access or with read-ahead off', async () => {
    const random = await open(4);
    await random.disk.read(10 * CS, CS);
    await random.disk.read(3 * CS, CS);
    await random.disk.read(12 * CS + 7, 100);
    expect(random.loaded).toEqual([10, 3, 12]);
    const off = await open(0);
    for (let at = 0; at < 4 * CS; at += CS) await off.disk.read(at, CS);
    expect(off.loaded).toEqual([0, 1, 2, 3]);
  });

  it('recycles only chunks no read uses any more: clobbering them never reaches the output', async () => {
    let recycled = 0;
    // Whoever gets a buffer back may overwrite it at once (a worker decoding the next chunk into it).
    const { disk } = await open(3, (b) => {
      recycled++;
      b.fill(0xaa);
    });
    for (let at = 0; at < data.length; at += CS) expect((await disk.read(at, CS)).equals(data.subarray(at, at + CS))).toBe(true);
    // Many overlapping, concurrent, unaligned reads.
    const reads = Array.from({ length: 40 }, (_, k) => {
      const at = (k * 97_003) % (data.length - 3 * CS);
      return disk.read(at, 2 * CS + 11).then((got) => got.equals(data.subarray(at, at + 2 * CS + 11)));
    });
    expect(await Promise.all(reads)).toEqual(reads.map(() => true));
    expect(recycled).toBeGreaterThan(10);
    await disk.close();
  });
});
