/**
 * Seed images of the disk-formats fuzz test: small valid images of every format the readers parse, written by
 * qemu-img where it can (VMDK monolithicSparse / streamOptimized / monolithicFlat, VHD fixed / dynamic, VHDX
 * dynamic) and hand-built where it cannot (GD_AT_END stream, vmfsSparse (COWD) and seSparse deltas over a vmfs
 * base). Each image is held in memory with the file the fuzzer mutates, the byte ranges where its structures
 * live (mutations favour them), and the checksum fix-ups that let a mutation reach past a checksum.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { seededBytes } from './disk-images';
import { vhdLayout, vhdxLayout } from './vhd-fixtures';
import { buildCowd, buildSeSparse, buildStreamOptimized, descriptorText, kdmvFields, run, SECTOR } from './vmdk-fixtures';

export type FuzzOpener = 'vmdk' | 'vhd' | 'vhdx';

/** A structure protected by a checksum the fuzzer may recompute after mutating (so parsing goes deeper). */
export type FuzzFixup =
  | { kind: 'vhd-footer'; at: number }
  | { kind: 'vhd-dynamic-header'; at: number }
  | { kind: 'crc32c'; at: number; length: number };

export interface FuzzRange {
  offset: number;
  length: number;
}

export interface FuzzImage {
  name: string;
  opener: FuzzOpener;
  /** Every file of the image by name; `main` is opened, `target` is mutated. */
  files: Record<string, Uint8Array>;
  main: string;
  target: string;
  /** The target is a text descriptor (text edits apply to it). */
  targetIsText?: boolean;
  /** Ranges of `target` holding headers, tables and descriptors. */
  hot: FuzzRange[];
  fixups: FuzzFixup[];
  /** The virtual disk (what an unmutated open must read), as a SHA-256 and a size. */
  virtualSha256: string;
  virtualSize: number;
}

/** Virtual size of the seed images: big enough for several tables/blocks, small enough for 10,000+ cases. */
export const FUZZ_DISK_BYTES = 2 * 1024 * 1024;

/** Random runs between zero runs, boundaries not grain or block aligned. */
function content(seed: string, size: number): Buffer {
  const data = Buffer.alloc(size);
  const runs: [number, number][] = [
    [0, 70 * 1024 + 3 * SECTOR],
    [Math.floor(size * 0.35) + 9 * SECTOR, 130 * 1024],
    [Math.floor(size * 0.6), 3 * SECTOR],
    [size - 40 * 1024 - 5 * SECTOR, size],
  ];
  runs.forEach(([start, length], i) => {
    const end = Math.min(size, start + length);
    seededBytes(seed, `fuzz-run${i}`, end - start).copy(data, start);
  });
  return data;
}

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

const clampRanges = (size: number, ranges: FuzzRange[]): FuzzRange[] =>
  ranges
    .map((r) => ({ offset: Math.max(0, r.offset), length: Math.min(r.length, size - Math.max(0, r.offset)) }))
    .filter((r) => r.length > 0);

/** Header, embedded descriptor, and the first sectors of the GD, redundant GD and first grain table. */
function kdmvHot(image: Buffer): FuzzRange[] {
  const f = kdmvFields(image);
  const ranges: FuzzRange[] = [{ offset: 0, length: 512 }];
  if (f.descriptorOffset > 0) ranges.push({ offset: f.descriptorOffset * SECTOR, length: 1024 });
  for (const gd of [f.gdOffset, f.rgdOffset]) {
    if (gd <= 0 || gd * SECTOR >= image.length) continue;
    ranges.push({ offset: gd * SECTOR, length: 512 });
    const gt = image.readUInt32LE(gd * SECTOR);
    if (gt > 0 && gt * SECTOR < image.length) ranges.push({ offset: gt * SECTOR, length: 2048 });
  }
  return clampRanges(image.length, ranges);
}

