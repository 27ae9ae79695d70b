/**
 * VMDK fixtures for the disk-formats tests: images written by qemu-img from a raw source, and a small builder
 * (written from the layout facts of REFERENCE.md 1.2–1.5) for what qemu cannot write: GD_AT_END
 * streamOptimized files, vmfs descriptors, vmfsSparse (COWD) and seSparse deltas.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { deflateSync } from 'node:zlib';
import { seededBytes } from './disk-images';

const execFileAsync = promisify(execFile);
export const SECTOR = 512;
export const KiB = 1024;
export const MiB = 1024 * KiB;

export interface Range {
  offset: number;
  length: number;
}

/** Runs a tool and returns its stdout. */
export async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  const { stdout } = await execFileAsync(cmd, args, { cwd, maxBuffer: 64 * MiB });
  return stdout;
}

/**
 * Source content: random runs and zero runs whose boundaries are not grain aligned, ending in a partial grain
 * (size is a multiple of 512, not of 64 KiB).
 */
export function sourceContent(seed: string, size: number): Buffer {
  const data = Buffer.alloc(size);
  const layout: [number, number][] = [
    [0, 1 * MiB + 3 * SECTOR],
    [Math.floor(size * 0.3) + 7 * SECTOR, 200 * KiB + SECTOR],
    [Math.floor(size * 0.55), 5 * SECTOR],
    [Math.floor(size * 0.8) + 11 * SECTOR, size],
  ];
  layout.forEach(([start, length], i) => {
    const end = Math.min(size, start + length);
    if (start < end) seededBytes(seed, `run${i}`, end - start).copy(data, start);
  });
  return data;
}

/** The data ranges (merged) that `qemu-img map --output=json` reports for an image. */
export async function qemuDataRanges(file: string): Promise<Range[]> {
  const map = JSON.parse(await run('qemu-img', ['map', '--output=json', file])) as { start: number; length: number; data: boolean }[];
  const out: Range[] = [];
  for (const e of map) {
    if (!e.data) continue;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === e.start) last.length += e.length;
    else out.push({ offset: e.start, length: e.length });
  }
  return out;
}

/** The virtual disk as qemu reads it (`qemu-img convert -O raw`). */
export async function qemuRead(file: string, dir: string): Promise<Buffer> {
  const out = path.join(dir, `qemu-read-${path.basename(file)}-${process.hrtime.bigint()}.raw`);
  await run('qemu-img', ['convert', '-O', 'raw', file, out]);
  try {
    return await fs.readFile(out);
  } finally {
    await fs.rm(out, { force: true });
  }
}

function u64(buf: Buffer, at: number, value: number | bigint): void {
  buf.writeBigUInt64LE(BigInt(value), at);
}

export interface DescriptorSpec {
  createType: string;
  cid?: string;
  parentCid?: string;
  parentHint?: string;
  /** Extent lines, e.g. `RW 2048 FLAT "x-flat.vmdk" 0`. */
  extents: string[];
  ddb?: Record<string, string>;
}

export function descriptorText(d: DescriptorSpec): string {
  const lines = [
    '# Disk DescriptorFile',
    'version=1',
    'encoding="UTF-8"',
    `CID=${d.cid ?? 'fffffffe'}`,
    `parentCID=${d.parentCid ?? 'ffffffff'}`,
    'isNativeSnapshot="no"',
    `createType="${d.createType}"`,
  ];
  if (d.parentHint) lines.push(`parentFileNameHint="${d.parentHint}"`);
  lines.push('', '# Extent description', ...d.extents, '', '# The Disk Data Base', '#DDB', '');
  const ddb = { adapterType: 'lsilogic', virtualHWVersion: '14', 'geometry.cylinders': '16', 'geometry.heads': '255', 'geometry.sectors': '63', ...d.ddb };
  for (const [k, v] of Object.entries(ddb)) lines.push(`ddb.${k} = "${v}"`);
  return `${lines.join('\n')}\n`;
}

export interface SparseHeaderSpec {
  version: number;
  flags: number;
  capacity: number;
  grainSectors: number;
  descriptorOffset: number;
  descriptorSectors: number;
  rgdOffset: number;
  /** -1 = GD_AT_END. */
  gdOffset: number;
  overHead: number;
}

export function sparseHeader(h: SparseHeaderSpec): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.write('KDMV', 0, 'latin1');
  b.writeUInt32LE(h.version, 4);
  b.writeUInt32LE(h.flags, 8);
  u64(b, 12, h.capacity);
  u64(b, 20, h.grainSectors);
  u64(b, 28, h.descriptorOffset);
  u64(b, 36, h.descriptorSectors);
  b.writeUInt32LE(512, 44);
  u64(b, 48, h.rgdOffset);
  u64(b, 56, h.gdOffset < 0 ? 0xffffffffffffffffn : h.gdOffset);
  u64(b, 64, h.overHead);
  Buffer.from([0x0a, 0x20, 0x0d, 0x0a]).copy(b, 73);
  b.writeUInt16LE(h.flags & 0x10000 ? 1 : 0, 77);
  return b;
}

