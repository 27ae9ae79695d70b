import { DiskError } from '@vmkeep/disk';

/**
 * A disk image is broken, hostile or unsupported. Names the file, the structure that is wrong (e.g. "sparse
 * header", "grain table 3", "VHDX header 1") and, where known, the byte offset in that file.
 */
export class DiskFormatError extends DiskError {
  constructor(
    message: string,
    readonly file: string,
    readonly structure: string,
    offset?: number,
  ) {
    super(`${structure}: ${message}`, file, offset);
    this.name = 'DiskFormatError';
  }
}

/** The image uses a feature or subformat this library does not read (yet). */
export class UnsupportedFormatError extends DiskFormatError {
  constructor(message: string, file: string, structure: string, offset?: number) {
    super(message, file, structure, offset);
    this.name = 'UnsupportedFormatError';
  }
}

/** A file the image refers to (extent, parent) is missing or may not be opened (absolute, outside the folder). */
export class MissingFileError extends DiskFormatError {
  constructor(message: string, file: string, structure: string) {
    super(message, file, structure);
    this.name = 'MissingFileError';
  }
}
