import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { OutputFile, PositionedWrites } from './output';

/** An OutputFile stand-in whose writes complete when the test says so. */
function controlledFile() {
  const started: { position: number; finish(err?: Error): void }[] = [];
  const file = {
    target: 'controlled.raw',
    writeAt: (_data: Buffer, position: number) =>
      new Promise<void>((resolve, reject) => started.push({ position, finish: (err) => (err ? reject(err) : resolve()) })),
  } as unknown as OutputFile;
  return { file, started };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('PositionedWrites', () => {
  it('keeps up to `depth` writes in flight, completing in any order, and says how far everything is written', async () => {
    const { file, started } = controlledFile();
    const writes = new PositionedWrites(file, 2);
    await writes.write(Buffer.alloc(1), 0);
    await writes.write(Buffer.alloc(1), 10);
    expect(started.map((s) => s.position)).toEqual([0, 10]);
    expect(writes.writtenBefore).toBe(0);
    // A third write waits for a slot.
    let third = false;
    const pending = writes.write(Buffer.alloc(1), 20).then(() => (third = true));
    await tick();
    expect(third).toBe(false);
    started[1].finish(); // the later one first: nothing before 0 is known written yet
    await tick();
    expect(writes.writtenBefore).toBe(0);
    expect(third).toBe(false);
    started[0].finish();
    await pending;
    expect(started.map((s) => s.position)).toEqual([0, 10, 20]);
    expect(writes.writtenBefore).toBe(20);
    started[2].finish();
    await writes.drain();
    expect(writes.writtenBefore).toBe(Infinity);
  });

  it('throws a failed write at the next write or at drain, and settle waits for the rest whatever happened', async () => {
    const { file, started } = controlledFile();
    const writes = new PositionedWrites(file, 4);
    await writes.write(Buffer.alloc(1), 0);
    await writes.write(Buffer.alloc(1), 1);
    started[0].finish(new Error('disk full'));
    await tick();
    await expect(writes.write(Buffer.alloc(1), 2)).rejects.toThrow('disk full');
    let settled = false;
    const settling = writes.settle().then(() => (settled = true));
    await tick();
    expect(settled).toBe(false); // the write at 1 is still running
    started[1].finish();
    await settling;

    const again = controlledFile();
    const w2 = new PositionedWrites(again.file, 4);
    await w2.write(Buffer.alloc(1), 0);
    again.started[0].finish(new Error('EIO'));
    await expect(w2.drain()).rejects.toThrow('EIO');
    expect(() => new PositionedWrites(again.file, 0)).toThrow(RangeError);
  });

  it('writes real files in place, in any order', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmkeep-output-spec-'));
    try {
      const out = path.join(dir, 'x.raw');
      const file = await OutputFile.create(out, out);
      const writes = new PositionedWrites(file, 3);
      for (const i of [3, 0, 2, 1]) await writes.write(Buffer.alloc(4096, i + 1), i * 4096);
      await writes.drain();
      await file.finish();
      const data = readFileSync(out);
      expect(data.length).toBe(4 * 4096);
      for (let i = 0; i < 4; i++) expect(data.subarray(i * 4096, (i + 1) * 4096).every((b) => b === i + 1)).toBe(true);
      expect(file.bytesWritten).toBe(4 * 4096);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