function marker(sectors: number, type: number): Buffer {
  const b = Buffer.alloc(SECTOR);
  u64(b, 0, sectors);
  b.writeUInt32LE(0, 8);
  b.writeUInt32LE(type, 12);
  return b;
}

function padSector(buf: Buffer): Buffer {
  const pad = (SECTOR - (buf.length % SECTOR)) % SECTOR;
  return pad ? Buffer.concat([buf, Buffer.alloc(pad)]) : buf;
}

export interface StreamImage {
  image: Buffer;
  /** File offset of each stored grain's marker, by grain index. */
  grainOffsets: Map<number, number>;
}

/**
 * A true streaming streamOptimized file (layout b): header with gdOffset = GD_AT_END, embedded descriptor,
 * compressed grains with markers, GT markers + GTs, GD marker + GD, footer marker + footer, EOS. All-zero grains
 * are not stored; the last grain is compressed short when the capacity ends inside it.
 */
export function buildStreamOptimized(data: Buffer, name: string): StreamImage {
  const grainSectors = 128;
  const grainBytes = grainSectors * SECTOR;
  const capacity = Math.ceil(data.length / SECTOR);
  const gdEntries = Math.ceil(capacity / (512 * grainSectors));
  const descriptor = padSector(Buffer.from(descriptorText({ createType: 'streamOptimized', cid: '5eed0001', extents: [`RW ${capacity} SPARSE "${name}"`], ddb: { adapterType: 'ide' } })));
  const descSectors = descriptor.length / SECTOR;
  const overHead = 1 + descSectors;
  const head: SparseHeaderSpec = {
    version: 3, flags: 0x30001, capacity, grainSectors, descriptorOffset: 1, descriptorSectors: descSectors, rgdOffset: 0, gdOffset: -1, overHead,
  };
  const parts: Buffer[] = [sparseHeader(head), descriptor];
  let sector = overHead;
  const push = (b: Buffer): void => {
    parts.push(b);
    sector += b.length / SECTOR;
  };
  const gts: Uint32Array[] = Array.from({ length: gdEntries }, () => new Uint32Array(512));
  const grainOffsets = new Map<number, number>();
  for (let g = 0; g * grainBytes < data.length; g++) {
    const grain = data.subarray(g * grainBytes, Math.min(data.length, (g + 1) * grainBytes));
    if (grain.every((b) => b === 0)) continue;
    const z = deflateSync(grain);
    const m = Buffer.alloc(12);
    u64(m, 0, g * grainSectors);
    m.writeUInt32LE(z.length, 8);
    gts[Math.floor(g / 512)][g % 512] = sector;
    grainOffsets.set(g, sector * SECTOR);
    push(padSector(Buffer.concat([m, z])));
  }
  const gd = new Uint32Array(gdEntries);
  gts.forEach((gt, i) => {
    if (gt.every((v) => v === 0)) return;
    push(marker(4, 1));
    gd[i] = sector;
    push(Buffer.from(gt.buffer));
  });
  const gdBuf = padSector(Buffer.from(gd.buffer));
  push(marker(gdBuf.length / SECTOR, 2));
  const gdOffset = sector;
  push(gdBuf);
  push(marker(1, 3));
  push(sparseHeader({ ...head, gdOffset }));
  push(Buffer.alloc(SECTOR));
  return { image: Buffer.concat(parts), grainOffsets };
}

/** Sets `present` ranges (sector aligned) of `target` from `source`. */
export function overlay(target: Buffer, source: Buffer, present: Range[]): Buffer {
  const out = Buffer.from(target);
  for (const r of present) source.copy(out, r.offset, r.offset, r.offset + r.length);
  return out;
}

/**
 * A vmfsSparse (COWD) delta extent holding the sectors of `present` (sector aligned) from `data`, with
 * one-sector grains. `zero` ranges get grain table entry 1.
 */
export function buildCowd(data: Buffer, present: Range[], zero: Range[] = []): Buffer {
  const capacity = data.length / SECTOR;
  const gdEntries = Math.ceil(capacity / 4096);
  const gdSectors = Math.ceil((gdEntries * 4) / SECTOR);
  const gts = new Map<number, Uint32Array>();
  const table = (s: number): Uint32Array => {
    const t = Math.floor(s / 4096);
    let gt = gts.get(t);
    if (!gt) gts.set(t, (gt = new Uint32Array(4096)));
    return gt;
  };
  for (const r of zero) for (let s = r.offset / SECTOR; s < (r.offset + r.length) / SECTOR; s++) table(s)[s % 4096] = 1;
  const presentSectors: number[] = [];
  for (const r of present) for (let s = r.offset / SECTOR; s < (r.offset + r.length) / SECTOR; s++) presentSectors.push(s);
  presentSectors.forEach((s) => table(s));
  let next = 4 + gdSectors;
  const gd = new Uint32Array(gdEntries);
  const order = [...gts.keys()].sort((a, b) => a - b);
  for (const t of order) {
    gd[t] = next;
    next += 32;
  }
  const grains: Buffer[] = [];
  for (const s of presentSectors) {
    table(s)[s % 4096] = next++;
    grains.push(data.subarray(s * SECTOR, (s + 1) * SECTOR));
  }
  const header = Buffer.alloc(4 * SECTOR);
  header.write('COWD', 0, 'latin1');
  header.writeUInt32LE(1, 4);
  header.writeUInt32LE(3, 8);
  header.writeUInt32LE(capacity, 12);
  header.writeUInt32LE(1, 16);
  header.writeUInt32LE(4, 20);
  header.writeUInt32LE(gdEntries, 24);
  header.writeUInt32LE(next, 28);
  return Buffer.concat([header, padSector(Buffer.from(gd.buffer)), ...order.map((t) => Buffer.from(gts.get(t)!.buffer)), ...grains]);
}

