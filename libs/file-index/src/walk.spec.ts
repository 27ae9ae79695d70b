/**
 * The walk lists the next folders ahead of the one it enters (their reads overlap): the entries and the warnings
 * still come out in walk order whatever order the listings finish in, and no listing is left running once the
 * walk ends (also when it stops early at its entry budget).
 */
import type { DirEntry, FileStat, FileSystem, ReaddirResult } from '@vmkeep/filesystems';
import { DEFAULT_WALK_LIMITS, walkFileSystem, type WalkReport } from './walk';

const stat = (type: FileStat['type'], inode: number): FileStat => ({
  type, size: type === 'file' ? 7 : 4096, mode: 0o644, uid: 0, gid: 0, mtimeMs: 1000, atimeMs: 1000, ctimeMs: 1000, nlink: 1, inode,
});

/** Root: folders d0 … d9 with three files each, and a file "z"; d3 (slowly) and d7 (at once) cannot be read. */
function fakeFs() {
  let inode = 10;
  const tree = new Map<string, DirEntry[]>();
  tree.set('/', [...Array.from({ length: 10 }, (_, i) => ({ name: `d${i}`, stat: stat('directory', inode++) })), { name: 'z', stat: stat('file', inode++) }]);
  for (let i = 0; i < 10; i++) tree.set(`/d${i}`, ['c', 'a', 'b'].map((name) => ({ name, stat: stat('file', inode++) })));
  const state = { inFlight: 0, maxInFlight: 0, calls: 0 };
  const fs = {
    type: 'ext4', label: '', uuid: '', size: 0, dirty: false, warnings: [],
    async readdir(path: string): Promise<ReaddirResult> {
      state.calls++;
      state.maxInFlight = Math.max(state.maxInFlight, ++state.inFlight);
      try {
        await new Promise((r) => setTimeout(r, path === '/d3' ? 60 : 5));
        if (path === '/d3' || path === '/d7') throw new Error(`boom ${path}`);
        return { entries: tree.get(path)!.map((e) => ({ ...e })), nextOffset: null };
      } finally {
        state.inFlight--;
      }
    },
    stat: async () => stat('directory', 2),
    readlink: async () => '',
    open: async () => {
      throw new Error('not used');
    },
  } as unknown as FileSystem;
  return { fs, state };
}

async function walk(fs: FileSystem, maxEntries = DEFAULT_WALK_LIMITS.maxEntries) {
  const report: WalkReport = { volumes: [], warnings: [], partial: false };
  const paths: string[] = [];
  for await (const batch of walkFileSystem(fs, 'vol', report, DEFAULT_WALK_LIMITS, { left: maxEntries, exceeded: false })) {
    paths.push(...batch.map((e) => e.path));
  }
  return { paths, report };
}

test('folders listed ahead: walk order and warnings unchanged, several listings in flight, none left after', async () => {
  const { fs, state } = fakeFs();
  const { paths, report } = await walk(fs);
  const expected: string[] = [];
  for (let i = 0; i < 10; i++) {
    expected.push(`/d${i}`);
    if (i !== 3 && i !== 7) expected.push(`/d${i}/a`, `/d${i}/b`, `/d${i}/c`);
  }
  expected.push('/z');
  expect(paths).toEqual(expected);
  // d7 failed long before d3 (listed ahead while d3 was slow), yet the warnings keep the walk's order.
  expect(report.warnings).toEqual(['vol: /d3: folder unreadable: boom /d3', 'vol: /d7: folder unreadable: boom /d7']);
  expect(report.partial).toBe(true);
  expect(state.maxInFlight).toBeGreaterThan(1);
  expect(state.maxInFlight).toBeLessThanOrEqual(1 + 4);
  expect(state.calls).toBe(11);
  expect(state.inFlight).toBe(0);
});

test('a walk stopped by its entry budget leaves no listing running', async () => {
  const { fs, state } = fakeFs();
  const { paths } = await walk(fs, 5);
  expect(paths).toEqual(['/d0', '/d0/a', '/d0/b', '/d0/c', '/d1']);
  expect(state.inFlight).toBe(0);
});
