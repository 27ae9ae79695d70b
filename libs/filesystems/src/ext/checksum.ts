/**
 * ext4 metadata checksums (metadata_csum): CRC-32C as the kernel's ext4_chksum computes it (no final inversion,
 * chained through a seed), over the superblock, group descriptors, inodes, extent blocks, directory leaf blocks
 * and htree index blocks. Each function answers whether the stored checksum matches; the reader turns a mismatch
 * into a FileSystemError naming the structure.
 */
import { crc32c } from '@vmkeep/disk-formats';

/** ext4_chksum(seed, data): the raw CRC-32C register, continued from `seed`. */
export function extCrc(seed: number, data: Uint8Array): number {
  return ~crc32c(data, ~seed >>> 0) >>> 0;
}

const le32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
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
  return extCrc(extCrc(seed, le32(ino)), raw.subarray(0x64, 0x68));
}

/** The inode's checksum and whether i_checksum_hi holds its upper half. */
function inodeChecksum(inodeCrcSeed: number, raw: Buffer): { crc: number; hasHi: boolean } {
  let crc = extCrc(inodeCrcSeed, raw.subarray(0, 0x7c));
  crc = extCrc(crc, ZERO2);
  crc = extCrc(crc, raw.subarray(0x7e, 128));
  let hasHi = false;
  if (raw.length > 128) {
    const extra = raw.readUInt16LE(0x80);
    crc = extCrc(crc, raw.subarray(128, 0x82));
    hasHi = extra >= 4;
    let offset = 0x82;
    if (hasHi) {
      crc = extCrc(crc, ZERO2);
      offset += 2;
    }
    crc = extCrc(crc, raw.subarray(offset));
  }
  return { crc, hasHi };
}

/** i_checksum_lo (and i_checksum_hi when the inode's extra space holds it). */
export function inodeCsumOk(inodeCrcSeed: number, raw: Buffer): boolean {
  const { crc, hasHi } = inodeChecksum(inodeCrcSeed, raw);
  const stored = raw.readUInt16LE(0x7c) + (hasHi ? raw.readUInt16LE(0x82) * 0x10000 : 0);
  return (hasHi ? crc : crc & 0xffff) === stored;
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
    const { crc, hasHi } = inodeChecksum(inodeSeed(seed, ino, raw), raw);
    raw.writeUInt16LE(crc & 0xffff, 0x7c);
    if (hasHi) raw.writeUInt16LE(crc >>> 16, 0x82);
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
