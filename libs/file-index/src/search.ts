/**
 * Search across restore points: name globs or substrings, matched against the file name (or the whole path
 * when the pattern has a "/"). Every distinct page is decoded once, however many points share it, so a search
 * costs what the churn stored, not points × files.
 */
import { SearchPatternError } from './errors';
import type { FileIndexStore } from './store';
import type { IndexEntry, IndexedType } from './types';

export interface MatchOptions {
  /** Default true. */
  ignoreCase?: boolean;
}

const GLOB_CHARS = /[*?[]/;
const MAX_PATTERN = 1024;

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Turns a glob into an anchored RegExp: `*` (no "/"), `**` (anything), `?` (one character), `[a-z]`, `[!x]`. */
function globToRegExp(glob: string, flags: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        out += '.*';
        i++;
      } else {
        out += '[^/]*';
      }
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) throw new SearchPatternError(`unbalanced "[" in pattern ${JSON.stringify(glob)}`);
      let body = glob.slice(i + 1, end);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      out += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else {
      out += escapeRegExp(c);
    }
  }
  try {
    return new RegExp(`^${out}$`, flags);
  } catch {
    throw new SearchPatternError(`pattern ${JSON.stringify(glob)} has an invalid character class`);
  }
}

/** A predicate for entries: glob when the pattern has `*`, `?` or `[`, substring otherwise. */
export function compileMatcher(pattern: string, opts: MatchOptions = {}): (entry: IndexEntry) => boolean {
  if (typeof pattern !== 'string' || pattern.length === 0) throw new SearchPatternError('the search pattern is empty');
  if (pattern.length > MAX_PATTERN) throw new SearchPatternError(`the search pattern is longer than ${MAX_PATTERN} characters`);
  if (pattern.includes('\0')) throw new SearchPatternError('the search pattern contains NUL');
  const ignoreCase = opts.ignoreCase ?? true;
  const wholePath = pattern.includes('/');
  const subject = (e: IndexEntry) => (wholePath ? e.path : e.path.slice(e.path.lastIndexOf('/') + 1));
  if (GLOB_CHARS.test(pattern)) {
    // A glob with a "/" but no leading one matches at any depth ("etc/*.conf" finds "/etc/x.conf").
    const glob = wholePath && !pattern.startsWith('/') ? `**/${pattern}` : pattern;
    const re = globToRegExp(glob, ignoreCase ? 'iu' : 'u');
    return (e) => re.test(subject(e));
  }
  if (ignoreCase) {
    const needle = pattern.toLowerCase();
    return (e) => subject(e).toLowerCase().includes(needle);
  }
  return (e) => subject(e).includes(pattern);
}

/** One version of a path: the points (in the order searched) where it has this type, size and mtime. */
export interface FileVersion {
  type: IndexedType;
  size: number;
  mtimeMs: number;
  points: string[];
}

export interface FileHit {
  volume: string;
  path: string;
  versions: FileVersion[];
}

export interface SearchOptions extends MatchOptions {
  /** Most distinct paths returned (default 1000); `truncated` says when more matched. */
  limit?: number;
  /** Only entries of this type. */
  type?: IndexedType;
  signal?: AbortSignal;
}

export interface SearchResult {
  hits: FileHit[];
  truncated: boolean;
  /** Points that have no index (indexing off, failed, or older than the index). */
  unindexedPoints: string[];
  /** Distinct pages decoded. */
  pagesRead: number;
}

/** Searches the indexes of `pointIds` (give them oldest first: versions list points in that order). */
export async function searchPoints(
  store: FileIndexStore,
  pointIds: readonly string[],
  pattern: string,
  opts: SearchOptions = {},
): Promise<SearchResult> {
  const match = compileMatcher(pattern, opts);
  const limit = Math.max(1, Math.min(opts.limit ?? 1000, 100_000));
  const matchesOfPage = new Map<string, IndexEntry[]>();
  const hits = new Map<string, FileHit>();
  const result: SearchResult = { hits: [], truncated: false, unindexedPoints: [], pagesRead: 0 };
  for (const pointId of pointIds) {
    opts.signal?.throwIfAborted();
    const record = await store.getPoint(pointId);
    if (!record) {
      result.unindexedPoints.push(pointId);
      continue;
    }
    for (const page of record.pages) {
      let matches = matchesOfPage.get(page.id);
      if (!matches) {
        const entries = await store.getPage(page.id);
        result.pagesRead++;
        matches = entries.filter((e) => (!opts.type || e.type === opts.type) && match(e));
        matchesOfPage.set(page.id, matches);
      }
      for (const e of matches) addVersion(hits, e, pointId, limit, result);
    }
  }
  result.hits = [...hits.values()].sort((a, b) => compare(a.volume, b.volume) || compare(a.path, b.path));
  return result;
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function addVersion(hits: Map<string, FileHit>, e: IndexEntry, pointId: string, limit: number, result: SearchResult): void {
  const key = `${e.volume}\0${e.path}`;
  let hit = hits.get(key);
  if (!hit) {
    if (hits.size >= limit) {
      result.truncated = true;
      return;
    }
    hit = { volume: e.volume, path: e.path, versions: [] };
    hits.set(key, hit);
  }
  let version = hit.versions.find((v) => v.type === e.type && v.size === e.size && v.mtimeMs === e.mtimeMs);
  if (!version) {
    version = { type: e.type, size: e.size, mtimeMs: e.mtimeMs, points: [] };
    hit.versions.push(version);
  }
  if (version.points[version.points.length - 1] !== pointId) version.points.push(pointId);
}
