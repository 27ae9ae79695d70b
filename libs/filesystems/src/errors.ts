/**
 * Errors of the volume and file-system readers. Damaged or hostile metadata is a FileSystemError naming the
 * structure and the byte offset (relative to the disk the reader was given); a recognised but unsupported file
 * system or feature is an UnsupportedFileSystemError; a bad path from the caller is a PathError.
 */
import { DiskError } from '@vmkeep/disk';

export class FileSystemError extends DiskError {
  constructor(
    /** The reader (for example "ext4", "fat32", "gpt"). */
    source: string,
    /** The structure that is damaged, for example "superblock", "extent node", "directory entry". */
    readonly structure: string,
    message: string,
    offset?: number,
  ) {
    super(`${structure}: ${message}`, source, offset);
    this.name = 'FileSystemError';
  }
}

/** A file system (or a feature of one) this library recognises but cannot read yet. */
export class UnsupportedFileSystemError extends FileSystemError {
  constructor(
    readonly fsType: string,
    message = 'not supported yet',
    offset?: number,
  ) {
    super(fsType, 'file system', message, offset);
    this.name = 'UnsupportedFileSystemError';
  }
}

export type PathErrorCode = 'ENOENT' | 'ENOTDIR' | 'EISDIR' | 'EINVAL';

/** A path that does not name what the call needs (missing, not a directory, not a symlink, ...). */
export class PathError extends Error {
  constructor(
    readonly code: PathErrorCode,
    readonly path: string,
    message: string,
  ) {
    super(`${code}: ${path}: ${message}`);
    this.name = 'PathError';
  }
}
