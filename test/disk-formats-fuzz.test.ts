/**
 * Fuzz test of the disk-format readers: small valid images of every format (qemu-img made, plus hand-built
 * GD_AT_END stream, COWD and seSparse deltas) are mutated — bit flips, bytes set to 0x00/0xFF/random, integer
 * fields overwritten with boundary values at header offsets, truncation, extension, splices, descriptor edits,
 * with checksums recomputed half of the time — then detected, opened from memory and read within a budget.
 * Every case must end in success or a typed DiskError: anything else (TypeError, RangeError, ...), a case that
 * hangs, a buffer larger than the read limit, or memory that keeps growing fails the test with the case number.
 *
 * Replay: VMKEEP_FUZZ_SEED=<seed> VMKEEP_FUZZ_CASES=<n>[,<n>...] npx jest test/disk-formats-fuzz
 * (the failing input is also saved under the OS temp folder, vmkeep-fuzz-failures/).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildFuzzCorpus, FuzzImage } from './peers/fuzz-corpus';
import { DEFAULT_FAILURE_DIR, FuzzFailure, runFuzz } from './peers/fuzz-runner';
import { openFuzzImage } from './peers/fuzz-target';

const SEED = Number(process.env.VMKEEP_FUZZ_SEED ?? 0x5eed2026);
const CASES = 12_000;
const MiB = 1024 * 1024;

let dir: string;
let images: FuzzImage[];

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-fuzz-'));
  images = await buildFuzzCorpus(dir);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function filesOf(image: FuzzImage): Record<string, Buffer> {
  return Object.fromEntries(Object.entries(image.files).map(([name, bytes]) => [name, Buffer.from(bytes)]));
}

function describeFailures(failures: FuzzFailure[]): string {
  return failures
    .slice(0, 20)
    .map((f) => `case ${f.caseNo} (seed ${SEED}, ${f.image}): ${f.error.split('\n').slice(0, 4).join(' | ')}\n  mutations: ${f.steps.join('; ')}${f.savedInput ? `\n  input: ${f.savedInput}` : ''}`)
    .join('\n');
}

test('every seed image opens unmutated and reads back its virtual disk exactly', async () => {
  expect(images.map((i) => i.name).sort()).toEqual(
    ['cowd-delta.vmdk', 'dynamic.vhd', 'dynamic.vhdx', 'fixed.vhd', 'flat.vmdk', 'gd-at-end.vmdk', 'monolithicSparse.vmdk', 'se-sesparse.vmdk', 'streamOptimized.vmdk'],
  );
  for (const image of images) {
    const disk = await openFuzzImage(image, filesOf(image));
    try {
      expect({ image: image.name, size: disk.size }).toEqual({ image: image.name, size: image.virtualSize });
      const sha = createHash('sha256').update(await disk.read(0, disk.size)).digest('hex');
      expect({ image: image.name, sha }).toEqual({ image: image.name, sha: image.virtualSha256 });
    } finally {
      await disk.close();
    }
  }
});

test(`${CASES} mutated images: only typed errors, no hang, bounded memory`, async () => {
  const only = process.env.VMKEEP_FUZZ_CASES?.split(',').map((s) => Number(s.trim()));
  const cases = only ?? Array.from({ length: CASES }, (_, i) => i);
  const report = await runFuzz({
    images, seed: SEED, cases, workers: Math.max(1, Math.min(2, os.availableParallelism())),
    caseTimeoutMs: 10_000, allocLimit: 80 * MiB, retainLimit: 512 * MiB, heapLimitMb: 512, failureDir: DEFAULT_FAILURE_DIR,
  });
  if (report.failures.length > 0) throw new Error(`${report.failures.length} failing case(s):\n${describeFailures(report.failures)}`);
  expect(report.failures).toEqual([]);
  const total = Object.values(report.stats).reduce((n, s) => n + s.cases, 0);
  expect(total).toBe(cases.length);
  if (only) return;
  // The mutations reach the readers: every image has cases that open and read, and cases that are refused.
  for (const image of images) {
    const s = report.stats[image.name];
    expect({ image: image.name, openedAndRead: s.readOk > 0, refused: s.refused > 0 }).toEqual({ image: image.name, openedAndRead: true, refused: true });
  }
  expect(report.maxAlloc).toBeLessThanOrEqual(80 * MiB);
  expect(report.rssGrowth).toBeLessThan(1024 * MiB);
  process.stdout.write(
    `fuzz: ${total} cases in ${report.elapsedMs} ms; refusals ${JSON.stringify(report.refusals)}; ` +
      `largest buffer ${report.maxAlloc} B; RSS growth ${Math.round(report.rssGrowth / MiB)} MiB\n` +
      Object.entries(report.stats).map(([n, s]) => `  ${n}: ${s.cases} cases, ${s.readOk} read ok, ${s.refused} refused`).join('\n') + '\n',
  );
});
