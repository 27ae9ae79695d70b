/**
 * Mutation fuzz of the XFS reader: two small real images (4 KiB blocks; 1 KiB blocks with 4 KiB directory blocks),
 * each with short-form, block and B+tree-fork folders and local and remote symlinks, get 1–4 mutations — bit
 * flips, random bytes, 16/32/64-bit fields set to boundary values, 16-byte splices — aimed at the superblock, the
 * inodes in use, directory data blocks, B+tree blocks, the remote symlink block and the head of the log (all
 * located with xfs_db), now and then anywhere. As nearly every XFS structure carries a CRC-32C, three cases in
 * four re-seal the CRCs of what they touched, so the mutations reach the checks behind the CRC. Each case opens
 * the file system and walks it within a budget; it must end in success or a typed error (DiskError /
 * FileSystemError / PathError), within the time and read budgets.
 *
 * Replay: VMKEEP_FUZZ_SEED=<seed> VMKEEP_FUZZ_CASES=<n>[,<n>...] npx jest test/filesystems-xfs-fuzz
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32c } from '@vmkeep/disk-formats';
import { FileSystem, openFileSystem } from '@vmkeep/filesystems';
import { seededBytes } from './peers/disk-images';
import { Rng } from './peers/fuzz-mutate';
import { FieldWriter, Mutation, mutateOnce, PatchedDisk, runFuzzCases, walkTree } from './peers/fs-fuzz';
import { MiB, seededWrite } from './peers/fs-images';
import { makeXfs, xfsDb } from './peers/xfs-images';

const SEED = Number(process.env.VMKEEP_FUZZ_SEED ?? 0x0f5c2e11);
const CASES = 1200;
const CASE_LIMIT_MS = 3000;
const READ_BUDGET = 48 * MiB;

/** A structure the mutations aim at; `crcAt` is the offset of its CRC-32C inside it, when it has one. */
interface Region {
  offset: number;
  length: number;
  crcAt?: number;
}

interface Seed {
  name: string;
  bytes: Buffer;
  regions: Region[];
}

let dir: string;
let seeds: Seed[];

async function makeSeed(name: string, tree: string, blockSize: number, dirBlockSize: number): Promise<Seed> {
  const file = await makeXfs(path.join(dir, `${name}.img`), tree, { sizeMiB: 32, blockSize, dirBlockSize });
  const sb = await xfsDb(file, ['sb 0', 'print logstart agblocks agblklog inopblog inodesize sectsize']);
  const field = (n: string) => Number(new RegExp(`^${n} = (\\d+)$`, 'm').exec(sb)![1]);
  const [agblocks, agblklog, inopblog, inodeSize] = [field('agblocks'), field('agblklog'), field('inopblog'), field('inodesize')];
  const linear = (fsb: number) => Math.floor(fsb / 2 ** agblklog) * agblocks + (fsb % 2 ** agblklog);
  const inodeAt = (ino: number) => linear(Math.floor(ino / 2 ** inopblog)) * blockSize + (ino % 2 ** inopblog) * inodeSize;
  const regions: Region[] = [
    { offset: 0, length: field('sectsize'), crcAt: 224 },
    { offset: linear(field('logstart')) * blockSize, length: 1024 },
  ];
  const leafBlock = (32 * 1024 ** 3) / blockSize;
  for (const p of ['/', '/sub', '/many', '/frag', '/hello.txt', '/file.bin', '/islands', '/fast-link', '/slow-link', '/remote-link']) {
    const text = await xfsDb(file, [`path ${p}`, 'print v3.inumber core.format', 'bmap']);
    regions.push({ offset: inodeAt(Number(/v3.inumber = (\d+)/.exec(text)![1])), length: inodeSize, crcAt: 100 });
    const isDir = p === '/' || !p.includes('.') && !p.includes('link') && p !== '/islands';
    for (const m of text.matchAll(/data offset (\d+) startblock (\d+) \(\d+\/\d+\) count (\d+)/g)) {
      const [off, fsb] = [Number(m[1]), Number(m[2])];
      if (p.endsWith('link')) regions.push({ offset: linear(fsb) * blockSize, length: blockSize, crcAt: 12 });
      if (!isDir || off >= leafBlock || off % (dirBlockSize / blockSize) !== 0) continue;
      regions.push({ offset: linear(fsb) * blockSize, length: dirBlockSize, crcAt: 4 });
    }
    if (/core.format = 3/.test(text)) {
      const ptrs = await xfsDb(file, [`path ${p}`, 'print u3.bmbt.ptrs']);
      // "ptrs[1] = 5201" for one pointer, "ptrs[1-2] = 1:5201 2:5300" for several.
      const list = /ptrs\[[\d-]+\] = (.*)$/m.exec(ptrs)![1].split(' ').map((v) => Number(v.split(':').pop()));
      for (const fsb of list) regions.push({ offset: linear(fsb) * blockSize, length: blockSize, crcAt: 64 });
    }
  }
  return { name, bytes: await fs.readFile(file), regions };
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-xfs-fuzz-'));
  const tree = path.join(dir, 'tree');
  await seededWrite(tree);
  await fs.symlink('z/'.repeat(300), path.join(tree, 'remote-link'));
  for (let i = 0; i < 1200; i++) {
    await fs.mkdir(path.join(tree, 'frag'), { recursive: true });
    await fs.writeFile(path.join(tree, 'frag', `fragmenting-entry-with-a-long-name-to-fill-blocks-${i}`), seededBytes('xfs-fuzz', `f${i}`, 700));
  }
  seeds = [await makeSeed('xfs-4k', tree, 4096, 4096), await makeSeed('xfs-1k', tree, 1024, 4096)];
}, 120_000);

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const BOUNDARY = [0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x1fffffffffffffn, 0xffffffffffffffffn];

