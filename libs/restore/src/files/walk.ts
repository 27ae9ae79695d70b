/** Depth-first walk of a guest folder for archives: bounded depth, folder loops detected, names sanitised. */
import type { FileStat, FileSystem } from '@vmkeep/filesystems';
import { childPath, sanitizeEntryName } from './paths';

export const MAX_DEPTH = 256;
const PAGE = 1000;

export interface WalkEntry {
  /** Path inside the guest file system. */
  guestPath: string;
  /** Archive name: sanitised components joined by "/", starting with the walked folder's own name. */
  name: string;
  stat: FileStat;
}

/**
 * Yields the folder itself, then everything below it (parents before children). Entries the reader marks
 * damaged, folders deeper than MAX_DEPTH and a folder that contains one of its own ancestors are reported
 * through `onSkip` and left out; symlinks are yielded as symlinks, never followed.
 */
export async function* walkTree(
  fs: FileSystem,
  root: string,
  rootName: string,
  onSkip: (guestPath: string, reason: string) => void = () => undefined,
): AsyncGenerator<WalkEntry> {
  const rootStat = await fs.stat(root);
  yield { guestPath: root, name: rootName, stat: rootStat };
  if (rootStat.type !== 'directory') return;
  const ancestors: number[] = [];
  async function* folder(guestPath: string, name: string, stat: FileStat, depth: number): AsyncGenerator<WalkEntry> {
    if (stat.inode !== 0 && ancestors.includes(stat.inode)) {
      onSkip(guestPath, 'folder contains one of its own parents (damaged metadata)');
      return;
    }
    if (depth > MAX_DEPTH) {
      onSkip(guestPath, `deeper than ${MAX_DEPTH} levels`);
      return;
    }
    ancestors.push(stat.inode);
    try {
      for (let offset: number | null = 0; offset !== null; ) {
        const page = await fs.readdir(guestPath, { offset, limit: PAGE });
        offset = page.nextOffset;
        for (const e of page.entries) {
          const childGuest = childPath(guestPath, e.name);
          if (e.error || e.stat.type === 'unknown') {
            onSkip(childGuest, e.error ?? 'unknown entry type');
            continue;
          }
          const entry = { guestPath: childGuest, name: `${name}/${sanitizeEntryName(e.name)}`, stat: e.stat };
          yield entry;
          if (e.stat.type === 'directory') yield* folder(entry.guestPath, entry.name, e.stat, depth + 1);
        }
      }
    } finally {
      ancestors.pop();
    }
  }
  yield* folder(root, rootName, rootStat, 1);
}
