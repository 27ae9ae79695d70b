/**
 * Fixed index: one file per disk per restore point listing the id of every chunk of the disk in order. Written
 * sequentially by FixedIndexWriter (constant memory), read whole by readFixedIndex.
 */
import { createCipheriv, createDecipheriv, randomBytes, type CipherGCM } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { fsyncDir, tempPathFor } from './atomic';
import {
  AAD_INDEX,
  CHUNK_ID_BYTES,
  CIPHER,
  GCM_NONCE_BYTES,
  GCM_TAG_BYTES,
  INDEX_AAD_BYTES,
  INDEX_FLAG_ENCRYPTED,
  INDEX_HEADER_SIZE,
  INDEX_MAGIC,
  INDEX_OFF_CHUNK_SIZE,
  INDEX_OFF_COUNT,
  INDEX_OFF_DISK_SIZE,
  INDEX_OFF_FLAGS,
  INDEX_OFF_IDS_CRC32,
  INDEX_OFF_MAGIC,
  INDEX_OFF_NONCE,
  INDEX_OFF_TAG,
  INDEX_OFF_VERSION,
  INDEX_VERSION,
  MAX_CHUNK_SIZE,
  MAX_DISK_SIZE,
  MIN_CHUNK_SIZE,
  ZERO_CHUNK_ID,
} from './constants';
import { IndexFormatError, RepositoryError } from './errors';

export function chunkCount(diskSize: number, chunkSize: number): number {
  return Math.ceil(diskSize / chunkSize);
}

/** The header without CRC, nonce and tag (those are filled in by finish()). */
function encodeHeader(diskSize: number, chunkSize: number, count: number, flags: number): Buffer {
  const h = Buffer.alloc(INDEX_HEADER_SIZE);
  INDEX_MAGIC.copy(h, INDEX_OFF_MAGIC);
  h.writeUInt32LE(INDEX_VERSION, INDEX_OFF_VERSION);
  h.writeBigUInt64LE(BigInt(diskSize), INDEX_OFF_DISK_SIZE);
  h.writeUInt32LE(chunkSize, INDEX_OFF_CHUNK_SIZE);
  h.writeUInt32LE(flags, INDEX_OFF_FLAGS);
  h.writeBigUInt64LE(BigInt(count), INDEX_OFF_COUNT);
  return h;
}

/** AAD of an encrypted index: the header fields before the CRC, and the index's name (point/disk). */
const indexAad = (header: Buffer, name: string) =>
  Buffer.concat([header.subarray(0, INDEX_AAD_BYTES), Buffer.from(AAD_INDEX + name, 'utf8')]);

/** Encrypts an index's id table with the repository key; `name` (`<pointId>/<diskKey>`) binds it to its place. */
export interface IndexSealing {
  key: Uint8Array;
  name: string;
}

/** Ids buffered before each write to the temp file. */
const WRITE_BATCH_IDS = 2048;

/** Writes an index to a temp file and renames it into place on finish(); abort() leaves nothing behind. */
export class FixedIndexWriter {
  private readonly batch = Buffer.alloc(WRITE_BATCH_IDS * CHUNK_ID_BYTES);
  private batched = 0;
  private appended = 0;
  private crc = 0;
  private position = INDEX_HEADER_SIZE;
  private done = false;
  private readonly header: Buffer;
  private readonly cipher?: CipherGCM;

  private constructor(
    readonly file: string,
    private readonly temp: string,
    private readonly handle: fs.FileHandle,
    readonly diskSize: number,
    readonly chunkSize: number,
    readonly count: number,
    sealing?: IndexSealing,
    private readonly upload?: (data: Buffer) => Promise<void>,
  ) {
    this.header = encodeHeader(diskSize, chunkSize, count, sealing ? INDEX_FLAG_ENCRYPTED : 0);
    if (sealing) {
      const nonce = randomBytes(GCM_NONCE_BYTES);
      nonce.copy(this.header, INDEX_OFF_NONCE);
      this.cipher = createCipheriv(CIPHER, sealing.key, nonce, { authTagLength: GCM_TAG_BYTES });
      this.cipher.setAAD(indexAad(this.header, sealing.name));
    }
  }

