import type { Extent } from '@vmkeep/disk';
import type { FileHandle } from '@vmkeep/filesystems';
import { PIECE, READ_AHEAD, readFileRange } from './file-stream';

/** A file of `size` bytes whose data extents hold a byte pattern (elsewhere: holes); counts reads in flight. */
class PatternFile implements FileHandle {
  inFlight = 0;
  maxInFlight = 0;
  reads = 0;
  constructor(
    readonly size: number,
    private readonly data: Extent[],
    private readonly failAt = -1,
  ) {}
  byte(pos: number): number {
    return this.data.some((e) => pos >= e.offset && pos < e.offset + e.length) ? (pos * 7 + 3) & 0xff : 0;
  }
  async extents(): Promise<Extent[]> {
    return this.data;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((r) => setTimeout(r, 1));
    this.inFlight--;
    if (offset <= this.failAt && this.failAt < offset + length) throw new Error(`read failed at ${offset}`);
    return Buffer.from(Array.from({ length }, (_, i) => this.byte(offset + i)));
  }
}

async function collect(gen: AsyncGenerator<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of gen) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

describe('readFileRange', () => {
  const size = 6 * PIECE + 1234;
  const extents = [{ offset: 100, length: 2 * PIECE }, { offset: 3 * PIECE + 5, length: 2 * PIECE + 17 }];

  it('yields data and holes in order with a few reads in flight; holes are never read', async () => {
    const file = new PatternFile(size, extents);
    const out = await collect(readFileRange(file, 50, size - 10));
    expect(out.length).toBe(size - 60);
    for (const pos of [50, 99, 100, PIECE, 2 * PIECE + 99, 2 * PIECE + 100, 3 * PIECE + 5, 5 * PIECE + 21, 5 * PIECE + 22, size - 11]) {
      expect({ pos, byte: out[pos - 50] }).toEqual({ pos, byte: file.byte(pos) });
    }
    expect(file.maxInFlight).toBeGreaterThan(1);
    expect(file.maxInFlight).toBeLessThanOrEqual(READ_AHEAD);
    expect(file.reads).toBe(2 + 3); // each extent in PIECE-sized reads (2 PIECE, then 2 PIECE + 17)
  });

  it('throws a failed read when its turn comes, after the pieces before it', async () => {
    const file = new PatternFile(size, extents, 4 * PIECE);
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const p of readFileRange(file)) got.push(p.length);
      })(),
    ).rejects.toThrow(/read failed at/);
    expect(got.reduce((a, b) => a + b, 0)).toBe(3 * PIECE + 5); // everything before the failing piece
  });
});
