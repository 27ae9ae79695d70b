import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BufferDisk, type Disk, type Extent } from '@vmkeep/disk';
import type { OutputFile } from './output';
import { copySparse, writeRaw } from './raw';

const CS = 256 * 1024;

/** A chunked source like a restore point: data in some chunks, fresh buffers per read, optional release(). */
function chunkedSource(chunks: string, withRelease: boolean) {
  const data = Buffer.alloc(chunks.length * CS - 1000); // a short last chunk
  const extents: Extent[] = [];
  [...chunks].forEach((c, i) => {
    if (c !== 'd') return;
    const end = Math.min(data.length, (i + 1) * CS);
    for (let at = i * CS; at < end; at++) data[at] = (at * 7 + i) % 251 || 1;
    data.fill(0, i * CS + 64 * 1024, i * CS + 128 * 1024); // an all-zero unit inside a data chunk
    extents.push({ offset: i * CS, length: end - i * CS });
  });
  const inner = new BufferDisk(data);
  const reads: Extent[] = [];
  const released: Buffer[] = [];
  const source: Disk & { chunkSize: number; release?: (b: Buffer) => void } = {
    size: data.length,
    chunkSize: CS,
    extents: async () => extents,
    close: async () => undefined,
    read: async (offset, length) => {
      reads.push({ offset, length });
      return Buffer.from(await inner.read(offset, length));
    },
  };
  if (withRelease) {
    source.release = (b) => {
      released.push(b);
      b.fill(0xaa); // whoever gets it back reuses it at once: must never reach the file
    };
  }
  return { data, source, reads, released };
}

describe('writeRaw', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(path.join(tmpdir(), 'vmkeep-raw-spec-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a chunked source one whole chunk at a time, only its extents, and gives each buffer back once written', async () => {
    const { data, source, reads, released } = chunkedSource('dzddzzdd', true);
    const out = path.join(dir, 'a.raw');
    const result = await writeRaw(source, out);
    expect(readFileSync(out).equals(data)).toBe(true);
    expect(reads.map((r) => r.offset / CS)).toEqual([0, 2, 3, 6, 7]);
    expect(reads.every((r) => r.length === CS || r.offset + r.length === data.length)).toBe(true);
    expect(released).toHaveLength(reads.length);
    // Zero chunks and zero 64 KiB units were never written: holes.
    expect(result.bytesWritten).toBe(data.length - 3 * CS - 5 * 64 * 1024);
    expect(statSync(out).blocks * 512).toBeLessThan(data.length - 2 * CS);
  });

  it('with several writes in flight, gives a buffer back only once its write has completed', async () => {
    const { data, source, released } = chunkedSource('dddddddd', true);
    const started: { position: number; data: Buffer; finish(err?: Error): void }[] = [];
    const file = {
      target: 'controlled.raw',
      truncate: async () => undefined,
      writeAt: (chunk: Buffer, position: number) =>
        new Promise<void>((resolve, reject) => started.push({ position, data: Buffer.from(chunk), finish: (err) => (err ? reject(err) : resolve()) })),
    } as unknown as OutputFile;
    const tick = () => new Promise((r) => setTimeout(r, 5));
    const copy = copySparse(source, file, {}, 4);
    let done = false;
    void copy.then(() => (done = true));
    await tick();
    // Each chunk is two pieces (around its zero 64 KiB unit): chunks 0 and 1 are being written at once.
    expect(started.map((w) => w.position / CS)).toEqual([0, 0.5, 1, 1.5]);
    expect(released).toHaveLength(0);
    started[2].finish(); // a later write completing first gives nothing back
    await tick();
    expect(released).toHaveLength(0);
    started[0].finish(); // chunk 0's second piece is still being written
    await tick();
    expect(released).toHaveLength(0);
    started[1].finish(); // now chunk 0 is written entirely
    await tick();
    expect(released).toHaveLength(1);
    while (!done) {
      for (const w of started) w.finish();
      await tick();
    }
    expect(released).toHaveLength(8);
    // Every piece written is what the source holds there (a buffer reused too early would have read 0xaa).
    for (const w of started) expect(w.data.equals(data.subarray(w.position, w.position + w.data.length))).toBe(true);
  });

  it('after a failed write, gives buffers back only once the writes in flight have settled', async () => {
    const { source, released } = chunkedSource('dddddd', true);
    const started: { finish(err?: Error): void }[] = [];
    const file = {
      target: 'controlled.raw',
      truncate: async () => undefined,
      writeAt: () => new Promise<void>((resolve, reject) => started.push({ finish: (err) => (err ? reject(err) : resolve()) })),
    } as unknown as OutputFile;
    const tick = () => new Promise((r) => setTimeout(r, 5));
    let failure: unknown;
    const copy = copySparse(source, file, {}, 4).catch((err: unknown) => (failure = err));
    await tick();
    expect(started).toHaveLength(4);
    started[0].finish(new Error('ENOSPC'));
    started[1].finish();
    await tick();
    // The failure is known, but writes 2 and 3 still read their buffers: nothing of theirs goes back yet.
    const before = released.length;
    started[2].finish();
    started[3].finish();
    await copy;
    expect((failure as Error).message).toBe('ENOSPC');
    expect(before).toBe(0);
    expect(released.length).toBeGreaterThanOrEqual(2); // every buffer read (chunks 0, 1 and the one read ahead)
  });

  it('gives nothing back to a source without release(), and still gives back what it read when the copy fails', async () => {
    const plain = chunkedSource('dd', false);
    const out = path.join(dir, 'b.raw');
    await writeRaw(plain.source, out);
    expect(readFileSync(out).equals(plain.data)).toBe(true);

    const failing = chunkedSource('dddd', true);
    const read = failing.source.read;
    failing.source.read = async (offset, length) => {
      if (offset >= 2 * CS) throw new Error('bad chunk');
      return read(offset, length);
    };
    await expect(writeRaw(failing.source, path.join(dir, 'c.raw'))).rejects.toThrow('bad chunk');
    expect(failing.released.length).toBeGreaterThan(0);
  });
});