  static async create(file: string, diskSize: number, chunkSize: number, sealing?: IndexSealing): Promise<FixedIndexWriter> {
    const temp = tempPathFor(file);
    const handle = await fs.open(temp, 'wx');
    return new FixedIndexWriter(file, temp, handle, diskSize, chunkSize, chunkCount(diskSize, chunkSize), sealing);
  }

  /**
   * An index for object storage: built in a local temp file (os.tmpdir()), handed whole to `upload` on finish()
   * (one atomic put); `name` is only for messages.
   */
  static async createForUpload(
    name: string,
    diskSize: number,
    chunkSize: number,
    sealing: IndexSealing | undefined,
    upload: (data: Buffer) => Promise<void>,
  ): Promise<FixedIndexWriter> {
    const temp = tempPathFor(path.join(os.tmpdir(), 'vmkeep-index'));
    const handle = await fs.open(temp, 'wx');
    const count = chunkCount(diskSize, chunkSize);
    return new FixedIndexWriter(name, temp, handle, diskSize, chunkSize, count, sealing, upload);
  }

  /** Appends the id of the next chunk (ZERO_CHUNK_ID for an all-zero chunk). */
  async append(id: Buffer): Promise<void> {
    if (this.done) throw new RepositoryError('index writer is closed', 'INDEX_CLOSED');
    if (id.length !== CHUNK_ID_BYTES) throw new RepositoryError(`bad chunk id length ${id.length}`, 'INVALID_CHUNK_ID');
    if (this.appended >= this.count) {
      throw new RepositoryError(`index of ${this.count} chunks is already full`, 'INDEX_OVERFLOW');
    }
    id.copy(this.batch, this.batched * CHUNK_ID_BYTES);
    this.batched++;
    this.appended++;
    if (this.batched === WRITE_BATCH_IDS) await this.flush();
  }

  async finish(): Promise<void> {
    if (this.appended !== this.count) {
      throw new RepositoryError(`index has ${this.appended} of ${this.count} chunk ids`, 'INDEX_INCOMPLETE');
    }
    await this.flush();
    this.done = true;
    if (this.cipher) {
      this.cipher.final();
      this.cipher.getAuthTag().copy(this.header, INDEX_OFF_TAG);
    }
    this.header.writeUInt32LE(this.crc, INDEX_OFF_IDS_CRC32);
    try {
      await this.handle.write(this.header, 0, INDEX_HEADER_SIZE, 0);
      if (this.upload) {
        await this.handle.close();
        await this.upload(await fs.readFile(this.temp));
        await fs.rm(this.temp, { force: true });
        return;
      }
      await this.handle.sync();
      await this.handle.close();
      await fs.rename(this.temp, this.file);
    } catch (err) {
      await this.handle.close().catch(() => undefined);
      await fs.rm(this.temp, { force: true });
      throw err;
    }
    await fsyncDir(path.dirname(this.file));
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.temp, { force: true });
  }

  private async flush(): Promise<void> {
    if (!this.batched) return;
    const plain = this.batch.subarray(0, this.batched * CHUNK_ID_BYTES);
    const bytes = this.cipher ? this.cipher.update(plain) : plain;
    this.crc = crc32(bytes, this.crc);
    await this.handle.write(bytes, 0, bytes.length, this.position);
    this.position += bytes.length;
    this.batched = 0;
  }
}

/** A fixed index held in memory (32 bytes per chunk). */
export class FixedIndex {
  constructor(
    readonly diskSize: number,
    readonly chunkSize: number,
    readonly count: number,
    private readonly ids: Buffer,
  ) {}

