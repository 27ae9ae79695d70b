/**
 * A source that takes buffers back (Disk.release) gets every whole-chunk buffer back once its chunk is stored,
 * and scribbling over a buffer as soon as it comes back never reaches the repository: with the worker pool and
 * with the inline codec (where an incompressible chunk's blob is a view of the buffer read), unencrypted and
 * encrypted.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import type { Disk, Extent } from '@vmkeep/disk';
import { closeSharedChunkWorkers, inlineChunkCodec } from './chunk-workers';
import { Repository } from './repository';
import { readAll, tempDir } from './testing/test-disks';

const CS = 256 * 1024;

/** Reads copies of `data`; a buffer given back is recorded and overwritten at once, as a reusing source would. */
function releasingDisk(data: Buffer): Disk & { handedOut: Set<Buffer>; released: Buffer[] } {
  const handedOut = new Set<Buffer>();
  const released: Buffer[] = [];
  return {
    size: data.length,
    handedOut,
    released,
    extents: async (): Promise<Extent[]> => [{ offset: 0, length: data.length }],
    close: async () => undefined,
    read: async (offset, length) => {
      const b = Buffer.from(data.subarray(offset, offset + length));
      handedOut.add(b);
      return b;
    },
    release: (b: Buffer) => {
      expect(handedOut.has(b)).toBe(true);
      released.push(b);
      b.fill(0xaa);
    },
  };
}

describe('writeDisk gives read buffers back to the source', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir('repo-release')));
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  const cases = [
    { name: 'worker pool, unencrypted', inline: false, passphrase: undefined },
    { name: 'inline codec, unencrypted', inline: true, passphrase: undefined },
    { name: 'inline codec, encrypted', inline: true, passphrase: 'release-spec-passphrase' },
  ];
  it.each(cases)('$name', async ({ inline, passphrase }) => {
    const data = randomBytes(12 * CS); // incompressible: stored as is
    data.fill(0, 3 * CS, 4 * CS); // a zero chunk is read and given back too
    data.fill(7, 6 * CS, 7 * CS); // compressible
    randomBytes(CS).copy(data, 9 * CS); // and a duplicate of chunk 9 at 10
    data.copy(data, 10 * CS, 9 * CS, 10 * CS);
    const encryption = passphrase ? ({ encrypt: true, kdf: 'insecure-fast-for-tests' } as const) : {};
    const runtime = { ...(inline ? { codec: inlineChunkCodec } : {}), ...(passphrase ? { passphrase } : {}) };
    const repo = await Repository.init(path.join(tmp.dir, 'repo'), { chunkSize: CS, ...encryption }, runtime);
    const source = releasingDisk(data);
    const writer = repo.beginPoint();
    await writer.writeDisk('disk-1', source);
    const { id } = await writer.commit({});
    expect(source.released).toHaveLength(12);
    expect(new Set(source.released).size).toBe(12);
    expect((await readAll(await repo.openDisk(id, 'disk-1'))).equals(data)).toBe(true);
    await repo.close();
  });
});