/** XFS is big-endian: a 16-, 32- or 64-bit field, kept inside its region, set to a boundary value. */
const beField: FieldWriter = (m, rng, at, start, length) => {
  const width = rng.pick([2, 4, 8]);
  const aligned = Math.min(at - (at % width), start + length - width);
  const v = BigInt.asUintN(width * 8, rng.pick(BOUNDARY));
  for (let b = 0; b < width; b++) m.patches.set(aligned + b, Number((v >> BigInt(8 * (width - 1 - b))) & 0xffn));
  m.steps.push(`be${width * 8} ${aligned}=${v}`);
};

function mutate(seed: Seed, rng: Rng): Mutation {
  const m: Mutation = { patches: new Map(), steps: [] };
  const { patches, steps } = m;
  const touched = new Set<Region>();
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) {
    const anywhere = rng.chance(0.05);
    const region = anywhere ? { offset: 0, length: seed.bytes.length } : rng.pick(seed.regions);
    if (!anywhere) touched.add(region);
    mutateOnce(seed.bytes, m, rng, region.offset, region.length, beField);
  }
  if (rng.chance(0.75)) {
    for (const r of touched) {
      if (r.crcAt === undefined) continue;
      const copy = Buffer.from(seed.bytes.subarray(r.offset, r.offset + r.length));
      for (const [at, v] of patches) if (at >= r.offset && at < r.offset + r.length) copy[at - r.offset] = v;
      copy.writeUInt32LE(0, r.crcAt);
      const crc = crc32c(copy);
      for (let b = 0; b < 4; b++) patches.set(r.offset + r.crcAt + b, (crc >>> (8 * b)) & 0xff);
    }
    steps.push('CRCs re-sealed');
  }
  return m;
}

/** Walks the whole (possibly damaged) tree within bounds, stating and reading a sample of the entries. */
const exercise = (fsys: FileSystem) =>
  walkTree(fsys, { entries: 2000, page: 1500, statEntry: (n) => n % 50 === 0, readEntry: (n) => n < 50 || n % 100 === 0 });

test('the seed images walk cleanly', async () => {
  for (const seed of seeds) {
    const fsys = await openFileSystem(new PatchedDisk(seed.bytes, new Map(), READ_BUDGET));
    await exercise(fsys);
    expect({ seed: seed.name, type: fsys.type, dirty: fsys.dirty, size: fsys.size }).toEqual({ seed: seed.name, type: 'xfs', dirty: false, size: 32 * MiB });
    expect((await fsys.readdir('/frag', { limit: 2000 })).entries).toHaveLength(1200);
    expect(await fsys.readlink('/remote-link')).toBe('z/'.repeat(300));
    expect(seed.regions.filter((r) => r.crcAt === 64).length).toBeGreaterThan(0);
  }
});

test(`${CASES} mutated XFS images end in success or a typed error, within time and read budgets`, async () => {
  const limits = { seed: SEED, cases: CASES, caseLimitMs: CASE_LIMIT_MS, readBudget: READ_BUDGET };
  const { only, ran, failures, outcomes, heapGrowth, slowest } = await runFuzzCases({ ...limits, seeds, mutate, walk: exercise, outcome: (structure, name) => (structure ?? name).replace(/\d+/g, 'N') });
  expect(failures.slice(0, 20).join('\n')).toBe('');
  expect(heapGrowth).toBeLessThan(256 * MiB);
  if (!only) {
    // The re-sealed CRCs let mutations reach past the checksums: many cases fail deeper, many still succeed.
    expect(outcomes.ok).toBeGreaterThan(CASES / 10);
    expect(Object.keys(outcomes).length).toBeGreaterThan(8);
  }
  process.stdout.write(`xfs fuzz: ${ran} cases, slowest ${slowest} ms, outcomes ${JSON.stringify(outcomes)}\n`);
}, 120_000);
