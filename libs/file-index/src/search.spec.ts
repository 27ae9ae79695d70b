import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FsStorage } from '@vmkeep/repository';
import { SearchPatternError } from './errors';
import { encodePage } from './page';
import { compileMatcher, searchPoints } from './search';
import { FileIndexStore } from './store';
import type { IndexEntry } from './types';

const e = (p: string, size = 1, mtimeMs = 1000): IndexEntry => ({ volume: 'disk-1:0', path: p, type: 'file', size, mtimeMs });
const names = (pattern: string, list: string[], ignoreCase?: boolean) =>
  list.filter((p) => compileMatcher(pattern, { ignoreCase })(e(p)));

describe('compileMatcher', () => {
  const paths = ['/etc/app.conf', '/etc/nginx/nginx.conf', '/home/Alice/Report.DOCX', '/var/log/app.log', '/etc/a.b'];

  it('matches substrings of the name, case-insensitive by default', () => {
    expect(names('app', paths)).toEqual(['/etc/app.conf', '/var/log/app.log']);
    expect(names('report', paths)).toEqual(['/home/Alice/Report.DOCX']);
    expect(names('report', paths, false)).toEqual([]);
    expect(names('etc', paths)).toEqual([]); // folders of the path are not the name
  });

  it('matches globs against the whole name, or the path when the pattern has "/"', () => {
    expect(names('*.conf', paths)).toEqual(['/etc/app.conf', '/etc/nginx/nginx.conf']);
    expect(names('?.b', paths)).toEqual(['/etc/a.b']);
    expect(names('[ab]pp.*', paths)).toEqual(['/etc/app.conf', '/var/log/app.log']);
    expect(names('[!a]*', paths)).toEqual(['/etc/nginx/nginx.conf', '/home/Alice/Report.DOCX']);
    expect(names('/etc/*.conf', paths)).toEqual(['/etc/app.conf']);
    expect(names('/etc/**.conf', paths)).toEqual(['/etc/app.conf', '/etc/nginx/nginx.conf']);
    expect(names('nginx/*.conf', paths)).toEqual(['/etc/nginx/nginx.conf']);
    expect(names('a.b', ['/etc/a.b', '/etc/axb'])).toEqual(['/etc/a.b']); // "." is literal
  });

  it('refuses unusable patterns with a typed error', () => {
    expect(() => compileMatcher('')).toThrow(SearchPatternError);
    expect(() => compileMatcher('[abc')).toThrow(/unbalanced/);
    expect(() => compileMatcher('x'.repeat(2000))).toThrow(SearchPatternError);
  });
});

describe('searchPoints', () => {
  let dir: string;
  let store: FileIndexStore;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-file-index-spec-'));
    store = new FileIndexStore(new FsStorage(dir));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function point(pointId: string, pages: IndexEntry[][]): Promise<void> {
    const refs = [];
    for (const list of pages) {
      const page = encodePage(list);
      await store.putPage(page);
      refs.push({ id: page.id, entries: page.entries });
    }
    const entries = refs.reduce((n, r) => n + r.entries, 0);
    await store.putPoint({ version: 1, pointId, indexedAt: new Date(0).toISOString(), pages: refs, entries, volumes: [], warnings: [], partial: false });
  }

  it('groups versions per path, lists the points of each, and decodes shared pages once', async () => {
    const shared = [e('/a/keep.txt', 5, 10), e('/a/other.bin', 9, 10)];
    await point('p1', [shared, [e('/b/notes.txt', 1, 100)]]);
    await point('p2', [shared, [e('/b/notes.txt', 2, 200), e('/b/new.txt', 3, 300)]]);
    await point('p3', [shared, [e('/b/notes.txt', 2, 200)]]);
    const result = await searchPoints(store, ['p1', 'p2', 'p3', 'p4'], '*.txt');
    expect(result.unindexedPoints).toEqual(['p4']);
    expect(result.pagesRead).toBe(4);
    expect(result.hits).toEqual([
      { volume: 'disk-1:0', path: '/a/keep.txt', versions: [{ type: 'file', size: 5, mtimeMs: 10, points: ['p1', 'p2', 'p3'] }] },
      { volume: 'disk-1:0', path: '/b/new.txt', versions: [{ type: 'file', size: 3, mtimeMs: 300, points: ['p2'] }] },
      {
        volume: 'disk-1:0',
        path: '/b/notes.txt',
        versions: [
          { type: 'file', size: 1, mtimeMs: 100, points: ['p1'] },
          { type: 'file', size: 2, mtimeMs: 200, points: ['p2', 'p3'] },
        ],
      },
    ]);
    const limited = await searchPoints(store, ['p1', 'p2'], '*.txt', { limit: 1 });
    expect(limited).toMatchObject({ truncated: true, hits: [{ path: '/a/keep.txt' }] });
  });

  it('drops records of deleted points and their unreferenced pages after the grace period', async () => {
    await point('p1', [[e('/only-in-p1')], [e('/shared')]]);
    await point('p2', [[e('/shared')]]);
    const fresh = await store.collectGarbage(['p2']);
    expect(fresh).toEqual({ pointsRemoved: 1, pagesRemoved: 0, pagesKept: 2 });
    const swept = await store.collectGarbage(['p2'], { graceMs: -60_000 });
    expect(swept).toEqual({ pointsRemoved: 0, pagesRemoved: 1, pagesKept: 1 });
    expect(await store.listPoints()).toEqual(['p2']);
    expect((await searchPoints(store, ['p2'], 'shared')).hits).toHaveLength(1);
  });
});
