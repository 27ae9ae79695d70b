/**
 * Shared harness of the file-system mutation fuzz suites (test/filesystems-*fuzz.test.ts): a Disk over a seed image
 * with a few patched bytes and a read budget, the byte-level mutations, a bounded walk of a (possibly damaged) tree
 * and the case loop that sorts every outcome into success, a typed error or a failure. Case `n` always draws the
 * same mutations, so a failing case is replayed with VMKEEP_FUZZ_SEED and VMKEEP_FUZZ_CASES.
 */
import { checkRange, Disk, DiskError, Extent } from '@vmkeep/disk';
import { FileSystem, openFileSystem, PathError } from '@vmkeep/filesystems';
import { caseRng, Rng } from './fuzz-mutate';

/** A Disk over a shared base image with a few patched bytes, counting what is read. */
export class PatchedDisk implements Disk {
  bytesRead = 0;
  constructor(
    private readonly base: Buffer,
    private readonly patches: Map<number, number>,
    private readonly readBudget: number,
  ) {}
  get size(): number {
    return this.base.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, 'fuzz', offset, length);
    this.bytesRead += length;
    if (this.bytesRead > this.readBudget) throw new Error(`read budget of ${this.readBudget} bytes exceeded`);
    const out = Buffer.from(this.base.subarray(offset, offset + length));
    for (const [at, value] of this.patches) if (at >= offset && at < offset + length) out[at - offset] = value;
    return out;
  }
  async extents(): Promise<Extent[]> {
    return [{ offset: 0, length: this.base.length }];
  }
  async close(): Promise<void> {}
}

/** The patched bytes of one case and a readable list of what was done. */
export interface Mutation {
  patches: Map<number, number>;
  steps: string[];
}

/** Writes a boundary value into a field around `at` (inside [start, start + length)); and records the step. */
export type FieldWriter = (m: Mutation, rng: Rng, at: number, start: number, length: number) => void;

const LE_BOUNDARY = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

/** A little-endian 16- or 32-bit field set to a boundary value. */
export const leField: FieldWriter = (m, rng, at) => {
  const width = rng.chance(0.5) ? 2 : 4;
  const aligned = at - (at % width);
  const v = rng.pick(LE_BOUNDARY) & (width === 2 ? 0xffff : 0xffffffff);
  for (let b = 0; b < width; b++) m.patches.set(aligned + b, (v >>> (8 * b)) & 0xff);
  m.steps.push(`u${width * 8} ${aligned}=${v}`);
};

/**
 * One mutation at a random place of [start, start + length) of `bytes`: a bit flip, a random byte, a field set by
 * `field`, or a 16-byte splice from elsewhere in the range.
 */
export function mutateOnce(bytes: Buffer, m: Mutation, rng: Rng, start: number, length: number, field: FieldWriter): void {
  const at = start + rng.int(length);
  const kind = rng.int(4);
  if (kind === 0) {
    const bit = rng.int(8);
    m.patches.set(at, (m.patches.get(at) ?? bytes[at]) ^ (1 << bit));
    m.steps.push(`flip ${at}:${bit}`);
  } else if (kind === 1) {
    const v = rng.int(256);
    m.patches.set(at, v);
    m.steps.push(`byte ${at}=${v}`);
  } else if (kind === 2) {
    field(m, rng, at, start, length);
  } else {
    const from = start + rng.int(Math.max(1, length - 16));
    for (let b = 0; b < 16 && at + b < bytes.length; b++) m.patches.set(at + b, bytes[from + b]);
    m.steps.push(`splice ${from}->${at}`);
  }
}

export interface WalkLimits {
  /** Entries to visit at most, and the page size of every readdir. */
  entries: number;
  page: number;
  /** Names to pass over besides '', '.', '..' and names with a slash. */
  skip?: (name: string) => boolean;
  /** Whether to stat / open and read the n-th entry (all of them when not given). */
  statEntry?: (n: number) => boolean;
  readEntry?: (n: number) => boolean;
}

