/** Recognises the file system of a volume by its signatures and opens it with the matching reader. */
import type { Disk } from '@vmkeep/disk';
import { UnsupportedFileSystemError } from './errors';
import { openExt } from './ext/ext';
import { EXT_MAGIC } from './ext/superblock';
import { openExfat } from './exfat/exfat';
import { looksLikeFat, openFat } from './fat/fat';
import { openNtfs } from './ntfs/ntfs';
import { openXfs } from './xfs/xfs';
import type { FileSystem } from './types';

export type DetectedType =
  | 'ext' | 'fat' | 'exfat' | 'ntfs' | 'xfs' | 'btrfs' | 'refs' | 'bitlocker' | 'lvm2' | 'swap' | 'luks' | 'unknown';

async function readUpTo(volume: Disk, offset: number, length: number): Promise<Buffer> {
  if (offset >= volume.size) return Buffer.alloc(0);
  return volume.read(offset, Math.min(length, volume.size - offset));
}

/** Names the file system (or other content) of a volume from its signatures, without trusting anything else. */
export async function detectFileSystem(volume: Disk): Promise<DetectedType> {
  const head = await readUpTo(volume, 0, 4096);
  const text = (at: number, len: number) => (head.length >= at + len ? head.toString('latin1', at, at + len) : '');
  if (head.length >= 1082 && head.readUInt16LE(1080) === EXT_MAGIC) return 'ext';
  if (text(3, 8) === 'NTFS    ') return 'ntfs';
  if (text(3, 8) === 'EXFAT   ') return 'exfat';
  if (text(3, 8) === '-FVE-FS-') return 'bitlocker';
  if (text(3, 4) === 'ReFS') return 'refs';
  if (text(0, 4) === 'XFSB') return 'xfs';
  if (text(0, 6) === 'LUKS\xba\xbe') return 'luks';
  if (text(512, 8) === 'LABELONE' || text(1024, 8) === 'LABELONE') return 'lvm2';
  if (text(4086, 10) === 'SWAPSPACE2') return 'swap';
  const btrfs = await readUpTo(volume, 0x10040, 8);
  if (btrfs.toString('latin1') === '_BHRfS_M') return 'btrfs';
  if (looksLikeFat(head.subarray(0, 512))) return 'fat';
  return 'unknown';
}

const UNSUPPORTED: Record<string, string> = {
  btrfs: 'Btrfs is not supported yet',
  refs: 'ReFS is not supported yet',
  bitlocker: 'BitLocker-encrypted volumes are not supported yet',
  luks: 'LUKS-encrypted volumes are not supported yet',
  lvm2: 'LVM2 physical volumes are not supported yet',
  swap: 'a swap area holds no files',
  unknown: 'no known file system found',
};

/** Opens the file system of a volume (a partition from listVolumes, or any Disk). Never writes. */
export async function openFileSystem(volume: Disk): Promise<FileSystem> {
  const type = await detectFileSystem(volume);
  if (type === 'ext') return openExt(volume);
  if (type === 'fat') return openFat(volume);
  if (type === 'exfat') return openExfat(volume);
  if (type === 'ntfs') return openNtfs(volume);
  if (type === 'xfs') return openXfs(volume);
  throw new UnsupportedFileSystemError(type, UNSUPPORTED[type]);
}
