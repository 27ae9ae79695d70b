/**
 * Mutation fuzz of the NTFS reader: two real images (4 KiB and 512-byte clusters, made by mkntfs + ntfs-3g) get
 * 1–4 mutations each — bit flips, random bytes, 16/32-bit fields set to boundary values, 16-byte splices — aimed
 * at the boot sector (a fifth), the first MFT records (most) and anywhere (the rest). Each case opens the file
 * system and walks part of it (readdir, stat, readlink, reads at both ends of files, extents). Every case must end
 * in success or a typed error (DiskError / FileSystemError / PathError) within time and read budgets.
 *
 * Replay: VMKEEP_FUZZ_SEED=<seed> VMKEEP_FUZZ_CASES=<n>[,<n>...] npx jest test/filesystems-ntfs-fuzz
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileSystem, openFileSystem } from '@vmkeep/filesystems';
import { Rng } from './peers/fuzz-mutate';
import { MiB } from './peers/fs-images';
import { leField, Mutation, mutateOnce, PatchedDisk, runFuzzCases, walkTree } from './peers/fs-fuzz';
import { makeNtfs } from './peers/ntfs-images';

const SEED = Number(process.env.VMKEEP_FUZZ_SEED ?? 0x4e7f5001);
const CASES = 1200;
const CASE_LIMIT_MS = 3000;
const READ_BUDGET = 32 * MiB;

interface Seed {
  name: string;
  bytes: Buffer;
  /** [offset, length] of the boot sector and of the first MFT records. */
  boot: [number, number];
  mft: [number, number];
}

let dir: string;
let seeds: Seed[];

async function makeSeed(clusterSize: number): Promise<Seed> {
  const file = await makeNtfs(path.join(dir, `fuzz-${clusterSize}.img`), { sizeMiB: 32, clusterSize, label: 'fuzz' });
  const bytes = await fs.readFile(file);
  const mftStart = Number(bytes.readBigUInt64LE(0x30)) * clusterSize;
  return { name: `ntfs-${clusterSize}`, bytes, boot: [0, 512], mft: [mftStart, 120 * 1024] };
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-ntfs-fuzz-'));
  seeds = [await makeSeed(4096), await makeSeed(512)];
}, 60_000);

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function mutate(seed: Seed, rng: Rng): Mutation {
  const m: Mutation = { patches: new Map(), steps: [] };
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) {
    const r = rng.u32() / 2 ** 32;
    const [start, length] = r < 0.1 ? [0, seed.bytes.length] : r < 0.3 ? seed.boot : seed.mft;
    mutateOnce(seed.bytes, m, rng, start, length, leField);
  }
  return m;
}

/** Walks part of the (possibly damaged) tree; names with a NUL are passed over. */
const exercise = (fsys: FileSystem) => walkTree(fsys, { entries: 120, page: 60, skip: (name) => name.includes('\0') });

test('the seed images walk cleanly', async () => {
  for (const seed of seeds) {
    const fsys = await openFileSystem(new PatchedDisk(seed.bytes, new Map(), READ_BUDGET));
    await exercise(fsys);
    expect({ seed: seed.name, type: fsys.type, dirty: fsys.dirty }).toEqual({ seed: seed.name, type: 'ntfs', dirty: false });
    expect((await fsys.readdir('/many', { limit: 2000 })).entries).toHaveLength(1500);
  }
});

test(`${CASES} mutated NTFS images end in success or a typed error, within time and read budgets`, async () => {
  const limits = { seed: SEED, cases: CASES, caseLimitMs: CASE_LIMIT_MS, readBudget: READ_BUDGET };
  const { only, ran, failures, outcomes, heapGrowth, slowest } = await runFuzzCases({ ...limits, seeds, mutate, walk: exercise, outcome: (structure, name) => structure?.replace(/\d+/g, 'N') ?? name });
  expect(failures.slice(0, 20).join('\n')).toBe('');
  expect(heapGrowth).toBeLessThan(256 * MiB);
  if (!only) {
    expect(outcomes.ok).toBeGreaterThan(CASES / 10);
    expect(Object.keys(outcomes).length).toBeGreaterThan(6);
  }
  process.stdout.write(`ntfs fuzz: ${ran} cases, slowest ${slowest} ms, outcomes ${JSON.stringify(outcomes)}\n`);
}, 120_000);
