import * as path from 'node:path';
import { inlineChunkCodec } from './chunk-workers';
import { CorruptChunkError } from './errors';
import { PointDisk, defaultReadAhead } from './point-disk';
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

  async function open(readAhead: number | undefined, recycle?: (b: Buffer) => void, bad?: number) {
    const manifest = await repo.readManifest(pointId);
    const index = await repo.readIndex(pointId, manifest.disks[0]);
    const loaded: number[] = [];
    const disk = new PointDisk(
      index,
      (id) => {
        for (let i = 0; i < index.count; i++) if (!index.isZero(i) && index.idAt(i).equals(id)) loaded.push(i);
        if (bad !== undefined && index.idAt(bad).equals(id)) return Promise.reject(new CorruptChunkError(id.toString('hex'), 'test damage'));
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

  it('reads 12 MiB ahead by default: up to 12 chunks, fewer of large chunks, at least 2', async () => {
    expect([64 * 1024, CS, 1 << 20, 4 << 20, 8 << 20].map(defaultReadAhead)).toEqual([12, 12, 12, 3, 2]);
    const { disk, loaded } = await open(undefined);
    await disk.read(0, CS);
    await disk.read(CS, CS);
    // The second read continues the first: chunks 2..13 (12 ahead of chunk 1, the zero chunk 5 skipped) are loading.
    expect(loaded).toEqual([0, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 1]);
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
    // Sequential reads straddling chunks (served from the cache: whole-chunk reads take chunks over instead).
    for (let at = CS / 2; at + CS <= data.length; at += CS) expect((await disk.read(at, CS)).equals(data.subarray(at, at + CS))).toBe(true);
    // Many overlapping, concurrent, unaligned reads.
    const reads = Array.from({ length: 40 }, (_, k) => {
      const at = (k * 97_003) % (data.length - 3 * CS);
      return disk.read(at, 2 * CS + 11).then((got) => got.equals(data.subarray(at, at + 2 * CS + 11)));
    });
    expect(await Promise.all(reads)).toEqual(reads.map(() => true));
    expect(recycled).toBeGreaterThan(10);
    await disk.close();
  });

  it('hands whole-chunk reads the decoded chunk itself: the reader owns it, recycling never reaches it', async () => {
    const recycled: Buffer[] = [];
    const { disk, loaded } = await open(3, (b) => {
      recycled.push(b);
      b.fill(0xaa);
    });
    const got: Buffer[] = [];
    for (let at = 0; at < data.length; at += CS) got.push(await disk.read(at, CS));
    // Each chunk decoded once (loaded ahead, then taken over by the read), none cached, so none recycled.
    expect([...loaded].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(recycled).toHaveLength(0);
    // Unaligned and partial reads meanwhile go through the cache, which recycles (and here clobbers) its chunks.
    for (let k = 0; k < 12; k++) await disk.read(((k * 5) % 14) * CS + 3, CS);
    expect(recycled.length).toBeGreaterThan(0);
    got.forEach((chunk, i) => expect(chunk.equals(data.subarray(i * CS, (i + 1) * CS))).toBe(true));
    expect(got[5].equals(Buffer.alloc(CS))).toBe(true); // the zero chunk: zeros, never loaded
    // A whole-chunk read of a cached chunk is a copy: the cache keeps its own.
    await disk.read(8 * CS + 1, 10);
    const copy = await disk.read(8 * CS, CS);
    expect(copy.equals(data.subarray(8 * CS, 9 * CS))).toBe(true);
    // release() gives a buffer back to the recycler.
    disk.release(got[0]);
    expect(recycled[recycled.length - 1]).toBe(got[0]);
    await disk.close();
  });

  it('fails a whole-chunk read of a bad chunk loudly, loaded ahead or not', async () => {
    const ahead = await open(4, undefined, 3);
    for (let at = 0; at < 3 * CS; at += CS) await ahead.disk.read(at, CS);
    expect(ahead.loaded).toContain(3); // loaded ahead (and failed) before the reader asked
    await expect(ahead.disk.read(3 * CS, CS)).rejects.toMatchObject({ code: 'CHUNK_CORRUPT', context: { pointId, diskKey: 'd', offset: 3 * CS } });
    expect((await ahead.disk.read(4 * CS, CS)).equals(data.subarray(4 * CS, 5 * CS))).toBe(true);
    const cold = await open(0, undefined, 3);
    await expect(cold.disk.read(3 * CS, CS)).rejects.toBeInstanceOf(CorruptChunkError);
  });
});
