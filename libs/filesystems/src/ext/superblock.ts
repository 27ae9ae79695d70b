/** The ext2/3/4 superblock: parsed, validated, and the feature bits the reader acts on. */
import type { Disk } from '@vmkeep/disk';
import { cString, uuidText } from '../bytes';
import { FileSystemError, UnsupportedFileSystemError } from '../errors';
import { checksumSeed, SB_CHECKSUM_OFFSET, superblockCsumOk } from './checksum';

export const SUPERBLOCK_OFFSET = 1024;
export const EXT_MAGIC = 0xef53;

export const INCOMPAT = {
  compression: 0x1, filetype: 0x2, recover: 0x4, journalDev: 0x8, metaBg: 0x10, extents: 0x40, bit64: 0x80, mmp: 0x100,
  flexBg: 0x200, eaInode: 0x400, dirdata: 0x1000, csumSeed: 0x2000, largedir: 0x4000, inlineData: 0x8000, encrypt: 0x10000,
  casefold: 0x20000,
} as const;
const INCOMPAT_SUPPORTED = INCOMPAT.filetype | INCOMPAT.recover | INCOMPAT.metaBg | INCOMPAT.extents | INCOMPAT.bit64 | INCOMPAT.mmp
  | INCOMPAT.flexBg | INCOMPAT.eaInode | INCOMPAT.csumSeed | INCOMPAT.largedir | INCOMPAT.inlineData | INCOMPAT.encrypt | INCOMPAT.casefold;
const INCOMPAT_EXT3 = INCOMPAT.filetype | INCOMPAT.recover | INCOMPAT.metaBg;
const RO_COMPAT_EXT3 = 0x1 | 0x2 | 0x4;
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_METADATA_CSUM = 0x400;
const RO_COMPAT_GDT_CSUM = 0x10;
const COMPAT_HAS_JOURNAL = 0x4;

export interface Superblock {
  type: 'ext2' | 'ext3' | 'ext4';
  blockSize: number;
  blocksCount: number;
  inodesCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  groupCount: number;
  descSize: number;
  firstMetaBg: number;
  incompat: number;
  sparseSuper: boolean;
  /** metadata_csum: group descriptors, inodes, extent and directory blocks carry CRC-32C checksums (checksum.ts). */
  metadataCsum: boolean;
  /** gdt_csum or metadata_csum: bg_itable_unused counts the never-used inodes at the end of each group's table. */
  itableUnused: boolean;
  /** Seed of those checksums (0 without metadata_csum). */
  csumSeed: number;
  label: string;
  uuid: string;
  dirty: boolean;
  warnings: string[];
}

