/**
 * Deterministic mutations of a seed image for the disk-formats fuzz test. Case `n` of seed `s` always draws the
 * same mutations from the same generator, so a failing case is replayed from its number alone (given the same
 * seed image; the failing input itself is also saved by the runner).
 */
import type { FuzzFixup, FuzzImage } from './fuzz-corpus';
import { fixCrc, fixVhdDynamicHeader, fixVhdFooter } from './vhd-fixtures';

/** Small fast PRNG (mulberry32) over a 32-bit state. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 2^32). */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 2 ** 32) * n);
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

/** The generator of one case: independent of every other case. */
export function caseRng(seed: number, caseNo: number): Rng {
  let h = (seed ^ Math.imul(caseNo + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return new Rng((h ^ (h >>> 16)) >>> 0);
}

/** Boundary values for integer fields; `size` (the file size) adds values just around the end of the file. */
function boundaryValues(size: number): bigint[] {
  const s = BigInt(size);
  const sectors = s / 512n;
  return [
    0n, 1n, 2n, 3n, 7n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x1ffn, 0x200n, 0x1000n, 0x10000n, 0x7fffn, 0x8000n, 0xffffn,
    0x7fffffffn, 0x80000000n, 0xfffffffen, 0xffffffffn, 0x100000000n, 0x1fffffffffffffn, 0x20000000000000n,
    0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, s, s - 1n, s + 1n, sectors, sectors - 1n, sectors + 1n,
  ];
}

function writeInt(buf: Buffer, at: number, value: bigint, width: 2 | 4 | 8, bigEndian: boolean): void {
  const v = BigInt.asUintN(width * 8, value);
  if (width === 8) {
    if (bigEndian) buf.writeBigUInt64BE(v, at);
    else buf.writeBigUInt64LE(v, at);
  } else if (width === 4) {
    if (bigEndian) buf.writeUInt32BE(Number(v), at);
    else buf.writeUInt32LE(Number(v), at);
  } else if (bigEndian) buf.writeUInt16BE(Number(v), at);
  else buf.writeUInt16LE(Number(v), at);
}

function applyFixup(buf: Buffer, f: FuzzFixup): void {
  if (f.kind === 'crc32c') {
    if (f.at + f.length <= buf.length) fixCrc(buf, f.at, f.length);
  } else if (f.kind === 'vhd-footer') {
    if (f.at + 512 <= buf.length) fixVhdFooter(buf, f.at);
  } else if (f.at + 1024 <= buf.length) {
    fixVhdDynamicHeader(buf);
  }
}

/** Words that matter in a VMDK text descriptor, and hostile replacements. */
const DESCRIPTOR_TOKENS = ['version=1', 'CID=', 'parentCID=', 'createType=', 'RW ', 'SPARSE', 'VMFS', 'FLAT', 'ZERO', '"', '\n', 'ddb.', 'parentFileNameHint='];
const DESCRIPTOR_REPLACEMENTS = [
  '', '\r\n', '\0', 'RW 18446744073709551615 ', 'RW -1 ', '"../etc/passwd"', '"/etc/passwd"', '"C:\\x"', 'VMFSSPARSE', 'SESPARSE',
  'ZERO', 'FLAT', 'version=99', 'RDONLY 9007199254740993 ZERO\n', '"\n', '=', ' 4294967296 ', 'parentFileNameHint="self"\n',
];

/** Edits a text descriptor: replaces tokens, numbers or bytes with hostile ones. */
function mutateText(buf: Buffer, rng: Rng): { data: Buffer; step: string } {
  const text = buf.toString('latin1');
  const token = rng.pick(DESCRIPTOR_TOKENS);
  let at = text.indexOf(token, rng.int(text.length));
  if (at < 0) at = text.indexOf(token);
  if (at < 0) at = rng.int(text.length);
  const replacement = rng.pick(DESCRIPTOR_REPLACEMENTS);
  const cut = rng.chance(0.5) ? token.length : rng.int(12);
  const out = text.slice(0, at) + replacement + text.slice(at + cut);
  return { data: Buffer.from(out, 'latin1'), step: `text@${at}:${JSON.stringify(replacement)}/${cut}` };
}

export interface Mutated {
  files: Record<string, Buffer>;
  /** What was done, for the failure report. */
  steps: string[];
}

/** Picks an offset: 70% inside a structure of the image, else anywhere in the file. */
function offsetIn(image: FuzzImage, size: number, rng: Rng, align = 1): number {
  if (size === 0) return 0;
  let at: number;
  if (image.hot.length > 0 && rng.chance(0.7)) {
    const r = rng.pick(image.hot);
    at = r.offset + rng.int(r.length);
  } else {
    at = rng.int(size);
  }
  at -= at % align;
  return Math.min(at, size - 1);
}

/** Applies 1–4 random mutations to the target file of `image`. */
export function mutate(image: FuzzImage, rng: Rng): Mutated {
  const files: Record<string, Buffer> = {};
  for (const [name, bytes] of Object.entries(image.files)) files[name] = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Descriptor-based images: sometimes mutate the descriptor instead of the binary target.
  const textTarget = image.main !== image.target && rng.chance(0.15) ? image.main : undefined;
  const target = textTarget ?? image.target;
  let buf: Buffer = Buffer.from(files[target]);
  const steps: string[] = [`file ${target}`];
  const isText = textTarget !== undefined || image.targetIsText === true;
  const count = 1 + rng.int(4);
  for (let i = 0; i < count; i++) {
    const size = buf.length;
    const kind = isText && rng.chance(0.6) ? 'text' : rng.pick(['flip', 'flip', 'byte', 'int', 'int', 'int', 'truncate', 'extend', 'splice', 'copy']);
    switch (kind) {
      case 'text': {
        const r = mutateText(buf, rng);
        buf = r.data;
        steps.push(r.step);
        break;
      }
      case 'flip': {
        if (size === 0) break;
        const at = offsetIn(image, size, rng);
        const bit = rng.int(8);
        buf[at] ^= 1 << bit;
        steps.push(`flip@${at}.${bit}`);
        break;
      }
      case 'byte': {
        if (size === 0) break;
        const at = offsetIn(image, size, rng);
        const value = rng.pick([0x00, 0xff, rng.int(256)]);
        const run = rng.chance(0.3) ? 1 + rng.int(64) : 1;
        buf.fill(value, at, Math.min(size, at + run));
        steps.push(`set@${at}x${run}=${value}`);
        break;
      }
      case 'int': {
        const width = rng.pick([2, 4, 4, 8, 8] as const);
        if (size < width) break;
        const at = Math.min(offsetIn(image, size, rng, rng.chance(0.8) ? width : 1), size - width);
        const bigEndian = image.opener === 'vhd' ? rng.chance(0.8) : rng.chance(0.1);
        const value = rng.chance(0.85) ? rng.pick(boundaryValues(size)) : (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
        writeInt(buf, at, value, width, bigEndian);
        steps.push(`u${width * 8}${bigEndian ? 'be' : 'le'}@${at}=0x${BigInt.asUintN(width * 8, value).toString(16)}`);
        break;
      }
      case 'truncate': {
        const keep = rng.chance(0.5) ? offsetIn(image, size, rng) : rng.int(size + 1);
        buf = buf.subarray(0, keep);
        steps.push(`truncate@${keep}`);
        break;
      }
      case 'extend': {
        const extra = rng.pick([1, 511, 512, 4096, 65536, 1 + rng.int(200_000)]);
        const fill = rng.chance(0.5) ? Buffer.alloc(extra) : Buffer.alloc(extra, rng.int(256));
        buf = Buffer.concat([buf, fill]);
        steps.push(`extend+${extra}`);
        break;
      }
      case 'splice': {
        // Delete or insert a run of bytes: everything after it moves.
        const at = offsetIn(image, size, rng);
        const n = rng.pick([1, 4, 512, 1 + rng.int(4096)]);
        buf = rng.chance(0.5)
          ? Buffer.concat([buf.subarray(0, at), buf.subarray(Math.min(size, at + n))])
          : Buffer.concat([buf.subarray(0, at), Buffer.alloc(n, rng.int(256)), buf.subarray(at)]);
        steps.push(`splice@${at}:${n}`);
        break;
      }
      case 'copy': {
        // Overwrite one place with bytes from another (a table entry or header copied elsewhere).
        if (size === 0) break;
        const from = offsetIn(image, size, rng);
        const to = offsetIn(image, size, rng);
        const n = Math.min(1 + rng.int(1024), size - from, size - to);
        buf.copyWithin(to, from, from + n);
        steps.push(`copy ${from}->${to}:${n}`);
        break;
      }
    }
  }
  if (target === image.target && image.fixups.length > 0 && rng.chance(0.5)) {
    for (const f of image.fixups) applyFixup(buf, f);
    steps.push('checksums fixed');
  }
  files[target] = buf;
  return { files, steps };
}
