import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Repository } from '@vmkeep/repository';
import { FileIndexError } from './errors';
import { decodePage, encodePage, PageSplitter } from './page';
import type { IndexEntry, IndexSealer } from './types';

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

  describe('sealed (encrypted repository)', () => {
    let dir: string;
    let sealer: IndexSealer;
    let otherSealer: IndexSealer;

    beforeAll(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-index-page-'));
      const init = (name: string) => Repository.init(path.join(dir, name), { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: 'pw' });
      sealer = (await init('a')).subkeySealer('file-index')!;
      otherSealer = (await init('b')).subkeySealer('file-index')!;
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('keys the id with an HMAC, hides every name and round-trips', () => {
      const entries = Array.from({ length: 300 }, (_, i) => entry(i));
      const plain = encodePage(entries);
      const sealed = encodePage(entries, sealer);
      expect(sealed.id).toMatch(/^[0-9a-f]{64}$/);
      expect(sealed.id).not.toBe(plain.id);
      expect(encodePage(entries, sealer).id).toBe(sealed.id); // deterministic: equal pages still deduplicate
      expect(encodePage(entries, otherSealer).id).not.toBe(sealed.id);
      expect(sealed.data.subarray(0, 8).toString('latin1')).toBe('VMKIDX2\n');
      for (const needle of ['file-000', '/data/', 'disk-2000']) expect(sealed.data.includes(needle)).toBe(false);
      expect(decodePage(sealed.id, sealed.data, sealer)).toEqual(entries);
      expect(String(sealer)).toBe('[subkeys file-index]');
      expect(JSON.stringify({ sealer })).not.toMatch(/[0-9a-f]{32}/);
    });

    it('refuses a sealed page without keys, with other keys, under another id, or a plain page', () => {
      const a = encodePage([entry(1)], sealer);
      const b = encodePage([entry(2)], sealer);
      const code = (fn: () => unknown) => {
        try {
          fn();
        } catch (err) {
          return err instanceof FileIndexError ? err.code : String(err);
        }
        return 'no error';
      };
      expect(code(() => decodePage(a.id, a.data))).toBe('ENCRYPTED');
      expect(code(() => decodePage(a.id, a.data, otherSealer))).toBe('PAGE_CORRUPT');
      expect(code(() => decodePage(b.id, a.data, sealer))).toBe('PAGE_CORRUPT'); // swapped objects: AAD names the id
      const plain = encodePage([entry(1)]);
      expect(code(() => decodePage(plain.id, plain.data, sealer))).toBe('PAGE_CORRUPT');
    });
  });
});
