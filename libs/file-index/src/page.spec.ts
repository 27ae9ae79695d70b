import { FileIndexError } from './errors';
import { decodePage, encodePage, PageSplitter } from './page';
import type { IndexEntry } from './types';

const entry = (i: number, extra: Partial<IndexEntry> = {}): IndexEntry => ({
  volume: 'disk-2000:1',
  path: `/data/d${Math.floor(i / 100)}/file-${String(i).padStart(6, '0')}.txt`,
  type: 'file',
  size: i * 7,
  mtimeMs: 1_700_000_000_000 + i,
  ...extra,
});

function split(entries: IndexEntry[]): string[] {
  const splitter = new PageSplitter({ minEntries: 8, averageEntries: 64, maxEntries: 512 });
  const ids: string[] = [];
  for (const e of entries) {
    const page = splitter.push(e);
    if (page) ids.push(encodePage(page).id);
  }
  const last = splitter.finish();
  if (last) ids.push(encodePage(last).id);
  return ids;
}

describe('index pages', () => {
  it('round-trips entries (UTF-8 names, every type) and names the page by its content', () => {
    const entries: IndexEntry[] = [
      { volume: 'disk-2000:0', path: '/etc', type: 'directory', size: 4096, mtimeMs: 1 },
      { volume: 'disk-2000:0', path: '/etc/Grüße "quoted"\n.txt', type: 'file', size: 12, mtimeMs: 1_700_000_000_123 },
      { volume: 'disk-2000:0', path: '/link', type: 'symlink', size: 4, mtimeMs: 0 },
      { volume: 'disk-2000:0', path: '/fifo', type: 'other', size: 0, mtimeMs: -5 },
    ];
    const page = encodePage(entries);
    expect(page.id).toMatch(/^[0-9a-f]{64}$/);
    expect(page.entries).toBe(4);
    expect(decodePage(page.id, page.data)).toEqual(entries);
    expect(encodePage(entries.map((e) => ({ ...e }))).id).toBe(page.id);
    expect(encodePage([...entries.slice(0, 3), { ...entries[3], size: 1 }]).id).not.toBe(page.id);
  });

  it('refuses damaged pages with PAGE_CORRUPT', () => {
    const page = encodePage([entry(1), entry(2)]);
    const flipped = Buffer.from(page.data);
    flipped[flipped.length - 3] ^= 0x40;
    const wrongId = encodePage([entry(3)]).id;
    for (const [id, data] of [
      [page.id, flipped],
      [wrongId, page.data],
      [page.id, Buffer.from('garbage')],
    ] as const) {
      expect(() => decodePage(id, data)).toThrow(FileIndexError);
      try {
        decodePage(id, data);
      } catch (err) {
        expect((err as FileIndexError).code).toBe('PAGE_CORRUPT');
      }
    }
  });

  it('cuts pages by content: one inserted entry changes one page, the others keep their ids', () => {
    const before = Array.from({ length: 5000 }, (_, i) => entry(i * 2));
    const after = [...before];
    after.splice(2501, 0, entry(5001)); // a new file between two existing ones
    after[4000] = { ...after[4000], size: 1 }; // and one changed file
    const a = split(before);
    const b = split(after);
    expect(a.length).toBeGreaterThan(30);
    const shared = b.filter((id) => a.includes(id)).length;
    expect(b.length - shared).toBeLessThanOrEqual(3);
    expect(b.length - shared).toBeGreaterThanOrEqual(2);
  });

  it('always cuts at maxEntries and checks its parameters', () => {
    const splitter = new PageSplitter({ minEntries: 4, averageEntries: 1 << 30, maxEntries: 10 });
    const pages = Array.from({ length: 25 }, (_, i) => splitter.push(entry(i))).filter(Boolean);
    expect(pages.map((p) => p!.length)).toEqual([10, 10]);
    expect(splitter.finish()).toHaveLength(5);
    expect(() => new PageSplitter({ minEntries: 4, averageEntries: 100, maxEntries: 10 })).toThrow(RangeError);
  });
});
