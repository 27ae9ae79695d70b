/** Public shapes of the volume and file-system readers. */
import type { Disk, Extent } from '@vmkeep/disk';

/** 'lvm' marks a logical volume from listVolumesOfVm. */
export type PartitionScheme = 'gpt' | 'mbr' | 'none' | 'lvm';

/** One volume of a disk: a partition, or the whole disk when it has no partition table. It is itself a Disk. */
export interface Volume extends Disk {
  /** 1-based partition number (GPT entry number, MBR 1–4 primary and 5… logical); 0 for a whole-disk volume; an LV's ordinal in its VG. */
  readonly index: number;
  /** Byte offset on the disk. */
  readonly start: number;
  readonly size: number;
  /** GPT type GUID, or the MBR type as "0x83"; "none" for a whole-disk volume. */
  readonly type: string;
  /** GPT partition name; "" for MBR and whole-disk volumes. */
  readonly name: string;
  /** GPT unique partition GUID; "" otherwise. */
  readonly guid: string;
  readonly scheme: PartitionScheme;
}

export interface ListVolumesResult {
  scheme: PartitionScheme;
  /** Logical sector size of the partition table (512 or 4096). */
  sectorSize: number;
  volumes: Volume[];
  /** Problems that did not stop the read, for example "primary GPT header damaged, backup used". */
  warnings: string[];
}

export type FileType = 'file' | 'directory' | 'symlink' | 'block-device' | 'char-device' | 'fifo' | 'socket' | 'unknown';

export interface FileStat {
  type: FileType;
  size: number;
  /** POSIX permission bits (and setuid/setgid/sticky); FAT reports 0o755 / 0o644 (0o555 / 0o444 read-only). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in milliseconds since the epoch (FAT times are local time, read as UTC). */
  mtimeMs: number;
  atimeMs: number;
  ctimeMs: number;
  nlink: number;
  /** The file's id inside the file system: ext inode number; FAT first cluster (0 for empty files). */
  inode: number;
}

export interface DirEntry {
  name: string;
  stat: FileStat;
  /** Set when the entry's own metadata is damaged: `stat.type` is then 'unknown' and the rest is zero. */
  error?: string;
}

export interface ReaddirOptions {
  /** Entries to skip ("." and ".." are never listed). */
  offset?: number;
  /** Most entries to return (default 1000). */
  limit?: number;
}

export interface ReaddirResult {
  entries: DirEntry[];
  /** Offset of the next page, or null at the end of the directory. */
  nextOffset: number | null;
}

/** An opened regular file: read it like a Disk. Holes and unwritten ranges read as zeros without being read. */
export interface FileHandle {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** Byte ranges of the file that hold data, sorted; everything else reads as zeros. */
  extents(): Promise<Extent[]>;
}

export type FileSystemType = 'ext2' | 'ext3' | 'ext4' | 'fat12' | 'fat16' | 'fat32' | 'exfat' | 'xfs' | 'ntfs';

export interface FileSystem {
  readonly type: FileSystemType;
  readonly label: string;
  readonly uuid: string;
  /** File-system size in bytes. */
  readonly size: number;
  /** Not cleanly unmounted or a journal needing recovery: the view may be stale. `warnings` says why. */
  readonly dirty: boolean;
  readonly warnings: string[];
  /** Paths are absolute ("/" separated); symlinks are never followed. */
  readdir(path: string, options?: ReaddirOptions): Promise<ReaddirResult>;
  /**
   * The names of a folder's entries in on-disk order, at most `limit` (default 1,000,000), without reading each
   * entry's metadata: the cheap first step of a listing sorted by name (stat only the page shown). `complete` is
   * false when the folder holds more.
   */
  readdirNames?(path: string, limit?: number): Promise<{ names: string[]; complete: boolean }>;
  stat(path: string): Promise<FileStat>;
  readlink(path: string): Promise<string>;
  open(path: string): Promise<FileHandle>;
}
