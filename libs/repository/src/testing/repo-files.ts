/** File helpers for the repository's maintenance specs. */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

/** Sets the mtime (and atime) of every file under `dir` to `ageMs` ago, as if written then. */
export async function backdate(dir: string, ageMs: number): Promise<void> {
  const then = new Date(Date.now() - ageMs);
  for (const f of await filesUnder(dir)) await fs.utimes(f, then, then);
}
