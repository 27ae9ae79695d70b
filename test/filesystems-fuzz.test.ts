/**
 * Mutation fuzz of the ext, FAT and exFAT readers: small real images (ext4 64-bit with 1 KiB blocks and 4 groups,
 * ext4 with inline_data, ext2 with indirect blocks; FAT12 and FAT32 made by mkfs.fat + mcopy; exFAT made by
 * mkfs.exfat and filled by our helper) get 1–4 mutations each —
 * bit flips, random bytes, 16/32-bit fields set to boundary values, 16-byte splices — aimed at the superblock,
 * the group descriptors and every inode in use (located by dumpe2fs), at the (ex)FAT boot sector, FAT and root
 * folder, and now and then anywhere. Each case opens the file system and walks it (readdir, stat,
 * readlink, reads at both ends of every file and its extents) within a budget. Every case must end in success or
 * a typed error (DiskError / FileSystemError / PathError); any other exception, a case over the time limit or a
 * read beyond the byte budget fails the test with its case number.
 *
 * Replay: VMKEEP_FUZZ_SEED=<seed> VMKEEP_FUZZ_CASES=<n>[,<n>...] npx jest test/filesystems-fuzz
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkRange, Disk, DiskError, Extent } from '@vmkeep/disk';
import { FileSystem, openFileSystem, PathError } from '@vmkeep/filesystems';
import { caseRng, Rng } from './peers/fuzz-mutate';
import { makeExfat, makeFat, MiB, run, seededWrite } from './peers/fs-images';

const SEED = Number(process.env.VMKEEP_FUZZ_SEED ?? 0x0e47f522);
const CASES = 3000;
const CASE_LIMIT_MS = 3000;
const READ_BUDGET = 48 * MiB;

interface Seed {
  name: string;
  bytes: Buffer;
  /** [offset, length] of the superblock, group descriptors and inode tables. */
  regions: [number, number][];
}

/** A Disk over a shared base image with a few patched bytes, counting what is read. */
class PatchedDisk implements Disk {
  bytesRead = 0;
  constructor(
    private readonly base: Buffer,
    private readonly patches: Map<number, number>,
  ) {}
  get size(): number {
    return this.base.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, 'fuzz', offset, length);
    this.bytesRead += length;
    if (this.bytesRead > READ_BUDGET) throw new Error(`read budget of ${READ_BUDGET} bytes exceeded`);
    const out = Buffer.from(this.base.subarray(offset, offset + length));
    for (const [at, value] of this.patches) if (at >= offset && at < offset + length) out[at - offset] = value;
    return out;
  }
  async extents(): Promise<Extent[]> {
    return [{ offset: 0, length: this.base.length }];
  }
  async close(): Promise<void> {}
}

let dir: string;
let seeds: Seed[];

async function makeSeed(name: string, tree: string, args: string[]): Promise<Seed> {
  const file = path.join(dir, `${name}.img`);
  await run('mke2fs', ['-q', '-F', ...args, '-d', tree, file, '4M']);
  const dump = await run('dumpe2fs', [file], [0, 1]);
  const blockSize = Number(/Block size:\s+(\d+)/.exec(dump)![1]);
  const regions: [number, number][] = [[1024, 1024]];
  for (const m of dump.matchAll(/Group descriptors at (\d+)-(\d+)/g)) regions.push([Number(m[1]) * blockSize, (Number(m[2]) - Number(m[1]) + 1) * blockSize]);
  const tables = [...dump.matchAll(/Inode table at (\d+)-(\d+)/g)].map((m) => Number(m[1]) * blockSize);
  const perGroup = Number(/Inodes per group:\s+(\d+)/.exec(dump)![1]);
  const inodeSize = Number(/Inode size:\s+(\d+)/.exec(dump)![1]);
  // The inodes in use (found by walking the pristine image), each its own target, plus the reserved ones.
  const bytes = await fs.readFile(file);
  const fsys = await openFileSystem(new PatchedDisk(bytes, new Map()));
  const inodes = new Set([2, 7, 8, 11]);
  const walk = async (p: string): Promise<void> => {
    for (const e of (await fsys.readdir(p, { limit: 1000 })).entries) {
      inodes.add(e.stat.inode);
      if (e.stat.type === 'directory') await walk(`${p === '/' ? '' : p}/${e.name}`);
    }
  };
  await walk('/');
  for (const ino of inodes) {
    const g = Math.floor((ino - 1) / perGroup);
    regions.push([tables[g] + ((ino - 1) % perGroup) * inodeSize, inodeSize]);
  }
  return { name, bytes, regions };
}

