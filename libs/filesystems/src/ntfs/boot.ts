/** The NTFS boot sector: geometry, $MFT location and record sizes, every value checked before use. */
import type { Disk } from '@vmkeep/disk';
import { readStructure } from '../bytes';
import { FileSystemError } from '../errors';

export interface NtfsBoot {
  sectorSize: number;
  clusterSize: number;
  /** Clusters of the volume. */
  clusters: number;
  /** Bytes of the file system (sectors × sector size). */
  size: number;
  mftLcn: number;
  mftRecordSize: number;
  indexRecordSize: number;
  /** Volume serial number as 16 upper-case hex digits (what blkid shows as the UUID). */
  serial: string;
}

const MAX_CLUSTER = 2 * 1024 * 1024;

function bootError(message: string, at: number): FileSystemError {
  return new FileSystemError('ntfs', 'boot sector', message, at);
}

/** A size given in clusters when positive, or as 2^-n bytes when the signed byte is negative. */
function recordSize(raw: number, clusterSize: number, what: string, at: number): number {
  const v = raw > 127 ? raw - 256 : raw;
  const size = v < 0 ? (-v <= 31 ? 2 ** -v : 0) : v * clusterSize;
  if (size < 512 || size > 65536 || (size & (size - 1)) !== 0) throw bootError(`${what} size ${size} (raw ${raw}) is invalid`, at);
  return size;
}

export function parseBoot(b: Buffer, volumeSize: number): NtfsBoot {
  if (b.toString('latin1', 3, 11) !== 'NTFS    ') throw bootError('no NTFS signature', 3);
  if (b.readUInt16LE(510) !== 0xaa55) throw bootError('missing 0x55AA boot signature', 510);
  const sectorSize = b.readUInt16LE(11);
  if (sectorSize < 256 || sectorSize > 4096 || (sectorSize & (sectorSize - 1)) !== 0) throw bootError(`sector size ${sectorSize} is invalid`, 11);
  const spcRaw = b[13];
  const spc = spcRaw <= 0x80 ? spcRaw : 2 ** (256 - spcRaw);
  const clusterSize = spc * sectorSize;
  if (spc === 0 || (spc & (spc - 1)) !== 0 || clusterSize > MAX_CLUSTER) throw bootError(`sectors per cluster ${spcRaw} is invalid`, 13);
  const sectors = b.readBigUInt64LE(0x28);
  const size = Number(sectors) * sectorSize;
  if (sectors === 0n || !Number.isSafeInteger(size) || size > volumeSize + sectorSize) {
    throw bootError(`${sectors} sectors do not fit the ${volumeSize}-byte volume`, 0x28);
  }
  const clusters = Math.floor(Math.min(size, volumeSize) / clusterSize);
  const mftLcn = b.readBigUInt64LE(0x30);
  if (mftLcn === 0n || mftLcn >= BigInt(clusters)) throw bootError(`$MFT cluster ${mftLcn} is outside the volume`, 0x30);
  return {
    sectorSize,
    clusterSize,
    clusters,
    size,
    mftLcn: Number(mftLcn),
    mftRecordSize: recordSize(b[0x40], clusterSize, 'MFT record', 0x40),
    indexRecordSize: recordSize(b[0x44], clusterSize, 'index record', 0x44),
    serial: Buffer.from(b.subarray(0x48, 0x50)).reverse().toString('hex').toUpperCase(),
  };
}

export async function readBoot(volume: Disk): Promise<NtfsBoot> {
  return parseBoot(await readStructure(volume, 'ntfs', 'boot sector', 0, 512), volume.size);
}