export async function readSuperblock(volume: Disk): Promise<Superblock> {
  if (volume.size < SUPERBLOCK_OFFSET + 1024) throw new FileSystemError('ext', 'superblock', 'volume too small for an ext superblock', SUPERBLOCK_OFFSET);
  const sb = await volume.read(SUPERBLOCK_OFFSET, 1024);
  const fail = (field: string, msg: string, at: number) => new FileSystemError('ext', `superblock ${field}`, msg, SUPERBLOCK_OFFSET + at);
  if (sb.readUInt16LE(0x38) !== EXT_MAGIC) throw fail('magic', 'not an ext2/3/4 superblock', 0x38);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  const compat = sb.readUInt32LE(0x5c);
  if (incompat & INCOMPAT.journalDev) throw new UnsupportedFileSystemError('ext-journal', 'an external ext journal device holds no files');
  const unknown = incompat & ~INCOMPAT_SUPPORTED;
  if (unknown) throw new UnsupportedFileSystemError('ext4', `incompatible feature bits 0x${unknown.toString(16)} are not supported yet`, SUPERBLOCK_OFFSET + 0x60);
  const metadataCsum = (roCompat & RO_COMPAT_METADATA_CSUM) !== 0;
  if (metadataCsum) {
    if (sb[0x175] !== 1) throw fail('s_checksum_type', `checksum type ${sb[0x175]} is not crc32c`, 0x175);
    if (!superblockCsumOk(sb)) throw fail('checksum', 'the superblock checksum (crc32c) does not match: the superblock is damaged', SB_CHECKSUM_OFFSET);
  }
  const logBlock = sb.readUInt32LE(0x18);
  if (logBlock > 6) throw fail('s_log_block_size', `block size 2^(10+${logBlock}) is invalid`, 0x18);
  const blockSize = 1024 << logBlock;
  const is64 = (incompat & INCOMPAT.bit64) !== 0;
  const blocksCount = sb.readUInt32LE(0x4) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const inodesCount = sb.readUInt32LE(0x0);
  const firstDataBlock = sb.readUInt32LE(0x14);
  const blocksPerGroup = sb.readUInt32LE(0x20);
  const inodesPerGroup = sb.readUInt32LE(0x28);
  const revLevel = sb.readUInt32LE(0x4c);
  const inodeSize = revLevel === 0 ? 128 : sb.readUInt16LE(0x58);
  if (blocksCount === 0 || blocksCount * blockSize > volume.size) {
    throw fail('s_blocks_count', `${blocksCount} blocks of ${blockSize} bytes do not fit the ${volume.size}-byte volume`, 0x4);
  }
  if (firstDataBlock >= blocksCount || firstDataBlock > 1) throw fail('s_first_data_block', `${firstDataBlock} is invalid`, 0x14);
  if (blocksPerGroup === 0 || blocksPerGroup > blockSize * 8) throw fail('s_blocks_per_group', `${blocksPerGroup} is invalid`, 0x20);
  if (inodesPerGroup === 0 || inodesPerGroup > blockSize * 8) throw fail('s_inodes_per_group', `${inodesPerGroup} is invalid`, 0x28);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) throw fail('s_inode_size', `${inodeSize} is invalid`, 0x58);
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (inodesCount === 0 || inodesCount > inodesPerGroup * groupCount) throw fail('s_inodes_count', `${inodesCount} exceeds ${groupCount} groups of ${inodesPerGroup}`, 0x0);
  let descSize = 32;
  if (is64) {
    descSize = sb.readUInt16LE(0xfe);
    if (descSize < 32 || descSize > 1024 || (descSize & (descSize - 1)) !== 0) throw fail('s_desc_size', `${descSize} is invalid`, 0xfe);
  }
  const state = sb.readUInt16LE(0x3a);
  const warnings: string[] = [];
  if (incompat & INCOMPAT.recover) warnings.push('the journal needs recovery: recent changes may be missing from this view');
  if ((state & 1) === 0) warnings.push('the file system was not cleanly unmounted');
  if (state & 2) warnings.push('the file system has recorded errors');
  const dirty = warnings.length > 0;
  if (incompat & INCOMPAT.encrypt) warnings.push('the file system may hold encrypted files: their contents read as ciphertext');
  const type = (incompat & ~INCOMPAT_EXT3) !== 0 || (roCompat & ~RO_COMPAT_EXT3) !== 0 ? 'ext4' : compat & COMPAT_HAS_JOURNAL ? 'ext3' : 'ext2';
  return {
    type, blockSize, blocksCount, inodesCount, firstDataBlock, blocksPerGroup, inodesPerGroup, inodeSize, groupCount, descSize,
    firstMetaBg: sb.readUInt32LE(0x104), incompat, sparseSuper: (roCompat & RO_COMPAT_SPARSE_SUPER) !== 0,
    metadataCsum, itableUnused: metadataCsum || (roCompat & RO_COMPAT_GDT_CSUM) !== 0, csumSeed: metadataCsum ? checksumSeed(sb, (incompat & INCOMPAT.csumSeed) !== 0) : 0,
    label: cString(sb, 0x78, 16), uuid: uuidText(sb, 0x68), dirty, warnings,
  };
}