export interface SeSparseSpec {
  present: Range[];
  /** Ranges (4 KiB aligned) marked as zero grains (type 2). */
  zero?: Range[];
  /** Ranges (4 KiB aligned) marked as unmapped (type 1). */
  unmapped?: Range[];
  replayJournal?: boolean;
}

/** An seSparse delta extent (4 KiB grains, 4096-entry tables) holding `present` (4 KiB aligned) from `data`. */
export function buildSeSparse(data: Buffer, spec: SeSparseSpec): Buffer {
  const grainBytes = 4096;
  const capacity = data.length / SECTOR;
  const gdEntries = Math.ceil(data.length / (4096 * grainBytes));
  const gdSectors = Math.max(1, Math.ceil((gdEntries * 8) / SECTOR));
  const entries = new Map<number, bigint>();
  const mark = (ranges: Range[] | undefined, kind: bigint): void => {
    for (const r of ranges ?? []) for (let g = r.offset / grainBytes; g < (r.offset + r.length) / grainBytes; g++) entries.set(g, kind << 60n);
  };
  mark(spec.zero, 2n);
  mark(spec.unmapped, 1n);
  const clusters: Buffer[] = [];
  for (const r of spec.present) {
    for (let g = r.offset / grainBytes; g < (r.offset + r.length) / grainBytes; g++) {
      const c = BigInt(clusters.length);
      clusters.push(data.subarray(g * grainBytes, (g + 1) * grainBytes));
      entries.set(g, (3n << 60n) | ((c & 0xfffn) << 48n) | (c >> 12n));
    }
  }
  const tableIndex = new Map<number, number>();
  for (const g of [...entries.keys()].sort((a, b) => a - b)) {
    const t = Math.floor(g / 4096);
    if (!tableIndex.has(t)) tableIndex.set(t, tableIndex.size);
  }
  const regions = {
    volatileHeader: { offset: 1, size: 1 },
    journalHeader: { offset: 2, size: 1 },
    journal: { offset: 3, size: 1 },
    grainDirectory: { offset: 4, size: gdSectors },
    grainTables: { offset: 4 + gdSectors, size: Math.max(1, tableIndex.size) * 64 },
  };
  const freeBitmap = { offset: regions.grainTables.offset + regions.grainTables.size, size: 1 };
  const backmap = { offset: freeBitmap.offset + 1, size: 1 };
  const grains = { offset: backmap.offset + 1, size: clusters.length * 8 };
  const header = Buffer.alloc(SECTOR);
  u64(header, 0, 0xcafebabe);
  u64(header, 8, 0x200000001);
  u64(header, 16, capacity);
  u64(header, 24, 8);
  u64(header, 32, 64);
  [regions.volatileHeader, regions.journalHeader, regions.journal, regions.grainDirectory, regions.grainTables, freeBitmap, backmap, grains]
    .forEach((r, i) => {
      u64(header, 80 + i * 16, r.offset);
      u64(header, 88 + i * 16, r.size);
    });
  const volatile = Buffer.alloc(SECTOR);
  u64(volatile, 0, 0xcafecafe);
  u64(volatile, 24, spec.replayJournal ? 1 : 0);
  const gd = Buffer.alloc(gdSectors * SECTOR);
  const tables = Buffer.alloc(regions.grainTables.size * SECTOR);
  for (const [t, idx] of tableIndex) gd.writeBigUInt64LE((0x10000000n << 32n) | BigInt(idx), t * 8);
  for (const [g, v] of entries) tables.writeBigUInt64LE(v, tableIndex.get(Math.floor(g / 4096))! * 64 * SECTOR + (g % 4096) * 8);
  return Buffer.concat([header, volatile, Buffer.alloc(2 * SECTOR), gd, tables, Buffer.alloc(2 * SECTOR), ...clusters]);
}

/** Reads header fields of a KDMV file for targeted corruption. */
export function kdmvFields(image: Buffer): { gdOffset: number; rgdOffset: number; grainSectors: number; descriptorOffset: number } {
  return {
    gdOffset: Number(image.readBigUInt64LE(56)),
    rgdOffset: Number(image.readBigUInt64LE(48)),
    grainSectors: Number(image.readBigUInt64LE(20)),
    descriptorOffset: Number(image.readBigUInt64LE(28)),
  };
}