/** Builds the corpus in `dir` (a temp folder the caller removes). */
export async function buildFuzzCorpus(dir: string): Promise<FuzzImage[]> {
  const size = FUZZ_DISK_BYTES;
  const data = content('fuzz', size);
  const rawFile = path.join(dir, 'seed.raw');
  await fs.writeFile(rawFile, data);
  const dataSha = sha256(data);
  const images: FuzzImage[] = [];
  const single = (name: string, opener: FuzzOpener, file: Buffer, hot: FuzzRange[], fixups: FuzzFixup[] = []): FuzzImage => ({
    name, opener, files: { [name]: file }, main: name, target: name, hot: clampRanges(file.length, hot), fixups,
    virtualSha256: dataSha, virtualSize: size,
  });
  const qemu = async (name: string, format: string, options: string): Promise<Buffer> => {
    const out = path.join(dir, name);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', format, '-o', options, rawFile, out]);
    return fs.readFile(out);
  };

  for (const sub of ['monolithicSparse', 'streamOptimized']) {
    const file = await qemu(`${sub}.vmdk`, 'vmdk', `subformat=${sub}`);
    images.push(single(`${sub}.vmdk`, 'vmdk', file, kdmvHot(file)));
  }
  const flat = await qemu('flat.vmdk', 'vmdk', 'subformat=monolithicFlat');
  images.push({
    name: 'flat.vmdk', opener: 'vmdk', main: 'flat.vmdk', target: 'flat.vmdk', targetIsText: true, hot: [{ offset: 0, length: flat.length }], fixups: [],
    files: { 'flat.vmdk': flat, 'flat-flat.vmdk': await fs.readFile(path.join(dir, 'flat-flat.vmdk')) },
    virtualSha256: dataSha, virtualSize: size,
  });
  const stream = buildStreamOptimized(data, 'gd-at-end.vmdk').image;
  const footerAt = stream.length - 3 * SECTOR;
  images.push(single('gd-at-end.vmdk', 'vmdk', stream, [...kdmvHot(stream), { offset: footerAt - SECTOR, length: 3 * SECTOR }]));

  // vmfs base (all zeros) with a COWD delta holding part of `data`, and a seSparse delta over the same base.
  const sectors = size / SECTOR;
  const present = [{ offset: 0, length: 64 * 1024 }, { offset: size - 40 * 1024, length: 40 * 1024 }];
  const expectDelta = Buffer.alloc(size);
  for (const r of present) data.copy(expectDelta, r.offset, r.offset, r.offset + r.length);
  const base = {
    'base.vmdk': Buffer.from(descriptorText({ createType: 'vmfs', cid: 'aaaa0001', extents: [`RW ${sectors} VMFS "base-flat.vmdk"`] })),
    'base-flat.vmdk': Buffer.alloc(size),
  };
  const cowd = buildCowd(data, present, [{ offset: 64 * 1024, length: 4 * SECTOR }]);
  const cowdDesc = descriptorText({ createType: 'vmfsSparse', cid: 'bbbb0001', parentCid: 'aaaa0001', parentHint: 'base.vmdk', extents: [`RW ${sectors} VMFSSPARSE "cowd-delta.vmdk"`] });
  images.push({
    name: 'cowd-delta.vmdk', opener: 'vmdk', main: 'cowd.vmdk', target: 'cowd-delta.vmdk', fixups: [],
    hot: clampRanges(cowd.length, [{ offset: 0, length: 4 * SECTOR + 512 }, { offset: 4 * SECTOR + 512, length: 1024 }]),
    files: { ...base, 'cowd.vmdk': Buffer.from(cowdDesc), 'cowd-delta.vmdk': cowd },
    virtualSha256: sha256(expectDelta), virtualSize: size,
  });
  const se = buildSeSparse(data, { present, zero: [{ offset: 64 * 1024, length: 4096 }], unmapped: [{ offset: 68 * 1024, length: 4096 }] });
  const seDesc = descriptorText({ createType: 'seSparse', cid: 'cccc0001', parentCid: 'aaaa0001', parentHint: 'base.vmdk', extents: [`RW ${sectors} SESPARSE "se-sesparse.vmdk"`] });
  images.push({
    name: 'se-sesparse.vmdk', opener: 'vmdk', main: 'se.vmdk', target: 'se-sesparse.vmdk', fixups: [],
    hot: clampRanges(se.length, [{ offset: 0, length: 6 * SECTOR }, { offset: 6 * SECTOR, length: 2048 }]),
    files: { ...base, 'se.vmdk': Buffer.from(seDesc), 'se-sesparse.vmdk': se },
    virtualSha256: sha256(expectDelta), virtualSize: size,
  });

  // VHD: the footer (end, and its copy at 0 for dynamic disks), dynamic header and BAT.
  const vhdFixed = await qemu('fixed.vhd', 'vpc', 'subformat=fixed,force_size=on');
  images.push(single('fixed.vhd', 'vhd', vhdFixed, [{ offset: vhdFixed.length - 512, length: 512 }], [{ kind: 'vhd-footer', at: vhdFixed.length - 512 }]));
  const vhdDyn = await qemu('dynamic.vhd', 'vpc', 'subformat=dynamic,force_size=on');
  const vl = vhdLayout(vhdDyn);
  images.push(single('dynamic.vhd', 'vhd', vhdDyn, [
    { offset: 0, length: 512 }, { offset: 512, length: 1024 }, { offset: vl.tableOffset, length: Math.max(512, vl.blocks * 4) },
    { offset: vhdDyn.length - 512, length: 512 },
  ], [{ kind: 'vhd-footer', at: 0 }, { kind: 'vhd-footer', at: vhdDyn.length - 512 }, { kind: 'vhd-dynamic-header', at: 512 }]));

  // VHDX: both headers, both region tables, the metadata region and the BAT.
  const vhdx = await qemu('dynamic.vhdx', 'vhdx', 'subformat=dynamic,block_size=1M,log_size=1M');
  const xl = vhdxLayout(vhdx);
  const KiB = 1024;
  images.push(single('dynamic.vhdx', 'vhdx', vhdx, [
    { offset: 0, length: 512 }, { offset: 64 * KiB, length: 256 }, { offset: 128 * KiB, length: 256 },
    { offset: 192 * KiB, length: 256 }, { offset: 256 * KiB, length: 256 }, { offset: xl.metaOffset, length: 512 },
    { offset: xl.batOffset, length: 256 },
  ], [
    { kind: 'crc32c', at: 64 * KiB, length: 4 * KiB }, { kind: 'crc32c', at: 128 * KiB, length: 4 * KiB },
    { kind: 'crc32c', at: 192 * KiB, length: 64 * KiB }, { kind: 'crc32c', at: 256 * KiB, length: 64 * KiB },
  ]));
  return images;
}