async function makeFatSeed(bits: 12 | 32, tree: string, sizeMiB: number, spc: number): Promise<Seed> {
  const fatTree = path.join(dir, 'fat-tree');
  await fs.rm(fatTree, { recursive: true, force: true });
  await fs.cp(tree, fatTree, { recursive: true, filter: (src) => !/-link$/.test(src) });
  const file = await makeFat(path.join(dir, `fat${bits}.img`), fatTree, bits, sizeMiB, spc);
  const bytes = await fs.readFile(file);
  const bps = bytes.readUInt16LE(11);
  const fatStart = bytes.readUInt16LE(14) * bps;
  const fatSectors = bytes.readUInt16LE(22) || bytes.readUInt32LE(36);
  const rootStart = fatStart + bytes[16] * fatSectors * bps;
  // Boot sector, start of the FAT, then the root folder (fixed on FAT12; the first data cluster on FAT32).
  return { name: `fat${bits}`, bytes, regions: [[0, 512], [fatStart, 1024], [rootStart, 4096]] };
}

async function makeExfatSeed(tree: string): Promise<Seed> {
  const exTree = path.join(dir, 'exfat-tree');
  await fs.cp(tree, exTree, { recursive: true, filter: (src) => !/-link$/.test(src) });
  const bytes = await fs.readFile(await makeExfat(path.join(dir, 'exfat.img'), exTree, 8));
  const bps = 2 ** bytes[108];
  const cs = bps * 2 ** bytes[109];
  const heap = bytes.readUInt32LE(88) * bps;
  const root = heap + (bytes.readUInt32LE(96) - 2) * cs;
  // Boot sector, start of the FAT, then the root folder's entry sets.
  return { name: 'exfat', bytes, regions: [[0, 512], [bytes.readUInt32LE(80) * bps, 1024], [root, cs]] };
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-fs-fuzz-'));
  const tree = path.join(dir, 'tree');
  await seededWrite(tree);
  seeds = [
    await makeSeed('ext4-64bit-1k', tree, ['-t', 'ext4', '-b', '1024', '-g', '1024', '-O', '64bit']),
    await makeSeed('ext4-inline', tree, ['-t', 'ext4', '-b', '4096', '-O', 'inline_data']),
    await makeSeed('ext2-1k', tree, ['-t', 'ext2', '-b', '1024', '-g', '1024']),
    await makeFatSeed(12, tree, 2, 1),
    await makeFatSeed(32, tree, 34, 1),
    await makeExfatSeed(tree),
  ];
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const BOUNDARY = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

function mutate(seed: Seed, rng: Rng): { patches: Map<number, number>; steps: string[] } {
  const patches = new Map<number, number>();
  const steps: string[] = [];
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) {
    // Superblock and group descriptors (the first regions) a third of the time, an inode half, anywhere the rest.
    const r = rng.u32() / 2 ** 32;
    const [start, length] = r < 0.1 ? [0, seed.bytes.length] : r < 0.4 ? rng.pick(seed.regions.slice(0, 2)) : rng.pick(seed.regions.slice(2));
    const at = start + rng.int(length);
    const kind = rng.int(4);
    if (kind === 0) {
      const bit = rng.int(8);
      patches.set(at, (patches.get(at) ?? seed.bytes[at]) ^ (1 << bit));
      steps.push(`flip ${at}:${bit}`);
    } else if (kind === 1) {
      const v = rng.int(256);
      patches.set(at, v);
      steps.push(`byte ${at}=${v}`);
    } else if (kind === 2) {
      const width = rng.chance(0.5) ? 2 : 4;
      const aligned = at - (at % width);
      const v = rng.pick(BOUNDARY) & (width === 2 ? 0xffff : 0xffffffff);
      for (let b = 0; b < width; b++) patches.set(aligned + b, (v >>> (8 * b)) & 0xff);
      steps.push(`u${width * 8} ${aligned}=${v}`);
    } else {
      const from = start + rng.int(Math.max(1, length - 16));
      for (let b = 0; b < 16 && at + b < seed.bytes.length; b++) patches.set(at + b, seed.bytes[from + b]);
      steps.push(`splice ${from}->${at}`);
    }
  }
  return { patches, steps };
}

