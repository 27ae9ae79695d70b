/** Atomic file writes: a unique temp file in the target folder, fsync, rename, fsync the folder. */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { TEMP_MARKER } from './constants';

/** A unique temp file name next to `file`, recognisable by TEMP_MARKER. */
export function tempPathFor(file: string): string {
  const name = `.${path.basename(file)}${TEMP_MARKER}${process.pid}-${randomBytes(6).toString('hex')}`;
  return path.join(path.dirname(file), name);
}

export function isTempName(name: string): boolean {
  return name.includes(TEMP_MARKER);
}

/** Makes a file's data, or a folder's entries (new names, renames), durable. */
export async function fsyncPath(file: string): Promise<void> {
  const handle = await fs.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a folder's entries (new names, renames) durable. */
export const fsyncDir = fsyncPath;

/** Writes `data` to `file` so that readers see either nothing/the old file or the complete new one. */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const temp = tempPathFor(file);
  const handle = await fs.open(temp, 'wx');
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, file);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(file));
}
