/**
 * Parser of the LVM2 text metadata format ("vg0 { id = \"...\" extent_size = 8192 ... }"): sections, key = value
 * pairs, strings, integers and flat arrays, '#' comments. The text comes from a disk and is untrusted: its size,
 * the section nesting, the array lengths and the integers are bounded, duplicate keys are refused, and keys are
 * kept in Maps (no prototype tricks).
 */
import { FileSystemError } from '../errors';

export const MAX_METADATA_BYTES = 4 * 1024 * 1024;
const MAX_DEPTH = 12;
const MAX_ARRAY = 65536;

export type LvmScalar = string | number;
export type LvmValue = LvmScalar | LvmScalar[];

/** One `name { ... }` section. */
export class LvmSection {
  readonly values = new Map<string, LvmValue>();
  readonly sections = new Map<string, LvmSection>();

  constructor(
    readonly path: string,
    /** Builds the error for a missing or mistyped value of this section. */
    readonly fail: (message: string) => FileSystemError,
  ) {}

  /** A child section, or an error naming the path when it is missing. */
  section(key: string): LvmSection {
    const s = this.sections.get(key);
    if (!s) throw this.fail(`${this.path}: section "${key}" is missing`);
    return s;
  }

  str(key: string, fallback?: string): string {
    const v = this.values.get(key);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string') throw this.fail(`${this.path}.${key}: expected a string`);
    return v;
  }

  /** A non-negative safe integer, at most `max`. */
  int(key: string, max = Number.MAX_SAFE_INTEGER, fallback?: number): number {
    const v = this.values.get(key);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) {
      throw this.fail(`${this.path}.${key}: expected an integer 0..${max}, found ${JSON.stringify(v ?? null)}`);
    }
    return v;
  }

  /** An array of strings (like `status = ["READ", "WRITE"]`); missing means empty. */
  strings(key: string): string[] {
    const v = this.values.get(key);
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw this.fail(`${this.path}.${key}: expected an array of strings`);
    return v as string[];
  }

  array(key: string): LvmScalar[] {
    const v = this.values.get(key);
    if (!Array.isArray(v)) throw this.fail(`${this.path}.${key}: expected an array`);
    return v;
  }
}

/**
 * Parses metadata text into its top-level section. `offset` is where the text lies on the disk, for errors.
 * Errors are FileSystemErrors (source "lvm2", structure "VG metadata text") naming the line.
 */
export function parseLvmText(text: string, offset?: number): LvmSection {
  const failAt = (line: number | null) => (message: string) =>
    new FileSystemError('lvm2', 'VG metadata text', line === null ? message : `line ${line}: ${message}`, offset);
  if (text.length > MAX_METADATA_BYTES) throw failAt(null)(`${text.length} characters exceed the ${MAX_METADATA_BYTES}-byte limit`);
  let pos = 0;
  let line = 1;
  const fail = (message: string) => failAt(line)(message);

  type Token = { kind: 'word' | 'string' | 'punct'; text: string };
  const next = (): Token | null => {
    for (;;) {
      while (pos < text.length && /\s/.test(text[pos])) {
        if (text[pos] === '\n') line++;
        pos++;
      }
      if (text[pos] !== '#') break;
      while (pos < text.length && text[pos] !== '\n') pos++;
    }
    if (pos >= text.length) return null;
    const c = text[pos];
    if ('{}[]=,'.includes(c)) {
      pos++;
      return { kind: 'punct', text: c };
    }
    if (c === '"') {
      let out = '';
      pos++;
      for (;;) {
        if (pos >= text.length) throw fail('unterminated string');
        const ch = text[pos++];
        if (ch === '"') return { kind: 'string', text: out };
        if (ch === '\n') line++;
        if (ch === '\\') {
          if (pos >= text.length) throw fail('unterminated string');
          out += text[pos++];
        } else {
          out += ch;
        }
      }
    }
    const start = pos;
    while (pos < text.length && /[A-Za-z0-9_.+-]/.test(text[pos])) pos++;
    if (pos === start) throw fail(`unexpected character ${JSON.stringify(c)}`);
    return { kind: 'word', text: text.slice(start, pos) };
  };

  const scalar = (t: Token | null): LvmScalar => {
    if (!t) throw fail('unexpected end of text, expected a value');
    if (t.kind === 'string') return t.text;
    if (t.kind === 'word') {
      if (/^[+-]?[0-9]+$/.test(t.text)) {
        const n = Number(t.text);
        if (!Number.isSafeInteger(n)) throw fail(`integer ${t.text} is out of range`);
        return n;
      }
      if (/^[+-]?[0-9]*\.[0-9]+$/.test(t.text)) return Number(t.text);
      return t.text;
    }
    throw fail(`unexpected "${t.text}", expected a value`);
  };

  const parseBody = (section: LvmSection, depth: number, closing: boolean): void => {
    for (;;) {
      const key = next();
      if (!key) {
        if (closing) throw fail(`section "${section.path}" is not closed`);
        return;
      }
      if (key.kind === 'punct' && key.text === '}') {
        if (!closing) throw fail('unexpected "}"');
        return;
      }
      if (key.kind === 'punct') throw fail(`unexpected "${key.text}", expected a name`);
      const name = key.text;
      if (section.values.has(name) || section.sections.has(name)) throw fail(`"${name}" appears twice in ${section.path || 'the top level'}`);
      const op = next();
      if (op?.kind === 'punct' && op.text === '{') {
        if (depth >= MAX_DEPTH) throw fail(`sections nested deeper than ${MAX_DEPTH}`);
        const child = new LvmSection(section.path ? `${section.path}.${name}` : name, section.fail);
        parseBody(child, depth + 1, true);
        section.sections.set(name, child);
        continue;
      }
      if (!(op?.kind === 'punct' && op.text === '=')) throw fail(`expected "=" or "{" after "${name}"`);
      const first = next();
      if (first?.kind === 'punct' && first.text === '[') {
        const items: LvmScalar[] = [];
        for (;;) {
          let t = next();
          if (t?.kind === 'punct' && t.text === ']') break;
          if (items.length >= MAX_ARRAY) throw fail(`array "${name}" has more than ${MAX_ARRAY} items`);
          items.push(scalar(t));
          t = next();
          if (t?.kind === 'punct' && t.text === ']') break;
          if (!(t?.kind === 'punct' && t.text === ',')) throw fail(`array "${name}": expected "," or "]"`);
        }
        section.values.set(name, items);
      } else {
        section.values.set(name, scalar(first));
      }
    }
  };

  const root = new LvmSection('', failAt(null));
  parseBody(root, 0, false);
  return root;
}