/** Walks the whole (possibly damaged) tree within bounds; directory loops are cut by inode number. */
async function exercise(fsys: FileSystem): Promise<void> {
  const seen = new Set<number>();
  const queue = ['/'];
  let entries = 0;
  while (queue.length && entries < 400) {
    const dirPath = queue.shift()!;
    const page = await fsys.readdir(dirPath, { limit: 200 });
    for (const e of page.entries) {
      entries++;
      const p = dirPath === '/' ? `/${e.name}` : `${dirPath}/${e.name}`;
      if (e.name.includes('/') || e.name === '' || e.name === '.' || e.name === '..') continue;
      await fsys.stat(p);
      if (e.stat.type === 'directory') {
        if (!seen.has(e.stat.inode)) queue.push(p);
        seen.add(e.stat.inode);
      } else if (e.stat.type === 'symlink') {
        await fsys.readlink(p);
      } else if (e.stat.type === 'file') {
        const file = await fsys.open(p);
        await file.extents();
        await file.read(0, Math.min(file.size, 65536));
        if (file.size > 65536) await file.read(file.size - 65536, 65536);
      }
    }
  }
}

test('the seed images walk cleanly', async () => {
  for (const seed of seeds) {
    const fsys = await openFileSystem(new PatchedDisk(seed.bytes, new Map()));
    await exercise(fsys);
    expect({ seed: seed.name, dirty: fsys.dirty, size: fsys.size }).toEqual({ seed: seed.name, dirty: false, size: seed.bytes.length });
    expect((await fsys.readdir('/many', { limit: 1000 })).entries).toHaveLength(60);
  }
});

test(`${CASES} mutated ext, FAT and exFAT images end in success or a typed error, within time and read budgets`, async () => {
  const only = process.env.VMKEEP_FUZZ_CASES?.split(',').map(Number);
  const cases = only ?? Array.from({ length: CASES }, (_, i) => i);
  const failures: string[] = [];
  const outcomes: Record<string, number> = {};
  const heapBefore = process.memoryUsage().heapUsed;
  let slowest = 0;
  for (const caseNo of cases) {
    const rng = caseRng(SEED, caseNo);
    const seed = seeds[caseNo % seeds.length];
    const { patches, steps } = mutate(seed, rng);
    const started = Date.now();
    try {
      const disk = new PatchedDisk(seed.bytes, patches);
      await exercise(await openFileSystem(disk));
      outcomes.ok = (outcomes.ok ?? 0) + 1;
    } catch (e) {
      if (e instanceof DiskError || e instanceof PathError) {
        const key = (e as { structure?: string }).structure?.replace(/"[^"]*"/g, 'PATH').replace(/\d+/g, 'N') ?? e.name;
        outcomes[key] = (outcomes[key] ?? 0) + 1;
      } else {
        failures.push(`case ${caseNo} (seed ${SEED}, ${seed.name}): ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}\n  mutations: ${steps.join('; ')}`);
      }
    }
    const took = Date.now() - started;
    slowest = Math.max(slowest, took);
    if (took > CASE_LIMIT_MS) failures.push(`case ${caseNo} (${seed.name}) took ${took} ms; mutations: ${steps.join('; ')}`);
  }
  const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
  expect(failures.slice(0, 20).join('\n')).toBe('');
  expect(heapGrowth).toBeLessThan(256 * MiB);
  if (!only) {
    // The mutations reach past the superblock checks: many cases open and fail deeper, many still succeed.
    expect(outcomes.ok).toBeGreaterThan(CASES / 10);
    expect(Object.keys(outcomes).length).toBeGreaterThan(8);
  }
  process.stdout.write(`fs fuzz: ${cases.length} cases, slowest ${slowest} ms, outcomes ${JSON.stringify(outcomes)}\n`);
});
