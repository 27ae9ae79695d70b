import { promises as fs } from 'node:fs';
import { DiskFormatError, MissingFileError } from '../errors';
import { resolveReferencedFile } from '../source';

/**
 * Picks the parent file of a differencing disk from the names it records (relative locators first).
 * Names are resolved only through resolveReferencedFile; an absolute name is refused as such, but its base
 * name is still tried in the child's own folder (where a moved chain usually lives).
 */
export async function findParentFile(child: string, names: string[], structure: string): Promise<string> {
  const candidates: string[] = [];
  const add = (name: string) => {
    const clean = name.replace(/\0+$/, '').trim();
    if (clean && !candidates.includes(clean)) candidates.push(clean);
  };
  for (const n of names) add(n);
  for (const n of names) add(n.replace(/\\/g, '/').split('/').pop() ?? '');
  const refused: string[] = [];
  for (const name of candidates) {
    let target: string;
    try {
      target = resolveReferencedFile(child, name, structure);
    } catch (err) {
      if (err instanceof DiskFormatError) {
        refused.push(name);
        continue;
      }
      throw err;
    }
    try {
      const st = await fs.stat(target);
      if (st.isFile()) return target;
    } catch {
      // try the next candidate
    }
  }
  const tried = candidates.filter((c) => !refused.includes(c)).map((c) => `"${c}"`).join(', ') || 'none';
  throw new MissingFileError(
    `parent disk not found (tried ${tried}${refused.length ? `; refused ${refused.map((r) => `"${r}"`).join(', ')}` : ''})`,
    child,
    structure,
  );
}