  /** Id of chunk `i` (a view, do not modify). */
  idAt(i: number): Buffer {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new RangeError(`chunk ${i} out of range`);
    return this.ids.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES);
  }

  isZero(i: number): boolean {
    return this.idAt(i).equals(ZERO_CHUNK_ID);
  }

  /** Byte length of chunk `i` (the last one may be short). */
  lengthOf(i: number): number {
    return Math.min(this.chunkSize, this.diskSize - i * this.chunkSize);
  }
}

/**
 * Parses and checks an index file's content; `name` identifies it in errors (and, encrypted, is authenticated).
 * `key`: the AES key of an encrypted repository, where every index must be encrypted (and none elsewhere).
 */
export function parseFixedIndex(buf: Buffer, name: string, key?: Uint8Array): FixedIndex {
  const bad = (reason: string) => new IndexFormatError(name, reason);
  if (buf.length < INDEX_HEADER_SIZE) throw bad(`file of ${buf.length} bytes is shorter than the header (truncated)`);
  if (!buf.subarray(INDEX_OFF_MAGIC, INDEX_OFF_MAGIC + INDEX_MAGIC.length).equals(INDEX_MAGIC)) throw bad('bad magic');
  const version = buf.readUInt32LE(INDEX_OFF_VERSION);
  if (version !== INDEX_VERSION) throw bad(`unsupported index version ${version}`);
  const diskSize = buf.readBigUInt64LE(INDEX_OFF_DISK_SIZE);
  if (diskSize > BigInt(MAX_DISK_SIZE)) throw bad(`absurd disk size ${diskSize}`);
  const chunkSize = buf.readUInt32LE(INDEX_OFF_CHUNK_SIZE);
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) throw bad(`chunk size ${chunkSize} out of range`);
  const count = buf.readBigUInt64LE(INDEX_OFF_COUNT);
  const expected = chunkCount(Number(diskSize), chunkSize);
  if (count !== BigInt(expected)) throw bad(`chunk count ${count} does not match disk size ${diskSize}`);
  const idsLength = expected * CHUNK_ID_BYTES;
  if (buf.length !== INDEX_HEADER_SIZE + idsLength) {
    throw bad(`expected ${INDEX_HEADER_SIZE + idsLength} bytes, file has ${buf.length} (truncated or padded)`);
  }
  const flags = buf.readUInt32LE(INDEX_OFF_FLAGS);
  if (flags !== (key ? INDEX_FLAG_ENCRYPTED : 0)) {
    throw bad(key ? 'not encrypted, in an encrypted repository' : `unsupported flags ${flags} (encrypted index without a key?)`);
  }
  const stored = buf.subarray(INDEX_HEADER_SIZE);
  if (crc32(stored) !== buf.readUInt32LE(INDEX_OFF_IDS_CRC32)) throw bad('CRC32 of the chunk ids does not match');
  return new FixedIndex(Number(diskSize), chunkSize, expected, key ? decryptIds(buf, stored, name, key, bad) : stored);
}

function decryptIds(buf: Buffer, stored: Buffer, name: string, key: Uint8Array, bad: (r: string) => Error): Buffer {
  const nonce = buf.subarray(INDEX_OFF_NONCE, INDEX_OFF_NONCE + GCM_NONCE_BYTES);
  const decipher = createDecipheriv(CIPHER, key, nonce, { authTagLength: GCM_TAG_BYTES });
  decipher.setAAD(indexAad(buf, name));
  decipher.setAuthTag(buf.subarray(INDEX_OFF_TAG, INDEX_OFF_TAG + GCM_TAG_BYTES));
  const ids = decipher.update(stored);
  try {
    decipher.final();
  } catch {
    throw bad('authentication failed (damaged, moved, or not written with this repository key)');
  }
  return ids;
}

/** Reads and checks an index file; a missing file is an IndexFormatError too (the point is damaged). */
export async function readFixedIndex(file: string, name: string, key?: Uint8Array): Promise<FixedIndex> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new IndexFormatError(name, 'index file is missing');
    throw err;
  }
  return parseFixedIndex(buf, name, key);
}