/** Walks a (possibly damaged) tree within `limits`; directory loops are cut by inode number. */
export async function walkTree(fsys: FileSystem, limits: WalkLimits): Promise<void> {
  const seen = new Set<number>();
  const queue = ['/'];
  let entries = 0;
  while (queue.length && entries < limits.entries) {
    const dirPath = queue.shift()!;
    const page = await fsys.readdir(dirPath, { limit: limits.page });
    for (const e of page.entries) {
      entries++;
      const p = dirPath === '/' ? `/${e.name}` : `${dirPath}/${e.name}`;
      if (e.name.includes('/') || e.name === '' || e.name === '.' || e.name === '..' || limits.skip?.(e.name)) continue;
      if (limits.statEntry?.(entries) ?? true) await fsys.stat(p);
      if (e.stat.type === 'directory') {
        if (!seen.has(e.stat.inode)) queue.push(p);
        seen.add(e.stat.inode);
      } else if (e.stat.type === 'symlink') {
        await fsys.readlink(p);
      } else if (e.stat.type === 'file' && (limits.readEntry?.(entries) ?? true)) {
        const file = await fsys.open(p);
        await file.extents();
        await file.read(0, Math.min(file.size, 65536));
        if (file.size > 65536) await file.read(file.size - 65536, 65536);
      }
    }
  }
}

export interface FuzzSeed {
  name: string;
  bytes: Buffer;
}

export interface FuzzRun<S extends FuzzSeed> {
  seed: number;
  cases: number;
  caseLimitMs: number;
  readBudget: number;
  seeds: S[];
  mutate: (seed: S, rng: Rng) => Mutation;
  walk: (fsys: FileSystem) => Promise<void>;
  /** The outcome bucket of a typed error, from its `structure` (when it has one) and its name. */
  outcome: (structure: string | undefined, name: string) => string;
}

export interface FuzzResult {
  /** Set when VMKEEP_FUZZ_CASES picked the cases to replay. */
  only?: number[];
  ran: number;
  failures: string[];
  outcomes: Record<string, number>;
  heapGrowth: number;
  slowest: number;
}

/**
 * Runs every case (or those in VMKEEP_FUZZ_CASES): mutates its seed, opens and walks it. Success and typed errors
 * (DiskError / PathError) are counted by outcome; any other exception or a case over the time limit is a failure.
 */
export async function runFuzzCases<S extends FuzzSeed>(run: FuzzRun<S>): Promise<FuzzResult> {
  const only = process.env.VMKEEP_FUZZ_CASES?.split(',').map(Number);
  const cases = only ?? Array.from({ length: run.cases }, (_, i) => i);
  const failures: string[] = [];
  const outcomes: Record<string, number> = {};
  const heapBefore = process.memoryUsage().heapUsed;
  let slowest = 0;
  for (const caseNo of cases) {
    const rng = caseRng(run.seed, caseNo);
    const seed = run.seeds[caseNo % run.seeds.length];
    const { patches, steps } = run.mutate(seed, rng);
    const started = Date.now();
    try {
      await run.walk(await openFileSystem(new PatchedDisk(seed.bytes, patches, run.readBudget)));
      outcomes.ok = (outcomes.ok ?? 0) + 1;
    } catch (e) {
      if (e instanceof DiskError || e instanceof PathError) {
        const key = run.outcome((e as { structure?: string }).structure, e.name);
        outcomes[key] = (outcomes[key] ?? 0) + 1;
      } else {
        failures.push(`case ${caseNo} (seed ${run.seed}, ${seed.name}): ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}\n  mutations: ${steps.join('; ')}`);
      }
    }
    const took = Date.now() - started;
    slowest = Math.max(slowest, took);
    if (took > run.caseLimitMs) failures.push(`case ${caseNo} (${seed.name}) took ${took} ms; mutations: ${steps.join('; ')}`);
  }
  return { only, ran: cases.length, failures, outcomes, heapGrowth: process.memoryUsage().heapUsed - heapBefore, slowest };
}
