/** The XFS v5 superblock: parsed, validated (geometry and CRC-32C) and reduced to what the reader needs. */
import type { Disk } from '@vmkeep/disk';
import { crcOk } from './crc';
import { cString, uuidText } from '../bytes';
import { FileSystemError, UnsupportedFileSystemError } from '../errors';

export const XFS_MAGIC = 0x58465342; // "XFSB"
const SB_CRC_OFFSET = 224;
const VERSION_NUMBITS = 0x000f;

export const INCOMPAT = { ftype: 0x1, spinodes: 0x2, metaUuid: 0x4, bigtime: 0x8, needsRepair: 0x10, nrext64: 0x20 } as const;
const INCOMPAT_SUPPORTED = INCOMPAT.ftype | INCOMPAT.spinodes | INCOMPAT.metaUuid | INCOMPAT.bigtime | INCOMPAT.needsRepair | INCOMPAT.nrext64;

export interface XfsSuperblock {
  blockSize: number;
  sectorSize: number;
  dataBlocks: number;
  agBlocks: number;
  agCount: number;
  agBlockLog: number;
  inodeSize: number;
  inodesPerBlockLog: number;
  rootIno: number;
  dirBlockSize: number;
  logStart: number;
  logBlocks: number;
  incompat: number;
  uuid: string;
  label: string;
  /** Set when mkfs did not finish or xfs_repair must run: the view cannot be trusted fully. */
  dirty: boolean;
  warnings: string[];
}

const log2 = (n: number) => Math.log2(n);
const isPow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

export async function readXfsSuperblock(volume: Disk): Promise<XfsSuperblock> {
  if (volume.size < 512) throw new FileSystemError('xfs', 'superblock', 'volume too small for an XFS superblock', 0);
  const head = await volume.read(0, 512);
  const fail = (field: string, msg: string, at: number) => new FileSystemError('xfs', `superblock ${field}`, msg, at);
  if (head.readUInt32BE(0) !== XFS_MAGIC) throw fail('magic', 'not an XFS superblock', 0);
  const version = head.readUInt16BE(100) & VERSION_NUMBITS;
  if (version !== 5) throw new UnsupportedFileSystemError('xfs', `XFS version ${version} (without metadata CRCs) is not supported; only v5`, 100);
  const sectorSize = head.readUInt16BE(102);
  if (!isPow2(sectorSize) || sectorSize < 512 || sectorSize > 32768 || head[121] !== log2(sectorSize)) {
    throw fail('sectsize', `sector size ${sectorSize} (log ${head[121]}) is invalid`, 102);
  }
  if (volume.size < sectorSize) throw fail('sectsize', 'volume smaller than one sector', 102);
  const sb = sectorSize === 512 ? head : await volume.read(0, sectorSize);
  if (!crcOk(sb, SB_CRC_OFFSET)) throw fail('crc', 'superblock CRC-32C mismatch', SB_CRC_OFFSET);
  const blockSize = sb.readUInt32BE(4);
  if (!isPow2(blockSize) || blockSize < 512 || blockSize > 65536 || blockSize < sectorSize || sb[120] !== log2(blockSize)) {
    throw fail('blocksize', `block size ${blockSize} (log ${sb[120]}) is invalid`, 4);
  }
  const big = (at: number) => {
    const v = sb.readBigUInt64BE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`field at ${at}`, `64-bit value ${v} is out of range`, at);
    return Number(v);
  };
  const dataBlocks = big(8);
  const agBlocks = sb.readUInt32BE(84);
  const agCount = sb.readUInt32BE(88);
  const agBlockLog = sb[124];
  if (agBlocks < 64 || agBlockLog !== Math.ceil(log2(agBlocks))) throw fail('agblocks', `AG size ${agBlocks} blocks (log ${agBlockLog}) is invalid`, 84);
  if (agCount < 1 || dataBlocks <= (agCount - 1) * agBlocks || dataBlocks > agCount * agBlocks) {
    throw fail('agcount', `${agCount} AGs of ${agBlocks} blocks do not match ${dataBlocks} data blocks`, 88);
  }
  if (dataBlocks * blockSize > volume.size) throw fail('dblocks', `${dataBlocks} blocks of ${blockSize} bytes exceed the ${volume.size}-byte volume`, 8);
  const inodeSize = sb.readUInt16BE(104);
  const inodesPerBlock = sb.readUInt16BE(106);
  if (!isPow2(inodeSize) || inodeSize < 512 || inodeSize > 2048 || inodeSize > blockSize || sb[122] !== log2(inodeSize)) {
    throw fail('inodesize', `inode size ${inodeSize} is invalid for v5`, 104);
  }
  if (inodesPerBlock !== blockSize / inodeSize || sb[123] !== log2(inodesPerBlock)) throw fail('inopblock', `${inodesPerBlock} inodes per block is invalid`, 106);
  const dirBlockLog = sb[192];
  if (blockSize << dirBlockLog > 65536) throw fail('dirblklog', `directory block log ${dirBlockLog} is too large`, 192);
  const incompat = sb.readUInt32BE(216);
  const unknown = incompat & ~INCOMPAT_SUPPORTED;
  if (unknown) throw new UnsupportedFileSystemError('xfs', `incompatible feature bits 0x${unknown.toString(16)} are not supported yet`, 216);
  if (big(16) !== 0) throw new UnsupportedFileSystemError('xfs', 'XFS with a realtime device is not supported yet', 16);
  const warnings: string[] = [];
  let dirty = false;
  if (sb[126] !== 0) {
    dirty = true;
    warnings.push('the superblock says mkfs did not finish (sb_inprogress)');
  }
  if (incompat & INCOMPAT.needsRepair) {
    dirty = true;
    warnings.push('the superblock says xfs_repair must run (needsrepair)');
  }
  const rootIno = big(56);
  return {
    blockSize, sectorSize, dataBlocks, agBlocks, agCount, agBlockLog, inodeSize, inodesPerBlockLog: sb[123], rootIno,
    dirBlockSize: blockSize << dirBlockLog, logStart: big(48), logBlocks: sb.readUInt32BE(96), incompat,
    uuid: uuidText(sb, 32), label: cString(sb, 108, 12), dirty, warnings,
  };
}
