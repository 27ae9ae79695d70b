/**
 * What one fuzz case does with a (mutated) image: detect its format, open it from memory through the format's
 * reader (BufferSource; VMDK extents and parents come from the same in-memory file set), then read its info,
 * its extents and random ranges within a bounded budget. Every error must be a typed disk error.
 */
import { DiskError } from '@vmkeep/disk';
import {
  BufferSource, detectSource, MissingFileError, openVhdSource, openVhdxSource, openVmdkSource, type ImageDisk, type VmdkFileResolver,
} from '@vmkeep/disk-formats';
import type { FuzzImage } from './fuzz-corpus';
import type { Rng } from './fuzz-mutate';

/** Most bytes one case reads from an opened disk (a hostile header may claim terabytes). */
export const READ_BUDGET = 3 * 1024 * 1024;
const CHUNK = 256 * 1024;
const MAX_EXTENTS_READ = 64;

/** Extents and parents by name from the in-memory file set; anything else is missing. */
function memoryResolver(files: Record<string, Buffer>): VmdkFileResolver {
  return {
    async open(referrer, name, structure) {
      const data = Object.prototype.hasOwnProperty.call(files, name) ? files[name] : undefined;
      if (!data) throw new MissingFileError(`"${name}" does not exist`, referrer.name, structure);
      return new BufferSource(name, data);
    },
  };
}

/** Opens the main file of an image (as given, possibly mutated) with the reader of its format. */
export async function openFuzzImage(image: FuzzImage, files: Record<string, Buffer>): Promise<ImageDisk> {
  const source = new BufferSource(image.main, files[image.main]);
  switch (image.opener) {
    case 'vmdk':
      return openVmdkSource(source, memoryResolver(files));
    case 'vhd':
      return openVhdSource(source, image.main);
    case 'vhdx':
      return openVhdxSource(source, image.main);
  }
}

export interface CaseOutcome {
  opened: boolean;
  /** Name of the typed error, when the open or a read refused the image. */
  refusedWith?: string;
  bytesRead: number;
}

/** Reads extents (then random ranges) of an opened disk until the budget is spent. */
async function exercise(disk: ImageDisk, rng: Rng): Promise<number> {
  JSON.stringify(disk.info);
  let budget = READ_BUDGET;
  const read = async (offset: number, length: number): Promise<void> => {
    const n = Math.min(length, budget, CHUNK);
    if (n <= 0) return;
    const buf = await disk.read(offset, n);
    if (buf.length !== n) throw new Error(`read(${offset}, ${n}) returned ${buf.length} bytes`);
    budget -= n;
  };
  const extents = await disk.extents();
  for (const e of extents.slice(0, MAX_EXTENTS_READ)) {
    for (let at = e.offset; at < e.offset + e.length && budget > 0; at += CHUNK) await read(at, Math.min(CHUNK, e.offset + e.length - at));
  }
  for (let i = 0; i < 8 && budget > 0 && disk.size > 0; i++) {
    const offset = rng.int(disk.size);
    await read(offset, Math.min(disk.size - offset, 1 + rng.int(96 * 1024)));
  }
  // The last bytes of the disk, where partial grains and blocks live.
  if (disk.size > 0) await read(Math.max(0, disk.size - 4096), Math.min(4096, disk.size));
  return READ_BUDGET - budget;
}

/** Runs one case; resolves with what happened, rejects only with an error that is not a typed disk error. */
export async function runCase(image: FuzzImage, files: Record<string, Buffer>, rng: Rng): Promise<CaseOutcome> {
  const typed = (err: unknown): CaseOutcome => {
    if (err instanceof DiskError) return { opened: false, refusedWith: err.name, bytesRead: 0 };
    throw err;
  };
  try {
    await detectSource(new BufferSource(image.main, files[image.main]));
  } catch (err) {
    typed(err);
  }
  let disk: ImageDisk;
  try {
    disk = await openFuzzImage(image, files);
  } catch (err) {
    return typed(err);
  }
  try {
    const bytesRead = await exercise(disk, rng);
    return { opened: true, bytesRead };
  } catch (err) {
    return { ...typed(err), opened: true };
  } finally {
    await disk.close();
  }
}
