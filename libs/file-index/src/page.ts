/**
 * Index pages: a run of sorted entries, encoded as UTF-8 lines and stored deflated under an id of the
 * uncompressed bytes: their SHA-256 in a plain repository, an HMAC-SHA256 with a key derived from the master keys
 * in an encrypted one (where the deflated body is also sealed with AES-256-GCM). Page boundaries are
 * content-defined (a hash of the entry's volume and path), so adding or removing a file changes only the page it
 * falls into; its neighbours keep their bytes and their id.
 */
import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { FileIndexError } from './errors';
import type { IndexEntry, IndexedType, IndexSealer } from './types';

/** First line of every page body. */
const HEADER = 'vmkeep-file-index-page 1';
/** Prefix of a stored page object (before the deflated body). */
const MAGIC = Buffer.from('VMKIDX1\n', 'latin1');
/** Prefix of a sealed object (page or record) of an encrypted repository's index. */
export const SEALED_MAGIC = Buffer.from('VMKIDX2\n', 'latin1');
/** A page never inflates beyond this (a damaged or hostile object cannot exhaust memory). */
const MAX_PAGE_BYTES = 32 * 1024 * 1024;

export interface PagingParams {
  /** No cut before this many entries. */
  minEntries: number;
  /** Average entries per page; a power of two (the cut mask is this minus one). */
  averageEntries: number;
  /** Always cut at this many entries. */
  maxEntries: number;
}

/**
 * About 2048 entries per page (a few KiB stored): 1,000,000 files make ~500 page objects instead of ~2000 at 512,
 * which took a third of the indexing time in put-if-absent writes (docs/benchmarks.md), while one changed file
 * still rewrites only its page. The cap (8× the average) is almost never reached by chance.
 */
export const DEFAULT_PAGING: PagingParams = { minEntries: 128, averageEntries: 2048, maxEntries: 16384 };

const TYPE_CODES: Record<IndexedType, string> = { file: 'f', directory: 'd', symlink: 'l', other: 'o' };
const CODE_TYPES: Record<string, IndexedType> = { f: 'file', d: 'directory', l: 'symlink', o: 'other' };

/** An encoded page, ready to store. */
export interface EncodedPage {
  id: string;
  entries: number;
  /** The stored object: magic + deflated body. */
  data: Buffer;
}

/** Additional data binding a sealed page to its id (a page cannot be passed off as another). */
const pageAad = (id: string) => `vmkeep-file-index-page ${id}`;

/** The page id of a body: SHA-256, or the sealer's HMAC in an encrypted repository (hex). */
function pageId(body: Buffer, sealer?: IndexSealer): string {
  return sealer ? sealer.mac(body).toString('hex') : createHash('sha256').update(body).digest('hex');
}

/** Encodes entries (already sorted) into a page; sealed (and keyed by HMAC) with `sealer`. */
export function encodePage(entries: readonly IndexEntry[], sealer?: IndexSealer): EncodedPage {
  let text = HEADER;
  let volume: string | undefined;
  let volumeJson = '';
  for (const e of entries) {
    // The JSON array [volume, path, type, size, mtimeMs], written piecewise (no array per entry; a volume's text once).
    if (e.volume !== volume) {
      volume = e.volume;
      volumeJson = JSON.stringify(volume);
    }
    text += `\n[${volumeJson},${JSON.stringify(e.path)},"${TYPE_CODES[e.type]}",${JSON.stringify(e.size)},${JSON.stringify(e.mtimeMs)}]`;
  }
  const body = Buffer.from(text, 'utf8');
  const id = pageId(body, sealer);
  // Level 1: as small as level 6 on these lines (measured: within 1 %), several times faster.
  const packed = deflateRawSync(body, { level: 1 });
  const data = sealer ? Buffer.concat([SEALED_MAGIC, sealer.seal(packed, pageAad(id))]) : Buffer.concat([MAGIC, packed]);
  return { id, entries: entries.length, data };
}

/** Whether a stored object was sealed (it belongs to an encrypted repository's index). */
export function isSealed(data: Buffer): boolean {
  return data.length >= SEALED_MAGIC.length && data.subarray(0, SEALED_MAGIC.length).equals(SEALED_MAGIC);
}

