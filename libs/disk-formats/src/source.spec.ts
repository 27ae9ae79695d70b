import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { openRaw } from './raw';

describe('FileSource buffer reuse (raw disks)', () => {
  let dir: string;
  let file: string;
  const data = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => (i * 13 + 7) % 256));
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmkeep-source-spec-'));
    file = path.join(dir, 'disk.raw');
    writeFileSync(file, data);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('fills a buffer given back for the next read of its length, with that read\'s bytes', async () => {
    const disk = await openRaw(file);
    const first = await disk.read(0, 64 * 1024);
    expect(first.equals(data.subarray(0, 64 * 1024))).toBe(true);
    disk.release?.(first);
    const other = await disk.read(0, 1000); // another length: not the spare
    expect(other).not.toBe(first);
    const second = await disk.read(64 * 1024, 64 * 1024);
    expect(second).toBe(first);
    expect(second.equals(data.subarray(64 * 1024, 128 * 1024))).toBe(true);
    const third = await disk.read(128 * 1024, 64 * 1024); // the spare is in use: a new buffer
    expect(third).not.toBe(second);
    expect(third.equals(data.subarray(128 * 1024, 192 * 1024))).toBe(true);
    await disk.close();
  });

  it('keeps no view of a larger buffer and at most 8 spares', async () => {
    const disk = await openRaw(file);
    const whole = await disk.read(0, 8192);
    disk.release?.(whole.subarray(0, 4096)); // a view: not kept
    expect(await disk.read(0, 4096)).not.toBe(whole);
    const given = await Promise.all(Array.from({ length: 10 }, (_, i) => disk.read(i * 8192, 8192)));
    for (const b of given) disk.release?.(b);
    const again = await Promise.all(Array.from({ length: 10 }, (_, i) => disk.read(i * 8192, 8192)));
    expect(again.filter((b) => given.includes(b))).toHaveLength(8);
    again.forEach((b, i) => expect(b.equals(data.subarray(i * 8192, (i + 1) * 8192))).toBe(true));
    await disk.close();
  });
});
