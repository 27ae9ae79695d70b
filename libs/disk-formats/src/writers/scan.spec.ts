import { BufferDisk, Disk, Extent } from '@vmkeep/disk';
import { alignedRuns, DataPiece, scanData } from './scan';

async function collect(disk: Disk, unit: number, batch?: number): Promise<DataPiece[]> {
  const out: DataPiece[] = [];
  for await (const p of scanData(disk, { unit, batch })) out.push({ offset: p.offset, data: Buffer.from(p.data) });
  return out;
}

describe('alignedRuns', () => {
  it('widens extents to units, clips to the disk and merges, whatever their order', () => {
    const extents: Extent[] = [
      { offset: 5000, length: 10 },
      { offset: 100, length: 10 },
      { offset: 1000, length: 100 },
      { offset: 9990, length: 100 },
      { offset: -50, length: 0 },
    ];
    expect(alignedRuns(extents, 10000, 1024)).toEqual([
      { offset: 0, length: 2048 },
      { offset: 4096, length: 1024 },
      { offset: 9216, length: 784 },
    ]);
  });
});

describe('scanData', () => {
  it('yields only non-zero unit runs, split at batch ends, with a short last unit', async () => {
    const data = Buffer.alloc(10 * 1024 + 300);
    data[10] = 1; // unit 0
    data[1024 + 5] = 2; // unit 1
    data[5 * 1024] = 3; // unit 5 (second batch)
    data[10 * 1024 + 299] = 4; // short last unit
    const pieces = await collect(new BufferDisk(data), 1024, 4096);
    expect(pieces.map((p) => [p.offset, p.data.length])).toEqual([
      [0, 2048],
      [5 * 1024, 1024],
      [10 * 1024, 300],
    ]);
    for (const p of pieces) expect(p.data.equals(data.subarray(p.offset, p.offset + p.data.length))).toBe(true);
  });

  it('never reads outside the extents and reports progress up to the size', async () => {
    const reads: Extent[] = [];
    const inner = new BufferDisk(Buffer.alloc(1 << 20, 7));
    const disk: Disk = {
      size: inner.size,
      read: (o, l) => {
        reads.push({ offset: o, length: l });
        return inner.read(o, l);
      },
      extents: async () => [{ offset: 300000, length: 10 }],
      close: async () => undefined,
    };
    const progress: number[] = [];
    const pieces: DataPiece[] = [];
    for await (const p of scanData(disk, { unit: 65536, onProgress: (d) => progress.push(d) })) pieces.push(p);
    expect(reads).toEqual([{ offset: 262144, length: 65536 }]);
    expect(pieces.map((p) => p.offset)).toEqual([262144]);
    expect(progress[progress.length - 1]).toBe(1 << 20);
  });

  it('stops on abort', async () => {
    const ctl = new AbortController();
    ctl.abort();
    await expect(collect(new BufferDisk(Buffer.alloc(4096, 1)), 512)).resolves.toHaveLength(1);
    const gen = scanData(new BufferDisk(Buffer.alloc(4096, 1)), { unit: 512, signal: ctl.signal });
    await expect(gen.next()).rejects.toMatchObject({ name: 'AbortError' });
  });
});
