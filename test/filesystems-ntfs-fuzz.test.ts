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
import { checkRange, Disk, DiskError, Extent } from '@vmkeep/disk';
import { FileSystem, openFileSystem, PathError } from '@vmkeep/filesystems';
import { caseRng, Rng } from './peers/fuzz-mutate';
import { MiB } from './peers/fs-images';
import { makeNtfs } from './peers/ntfs-images';

const SEED = Number(process.env.VMKEEP_FUZZ_SEED ?? 0x4e7f5001);
const CASES = 1200;
const CASE_LIMIT_MS = 3000;
const READ_BUDGET = 32 * MiB;
const BOUNDARY = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

interface Seed {
  name: string;
  bytes: Buffer;
  /** [offset, length] of the boot sector and of the first MFT records. */
  boot: [number, number];
  mft: [number, number];
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

function mutate(seed: Seed, rng: Rng): { patches: Map<number, number>; steps: string[] } {
  const patches = new Map<number, number>();
  const steps: string[] = [];
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) {
    const r = rng.u32() / 2 ** 32;
    const [start, length] = r < 0.1 ? [0, seed.bytes.length] : r < 0.3 ? seed.boot : seed.mft;
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

/** Walks part of the (possibly damaged) tree; directory loops are cut by record number. */
async function exercise(fsys: FileSystem): Promise<void> {
  const seen = new Set<number>();
  const queue = ['/'];
  let entries = 0;
  while (queue.length && entries < 120) {
    const dirPath = queue.shift()!;
    const page = await fsys.readdir(dirPath, { limit: 60 });
    for (const e of page.entries) {
      entries++;
      const p = dirPath === '/' ? `/${e.name}` : `${dirPath}/${e.name}`;
      if (e.name.includes('/') || e.name === '' || e.name === '.' || e.name === '..' || e.name.includes('\0')) continue;
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
    expect({ seed: seed.name, type: fsys.type, dirty: fsys.dirty }).toEqual({ seed: seed.name, type: 'ntfs', dirty: false });
    expect((await fsys.readdir('/many', { limit: 2000 })).entries).toHaveLength(1500);
  }
});

test(`${CASES} mutated NTFS images end in success or a typed error, within time and read budgets`, async () => {
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
      await exercise(await openFileSystem(new PatchedDisk(seed.bytes, patches)));
      outcomes.ok = (outcomes.ok ?? 0) + 1;
    } catch (e) {
      if (e instanceof DiskError || e instanceof PathError) {
        const key = (e as { structure?: string }).structure?.replace(/\d+/g, 'N') ?? e.name;
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
    expect(outcomes.ok).toBeGreaterThan(CASES / 10);
    expect(Object.keys(outcomes).length).toBeGreaterThan(6);
  }
  process.stdout.write(`ntfs fuzz: ${cases.length} cases, slowest ${slowest} ms, outcomes ${JSON.stringify(outcomes)}\n`);
}, 120_000);
