/** Guest paths as the browse API takes them: always inside the guest file system, ".." resolved, never above "/". */
import { VmkeepError } from '@vmkeep/contracts';

/** A path a caller gave that cannot name anything inside the guest file system. */
export class GuestPathError extends VmkeepError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`invalid guest path ${JSON.stringify(path)}: ${reason}`, 'invalid');
  }
}

const MAX_PATH = 4096;

/**
 * "a/b/../c", "/a//b/." → "/a/c", "/a/b". Relative paths are taken from the root. A ".." that would leave the
 * root, a NUL or a path longer than 4096 bytes is a GuestPathError (HTTP 400).
 */
export function normalizeGuestPath(input: string | undefined): string {
  const text = input ?? '/';
  if (Buffer.byteLength(text) > MAX_PATH) throw new GuestPathError(text.slice(0, 64) + '…', 'longer than 4096 bytes');
  if (text.includes('\0')) throw new GuestPathError(text, 'contains a NUL character');
  const parts: string[] = [];
  for (const part of text.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) throw new GuestPathError(text, '".." leaves the root of the file system');
      parts.pop();
    } else {
      parts.push(part);
    }
  }
  return '/' + parts.join('/');
}

/** Joins a child name to a normalised folder path. */
export function childPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** Last component of a normalised path ("" for the root). */
export function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

// Characters Windows refuses in names, and control characters.
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARS = /[\u0000-\u001f\u007f<>:"|?*\\]/g;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;

/**
 * A name from the guest as an archive entry name component: never ".", ".." or empty, no "/", "\", NUL or
 * control characters (replaced by "_"), reserved Windows device names prefixed with "_", lone surrogates
 * (invalid UTF-8) replaced by U+FFFD.
 */
export function sanitizeEntryName(name: string): string {
  let safe = name.replace(LONE_SURROGATE, '\uFFFD').replace(/\//g, '_').replace(UNSAFE_CHARS, '_');
  if (safe === '' || safe === '.' || safe === '..') safe = `_${safe}`;
  if (RESERVED.test(safe)) safe = `_${safe}`;
  return safe;
}
