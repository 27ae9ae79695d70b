/** Checks of writer inputs; every failure is an ImageWriteError naming the output. */
import type { Disk } from '@vmkeep/disk';
import { ImageWriteError } from './errors';
import type { VmdkAdapterType, WriteOptions } from './options';

const ADAPTERS: readonly VmdkAdapterType[] = ['ide', 'buslogic', 'lsilogic', 'legacyESX'];

/** The options with defaults applied, once checked. */
export interface CheckedOptions {
  adapterType: VmdkAdapterType;
  virtualHWVersion: number;
  compressionLevel: number;
  concurrency: number | undefined;
}

function intIn(value: number | undefined, min: number, max: number, what: string, target: string): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) {
    throw new ImageWriteError(`${what} must be an integer from ${min} to ${max}, got ${value}`, target);
  }
}

export function checkOptions(opts: WriteOptions, target: string): CheckedOptions {
  if (opts.adapterType !== undefined && !ADAPTERS.includes(opts.adapterType)) {
    throw new ImageWriteError(`adapter type must be one of ${ADAPTERS.join(', ')}, got "${opts.adapterType}"`, target);
  }
  intIn(opts.virtualHWVersion, 1, 99, 'virtualHWVersion', target);
  intIn(opts.compressionLevel, 1, 9, 'compression level', target);
  intIn(opts.concurrency, 1, 256, 'concurrency', target);
  return {
    adapterType: opts.adapterType ?? 'lsilogic',
    virtualHWVersion: opts.virtualHWVersion ?? 4,
    compressionLevel: opts.compressionLevel ?? 1,
    concurrency: opts.concurrency,
  };
}

/** A virtual disk for a sector-based format: non-empty, whole 512-byte sectors, at most `max` bytes. */
export function checkSectorDisk(source: Disk, max: number, format: string, target: string): void {
  const size = source.size;
  if (!Number.isSafeInteger(size) || size <= 0) throw new ImageWriteError(`cannot write an empty disk as ${format}`, target);
  if (size % 512 !== 0) {
    throw new ImageWriteError(`${format} holds whole 512-byte sectors; a ${size}-byte disk is not a multiple of 512`, target);
  }
  if (size > max) throw new ImageWriteError(`${format} holds at most ${max} bytes; the disk has ${size}`, target);
}
