import { DiskFormatError } from '../errors';
import type { ByteSource } from '../source';
import { checkExtentRead, type ExtentMap, type Piece, type VmdkExtent } from './layer';

/** A FLAT or VMFS extent: `length` bytes of a plain file starting at `start`. The file must hold all of them. */
export class FlatExtent implements VmdkExtent {
  readonly files: string[];

  constructor(
    private readonly src: ByteSource,
    readonly length: number,
    private readonly start: number,
  ) {
    if (start + length > src.size) {
      throw new DiskFormatError(
        `flat extent needs ${start + length} bytes but the file has ${src.size} (truncated)`, src.name, 'flat extent', src.size,
      );
    }
    this.files = [src.name];
  }

  async read(offset: number, length: number): Promise<Piece[]> {
    checkExtentRead(this, this.src.name, offset, length);
    if (length === 0) return [];
    return [{ kind: 'data', data: await this.src.read(this.start + offset, length, 'flat extent') }];
  }

  async map(): Promise<ExtentMap> {
    return { data: this.length ? [{ offset: 0, length: this.length }] : [], zero: [] };
  }

  async close(): Promise<void> {
    await this.src.close();
  }
}

/** A ZERO extent: reads as zeros, stores nothing, hides the parent. */
export class ZeroExtent implements VmdkExtent {
  readonly files: string[] = [];

  constructor(readonly length: number) {}

  async read(offset: number, length: number): Promise<Piece[]> {
    checkExtentRead(this, 'ZERO extent', offset, length);
    return length ? [{ kind: 'zero', length }] : [];
  }

  async map(): Promise<ExtentMap> {
    return { data: [], zero: this.length ? [{ offset: 0, length: this.length }] : [] };
  }

  async close(): Promise<void> {}
}
