/**
 * ext4 metadata checksums (metadata_csum): CRC-32C as the kernel's ext4_chksum computes it (no final inversion,
 * chained through a seed), over the superblock, group descriptors, inodes, extent blocks, directory leaf blocks
 * and htree index blocks. Each function answers whether the stored checksum matches; the reader turns a mismatch
 * into a FileSystemError naming the structure.
 */

/** CRC-32C (Castagnoli, reflected 0x82f63b78) lookup tables for slicing by 8: 256 MiB of inode tables are summed per 1,000,000 inodes. */
const TABLES = (() => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k * 256 + n] = (t[(k - 1) * 256 + n] >>> 8) ^ t[t[(k - 1) * 256 + n] & 0xff];
  }
  return t;
})();

/** ext4_chksum(seed, data): the raw CRC-32C register (no inversions), continued from `seed`. */
export function extCrc(seed: number, data: Uint8Array): number {
  return extCrcRange(seed, data, 0, data.length);
}

/** extCrc over data[start, end), without a view. */
function extCrcRange(seed: number, data: Uint8Array, start: number, end: number): number {
  const t = TABLES;
  let c = seed >>> 0;
  let i = start;
  const end8 = end - ((end - start) & 7);
  for (; i < end8; i += 8) {
    const lo = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    c =
      t[1792 + (lo & 0xff)] ^ t[1536 + ((lo >>> 8) & 0xff)] ^ t[1280 + ((lo >>> 16) & 0xff)] ^ t[1024 + (lo >>> 24)] ^
      t[768 + data[i + 4]] ^ t[512 + data[i + 5]] ^ t[256 + data[i + 6]] ^ t[data[i + 7]];
  }
  for (; i < end; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/**
 * ZERO_RUNS[k]: the linear map "feed 8·2^k zero bytes" on the CRC register, as four 256-entry tables (one per byte
 * of the register): the zero tail of an inode (≈ 40 % of a 256-byte inode without in-inode attributes) costs four
 * lookups per power of two instead of a lookup per byte.
 */
const ZERO_RUNS: Uint32Array[] = (() => {
  const t = TABLES;
  const first = new Uint32Array(1024);
  for (let j = 0; j < 4; j++) {
    for (let b = 0; b < 256; b++) {
      let c = (b << (8 * j)) >>> 0;
      for (let k = 0; k < 8; k++) c = t[c & 0xff] ^ (c >>> 8);
      first[j * 256 + b] = c >>> 0;
    }
  }
  const runs = [first];
  for (let k = 1; k < 7; k++) {
    const half = runs[k - 1];
    const op = new Uint32Array(1024);
    for (let i = 0; i < 1024; i++) op[i] = applyRun(half, half[i]);
    runs.push(op);
  }
  return runs;
})();

function applyRun(op: Uint32Array, c: number): number {
  return (op[c & 0xff] ^ op[256 + ((c >>> 8) & 0xff)] ^ op[512 + ((c >>> 16) & 0xff)] ^ op[768 + (c >>> 24)]) >>> 0;
}

/** The register after `n` zero bytes. */
function extCrcZeros(crc: number, n: number): number {
  const t = TABLES;
  let c = crc >>> 0;
  for (let k = ZERO_RUNS.length - 1; k >= 0; k--) {
    const run = 8 << k;
    while (n >= run) {
      c = applyRun(ZERO_RUNS[k], c);
      n -= run;
    }
  }
  for (; n > 0; n--) c = t[c & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** extCrcRange where the trailing zero bytes (in steps of 8) are fed through the zero-run maps. */
function extCrcRangeZeroTail(seed: number, data: Uint8Array, start: number, end: number): number {
  let z = end;
  while (z - 8 >= start && (data[z - 1] | data[z - 2] | data[z - 3] | data[z - 4] | data[z - 5] | data[z - 6] | data[z - 7] | data[z - 8]) === 0) z -= 8;
  const crc = extCrcRange(seed, data, start, z);
  return z === end ? crc : extCrcZeros(crc, end - z);
}

/** One reused 4-byte scratch: checksums run synchronously, so no two callers share it at once. */
const LE32 = Buffer.alloc(4);
const le32 = (n: number) => {
  LE32.writeUInt32LE(n >>> 0);
  return LE32;
};
const ZERO2 = Buffer.alloc(2);
const ZERO4 = Buffer.alloc(4);

/** Offset of s_checksum in the 1024-byte superblock. */
export const SB_CHECKSUM_OFFSET = 0x3fc;

export function superblockCsumOk(sb: Buffer): boolean {
  return extCrc(0xffffffff, sb.subarray(0, SB_CHECKSUM_OFFSET)) === sb.readUInt32LE(SB_CHECKSUM_OFFSET);
}

/** The seed of every other checksum: s_checksum_seed when csum_seed is set, else the CRC of the UUID. */
export function checksumSeed(sb: Buffer, hasCsumSeedField: boolean): number {
  return hasCsumSeedField ? sb.readUInt32LE(0x270) : extCrc(0xffffffff, sb.subarray(0x68, 0x78));
}

/** bg_checksum (low 16 bits) of group `group`'s descriptor `desc` (descSize bytes). */
export function groupDescCsumOk(seed: number, group: number, desc: Buffer): boolean {
  let crc = extCrc(seed, le32(group));
  crc = extCrc(crc, desc.subarray(0, 0x1e));
  crc = extCrc(crc, ZERO2);
  if (desc.length > 0x20) crc = extCrc(crc, desc.subarray(0x20));
  return (crc & 0xffff) === desc.readUInt16LE(0x1e);
}

/** The per-inode seed: CRC of the inode number and i_generation, from the file-system seed. */
export function inodeSeed(seed: number, ino: number, raw: Buffer): number {
  return inodeSeedAt(seed, ino, raw, 0);
}

/** `inodeSeed` of the inode at byte `at` of `buf` (an inode table read in bulk). */
export function inodeSeedAt(seed: number, ino: number, buf: Buffer, at: number): number {
  return extCrcRange(extCrc(seed, le32(ino)), buf, at + 0x64, at + 0x68);
}

/** Whether i_checksum_hi holds the upper half of the inode's checksum (the extra space reaches it). */
const hasChecksumHi = (buf: Buffer, at: number, size: number) => size > 128 && buf.readUInt16LE(at + 0x80) >= 4;

/**
 * The inode's checksum: CRC of the whole inode with i_checksum_lo (and i_checksum_hi, when present) as zeros,
 * summed in place (no copy).
 */
function inodeChecksum(inodeCrcSeed: number, buf: Buffer, at: number, size: number): number {
  let crc = extCrcRange(inodeCrcSeed, buf, at, at + 0x7c);
  crc = extCrcZeros(crc, 2);
  if (size <= 0x7e) return crc;
  if (!hasChecksumHi(buf, at, size)) return extCrcRangeZeroTail(crc, buf, at + 0x7e, at + size);
  crc = extCrcRange(crc, buf, at + 0x7e, at + 0x82);
  crc = extCrcZeros(crc, 2);
  return extCrcRangeZeroTail(crc, buf, at + 0x84, at + size);
}

/** i_checksum_lo (and i_checksum_hi when the inode's extra space holds it). */
export function inodeCsumOk(inodeCrcSeed: number, raw: Buffer): boolean {
  return inodeCsumOkAt(inodeCrcSeed, raw, 0, raw.length);
}

/** `inodeCsumOk` of the `size`-byte inode at byte `at` of `buf`. */
export function inodeCsumOkAt(inodeCrcSeed: number, buf: Buffer, at: number, size: number): boolean {
  const crc = inodeChecksum(inodeCrcSeed, buf, at, size);
  if (hasChecksumHi(buf, at, size)) return crc === buf.readUInt16LE(at + 0x7c) + buf.readUInt16LE(at + 0x82) * 0x10000;
  return (crc & 0xffff) === buf.readUInt16LE(at + 0x7c);
}

/**
 * Rewrites the checksums of a changed superblock and of changed inodes in an ext4 image (tests: damage a field
 * on purpose and still reach the reader's field checks). `inodes` are [inode number, byte offset] pairs.
 */
export function resealExt(image: Buffer, inodes: [number, number][] = [], inodeSize = 256): void {
  const sb = image.subarray(1024, 2048);
  if (!(sb.readUInt32LE(0x64) & 0x400)) return;
  sb.writeUInt32LE(extCrc(0xffffffff, sb.subarray(0, SB_CHECKSUM_OFFSET)), SB_CHECKSUM_OFFSET);
  const seed = checksumSeed(sb, (sb.readUInt32LE(0x60) & 0x2000) !== 0);
  for (const [ino, offset] of inodes) {
    const raw = image.subarray(offset, offset + inodeSize);
    const crc = inodeChecksum(inodeSeed(seed, ino, raw), raw, 0, raw.length);
    raw.writeUInt16LE(crc & 0xffff, 0x7c);
    if (hasChecksumHi(raw, 0, raw.length)) raw.writeUInt16LE(crc >>> 16, 0x82);
  }
}

/** The ext4_extent_tail after eh_max entries of an extent block; true when there is no room for one. */
export function extentBlockCsumOk(inodeCrcSeed: number, block: Buffer): boolean {
  const tail = 12 + block.readUInt16LE(4) * 12;
  if (tail + 4 > block.length) return false;
  return extCrc(inodeCrcSeed, block.subarray(0, tail)) === block.readUInt32LE(tail);
}

/**
 * A directory leaf block ends in a 12-byte fake entry holding the checksum: inode 0, rec_len 12, file type 0xDE.
 * Like e2fsprogs, the entries' rec_len chain must land exactly on it: the last 12 bytes alone do not decide, as an
 * htree index block made from a former leaf block can keep the old tail's bytes in its dx_tail (an interior
 * node's fake entry spans the whole block, the root's ".." the rest of it, so their chains never land there).
 */
export function hasDirentTail(block: Buffer): boolean {
  const t = block.length - 12;
  if (t < 0) return false;
  let pos = 0;
  while (pos < t) {
    let recLen = block.readUInt16LE(pos + 4);
    if (block.length === 65536 && (recLen === 0 || recLen === 65535)) recLen = 65536;
    if (recLen < 8 || recLen % 4 !== 0) return false;
    pos += recLen;
  }
  return pos === t && block.readUInt32LE(t) === 0 && block.readUInt16LE(t + 4) === 12 && block[t + 6] === 0 && block[t + 7] === 0xde;
}

export function direntBlockCsumOk(inodeCrcSeed: number, block: Buffer): boolean {
  const t = block.length - 12;
  return extCrc(inodeCrcSeed, block.subarray(0, t)) === block.readUInt32LE(t + 8);
}

/**
 * Where an htree index block keeps its count/limit: after the dx_root header (block 0: ".", ".." and
 * dx_root_info) or after the empty fake entry of a dx_node. Undefined when the block is neither.
 */
export function dxCountOffset(block: Buffer, firstBlock: boolean, blockSize: number): number | undefined {
  if (firstBlock) {
    // ".": rec_len 12; "..": rec_len spanning the rest; dx_root_info: 8 bytes with info_length 8.
    if (block.length < 0x28 || block.readUInt16LE(4) !== 12 || block.readUInt16LE(12 + 4) !== blockSize - 12 || block[0x18 + 5] !== 8) return undefined;
    return 0x20;
  }
  const recLen = block.readUInt16LE(4);
  if (block.length < 16 || block.readUInt32LE(0) !== 0 || (recLen !== blockSize && !(blockSize === 65536 && recLen === 0))) return undefined;
  return 8;
}

/** dx_tail (after `limit` entries) of an htree index block: CRC of the header + used entries, then the tail's first word. */
export function dxBlockCsumOk(inodeCrcSeed: number, block: Buffer, countOffset: number): boolean {
  const limit = block.readUInt16LE(countOffset);
  const count = block.readUInt16LE(countOffset + 2);
  const tail = countOffset + limit * 8;
  if (count > limit || tail + 8 > block.length) return false;
  let crc = extCrc(inodeCrcSeed, block.subarray(0, countOffset + count * 8));
  crc = extCrc(crc, block.subarray(tail, tail + 4));
  crc = extCrc(crc, ZERO4);
  return crc === block.readUInt32LE(tail + 4);
}
