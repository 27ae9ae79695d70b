import { DiskError } from '@vmkeep/disk';

/** A write request that cannot be carried out: bad option, disk too large or oddly sized for the format, ... */
export class ImageWriteError extends DiskError {
  constructor(message: string, target: string) {
    super(message, target);
    this.name = 'ImageWriteError';
  }
}