/** The error for a sealed object read without the repository's keys. */
export function encryptedError(what: string): FileIndexError {
  return new FileIndexError(`${what} is encrypted: open the repository with its passphrase to read the file index`, 'ENCRYPTED');
}

/**
 * Decodes a stored page and checks it against its id; damage is a FileIndexError PAGE_CORRUPT. With `sealer`
 * (an encrypted repository) only sealed pages are accepted; without it a sealed page is ENCRYPTED.
 */
export function decodePage(id: string, data: Buffer, sealer?: IndexSealer): IndexEntry[] {
  const corrupt = (why: string) => new FileIndexError(`index page ${id} is damaged: ${why}`, 'PAGE_CORRUPT');
  let packed: Buffer;
  if (sealer) {
    if (!isSealed(data)) throw corrupt('not sealed, in an encrypted repository');
    const opened = sealer.open(data.subarray(SEALED_MAGIC.length), pageAad(id));
    if (!opened) throw corrupt('authentication failed');
    packed = opened;
  } else {
    if (isSealed(data)) throw encryptedError(`index page ${id}`);
    if (data.length < MAGIC.length || !data.subarray(0, MAGIC.length).equals(MAGIC)) throw corrupt('bad magic');
    packed = data.subarray(MAGIC.length);
  }
  let body: Buffer;
  try {
    body = inflateRawSync(packed, { maxOutputLength: MAX_PAGE_BYTES });
  } catch (err) {
    throw corrupt(`cannot inflate (${(err as Error).message})`);
  }
  if (pageId(body, sealer) !== id) throw corrupt('content does not match its id');
  const lines = body.toString('utf8').split('\n');
  if (lines[0] !== HEADER) throw corrupt('unknown page version');
  const entries: IndexEntry[] = [];
  for (let i = 1; i < lines.length; i++) {
    let row: unknown;
    try {
      row = JSON.parse(lines[i]);
    } catch {
      throw corrupt(`line ${i + 1} is not JSON`);
    }
    if (
      !Array.isArray(row) || row.length !== 5 || typeof row[0] !== 'string' || typeof row[1] !== 'string' ||
      typeof row[2] !== 'string' || !(row[2] in CODE_TYPES) || !Number.isFinite(row[3]) || !Number.isFinite(row[4])
    ) {
      throw corrupt(`line ${i + 1} is not an entry`);
    }
    entries.push({ volume: row[0], path: row[1], type: CODE_TYPES[row[2]], size: row[3], mtimeMs: row[4] });
  }
  return entries;
}

/** 32-bit FNV-1a over the UTF-16 code units of a string (fast, stable across runs and machines). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Final avalanche so the low bits (used for the cut) depend on every character.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}

/** Cuts a sorted stream of entries into content-defined pages. */
export class PageSplitter {
  private current: IndexEntry[] = [];
  private readonly mask: number;

  constructor(private readonly params: PagingParams = DEFAULT_PAGING) {
    const { minEntries, averageEntries, maxEntries } = params;
    if (!(averageEntries > 0 && (averageEntries & (averageEntries - 1)) === 0) || minEntries < 1 || maxEntries < minEntries) {
      throw new RangeError('paging: averageEntries must be a power of two and 1 <= minEntries <= maxEntries');
    }
    this.mask = averageEntries - 1;
  }

  /** Adds an entry; returns the finished page when the entry closed one. */
  push(entry: IndexEntry): IndexEntry[] | undefined {
    this.current.push(entry);
    const n = this.current.length;
    const cut = n >= this.params.maxEntries ||
      (n >= this.params.minEntries && (fnv1a(`${entry.volume}\0${entry.path}`) & this.mask) === 0);
    if (!cut) return undefined;
    const page = this.current;
    this.current = [];
    return page;
  }

  /** The last, partial page (undefined when empty). */
  finish(): IndexEntry[] | undefined {
    const page = this.current;
    this.current = [];
    return page.length ? page : undefined;
  }
}
