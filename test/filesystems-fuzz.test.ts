/**
 * Mutation fuzz of the ext, FAT and exFAT readers: small real images (ext4 64-bit with 1 KiB blocks, 4 groups and
 * metadata_csum, ext4 with inline_data without metadata_csum, ext2 with indirect blocks; FAT12 and FAT32 made by
 * mkfs.fat + mcopy; exFAT made by mkfs.exfat and filled by our helper) get 1–4 mutations each —
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
import { FileSystem, openFileSystem } from '@vmkeep/filesystems';
import { Rng } from './peers/fuzz-mutate';
import { makeExfat, makeFat, MiB, run, seededWrite } from './peers/fs-images';
import { leField, Mutation, mutateOnce, PatchedDisk, runFuzzCases, walkTree } from './peers/fs-fuzz';

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
  const fsys = await openFileSystem(new PatchedDisk(bytes, new Map(), READ_BUDGET));
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
    // Without metadata_csum, so mutations reach the field checks instead of stopping at a checksum (the 64-bit seed has it).
    await makeSeed('ext4-inline', tree, ['-t', 'ext4', '-b', '4096', '-O', 'inline_data,^metadata_csum']),
    await makeSeed('ext2-1k', tree, ['-t', 'ext2', '-b', '1024', '-g', '1024']),
    await makeFatSeed(12, tree, 2, 1),
    await makeFatSeed(32, tree, 34, 1),
    await makeExfatSeed(tree),
  ];
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function mutate(seed: Seed, rng: Rng): Mutation {
  const m: Mutation = { patches: new Map(), steps: [] };
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) {
    // Superblock and group descriptors (the first regions) a third of the time, an inode half, anywhere the rest.
    const r = rng.u32() / 2 ** 32;
    const [start, length] = r < 0.1 ? [0, seed.bytes.length] : r < 0.4 ? rng.pick(seed.regions.slice(0, 2)) : rng.pick(seed.regions.slice(2));
    mutateOnce(seed.bytes, m, rng, start, length, leField);
  }
  return m;
}

/** Walks the whole (possibly damaged) tree within bounds. */
const exercise = (fsys: FileSystem) => walkTree(fsys, { entries: 400, page: 200 });

test('the seed images walk cleanly', async () => {
  for (const seed of seeds) {
    const fsys = await openFileSystem(new PatchedDisk(seed.bytes, new Map(), READ_BUDGET));
    await exercise(fsys);
    expect({ seed: seed.name, dirty: fsys.dirty, size: fsys.size }).toEqual({ seed: seed.name, dirty: false, size: seed.bytes.length });
    expect((await fsys.readdir('/many', { limit: 1000 })).entries).toHaveLength(60);
  }
});

test(`${CASES} mutated ext, FAT and exFAT images end in success or a typed error, within time and read budgets`, async () => {
  const limits = { seed: SEED, cases: CASES, caseLimitMs: CASE_LIMIT_MS, readBudget: READ_BUDGET };
  const { only, ran, failures, outcomes, heapGrowth, slowest } = await runFuzzCases({ ...limits, seeds, mutate, walk: exercise, outcome: (structure, name) => structure?.replace(/"[^"]*"/g, 'PATH').replace(/\d+/g, 'N') ?? name });
  expect(failures.slice(0, 20).join('\n')).toBe('');
  expect(heapGrowth).toBeLessThan(256 * MiB);
  if (!only) {
    // The mutations reach past the superblock checks: many cases open and fail deeper, many still succeed.
    expect(outcomes.ok).toBeGreaterThan(CASES / 10);
    expect(Object.keys(outcomes).length).toBeGreaterThan(8);
  }
  process.stdout.write(`fs fuzz: ${ran} cases, slowest ${slowest} ms, outcomes ${JSON.stringify(outcomes)}\n`);
});
