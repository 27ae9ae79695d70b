import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { INDEX_HEADER_SIZE, INDEX_OFF_CHUNK_SIZE, INDEX_OFF_COUNT, INDEX_OFF_DISK_SIZE, ZERO_CHUNK_ID } from './constants';
import { IndexFormatError } from './errors';
import { FixedIndexWriter, parseFixedIndex, readFixedIndex } from './fixed-index';
import { tempDir } from './testing/test-disks';

const CS = 256 * 1024;

describe('fixed index', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir('fidx')));
  afterEach(() => tmp.cleanup());

  async function writeIndex(count: number, size = count * CS - 17) {
    const file = path.join(tmp.dir, 'd.fidx');
    const ids = Array.from({ length: count }, (_, i) => (i % 3 === 0 ? ZERO_CHUNK_ID : randomBytes(32)));
    const writer = await FixedIndexWriter.create(file, size, CS);
    for (const id of ids) await writer.append(id);
    await writer.finish();
    return { file, ids, size };
  }

  it('writes and reads back ids in order (more than one write batch)', async () => {
    const { file, ids, size } = await writeIndex(5000);
    const index = await readFixedIndex(file, 'x/d');
    expect(index).toMatchObject({ diskSize: size, chunkSize: CS, count: 5000 });
    ids.forEach((id, i) => expect(index.idAt(i).equals(id)).toBe(true));
    expect(index.isZero(0)).toBe(true);
    expect(index.isZero(1)).toBe(false);
    expect(index.lengthOf(4999)).toBe(CS - 17);
    expect((await fs.stat(file)).size).toBe(INDEX_HEADER_SIZE + 5000 * 32);
    expect(await fs.readdir(tmp.dir)).toEqual(['d.fidx']);
  });

  it('refuses to finish an incomplete index and leaves nothing after abort', async () => {
    const file = path.join(tmp.dir, 'd.fidx');
    const writer = await FixedIndexWriter.create(file, 3 * CS, CS);
    await writer.append(randomBytes(32));
    await expect(writer.finish()).rejects.toThrow(/1 of 3/);
    await writer.abort();
    expect(await fs.readdir(tmp.dir)).toEqual([]);
  });

  it('refuses ids of the wrong length and too many ids', async () => {
    const writer = await FixedIndexWriter.create(path.join(tmp.dir, 'd.fidx'), CS, CS);
    await expect(writer.append(randomBytes(31))).rejects.toThrow(/length 31/);
    await writer.append(randomBytes(32));
    await expect(writer.append(randomBytes(32))).rejects.toThrow(/already full/);
    await writer.abort();
  });

  it.each([
    ['truncated', (b: Buffer) => b.subarray(0, b.length - 32), /truncated/],
    ['header only', (b: Buffer) => b.subarray(0, 10), /shorter than the header/],
    ['bad magic', (b: Buffer) => Buffer.concat([Buffer.from('XXXX'), b.subarray(4)]), /bad magic/],
    ['absurd disk size', (b: Buffer) => (b.writeBigUInt64LE(2n ** 62n, INDEX_OFF_DISK_SIZE), b), /absurd disk size/],
    ['bad chunk size', (b: Buffer) => (b.writeUInt32LE(12345, INDEX_OFF_CHUNK_SIZE), b), /chunk size 12345/],
    ['wrong count', (b: Buffer) => (b.writeBigUInt64LE(2n ** 40n, INDEX_OFF_COUNT), b), /chunk count/],
    ['flipped id byte', (b: Buffer) => ((b[INDEX_HEADER_SIZE + 40] ^= 1), b), /CRC32/],
  ])('rejects %s with IndexFormatError', async (_name, damage, message) => {
    const { file } = await writeIndex(10);
    const buf = damage(Buffer.from(await fs.readFile(file)));
    expect(() => parseFixedIndex(buf, 'p/d')).toThrow(IndexFormatError);
    expect(() => parseFixedIndex(buf, 'p/d')).toThrow(message);
  });
});
