/**
 * Raw images, and the window-over-a-file Disk that fixed VHDs reuse: the virtual disk is the byte range
 * [offset, offset + size) of a file, read as is.
 */
import { checkRange, Extent } from '@vmkeep/disk';
import * as path from 'node:path';
import { DiskFormatError } from './errors';
import { ByteSource, FileSource } from './source';
import type { ImageDisk, ImageInfo } from './types';

export class SourceDisk implements ImageDisk {
  constructor(
    private readonly source: ByteSource,
    private readonly offset: number,
    readonly size: number,
    readonly info: ImageInfo,
  ) {
    if (offset < 0 || offset + size > source.size) {
      throw new DiskFormatError(`data window ${offset}+${size} exceeds the ${source.size}-byte file`, source.name, 'data');
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.source.name, offset, length);
    return this.source.read(this.offset + offset, length, 'data');
  }

  release(buffer: Buffer): void {
    this.source.release?.(buffer);
  }

  /** A plain file cannot tell its holes through Node's fs API, so the whole disk may hold data. */
  async extents(): Promise<Extent[]> {
    return this.size > 0 ? [{ offset: 0, length: this.size }] : [];
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}

/** Opens a file as a raw disk image (its bytes are the disk). */
export async function openRaw(file: string): Promise<ImageDisk> {
  const source = await FileSource.open(file);
  return rawFromSource(source);
}

export function rawFromSource(source: ByteSource): ImageDisk {
  return new SourceDisk(source, 0, source.size, {
    format: 'raw',
    subformat: 'raw',
    virtualSize: source.size,
    allocatedBytes: source.size,
    files: [path.basename(source.name)],
    parents: [],
    metadata: {},
    warnings: [],
  });
}
