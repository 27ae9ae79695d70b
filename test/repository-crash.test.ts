/**
 * Crash safety of the repository through the compiled CLI: kill -9 during backup-image and during gc, and a full
 * file system (a small tmpfs). Afterwards the repository verifies clean, no half point is listed, every committed
 * point restores byte-exact and the next operation works.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensureBuilt, vmkeep } from './peers/appliance';
import { makeTempDir } from './peers/process';
import { chunkFiles, killWhen } from './repository-crash-helpers';

const MIB = 1024 * 1024;
const PASS = 'crash test passphrase';

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function randomFile(file: string, mib: number): void {
  const fd = fs.openSync(file, 'w');
  for (let i = 0; i < mib; i++) fs.writeSync(fd, randomBytes(MIB));
  fs.closeSync(fd);
}

describe('repository crash safety (kill -9, disk full)', () => {
  let home: string;
  let repo: string;
  const env = () => ({ VMKEEP_REPO: repo, VMKEEP_PASSPHRASE: PASS });
  const cli = (args: string[]) => vmkeep(args, { home, env: env() });
  const json = async <T>(args: string[]): Promise<T> => {
    const r = await cli([...args, '--json']);
    if (r.code !== 0) throw new Error(`vmkeep ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const pointIds = async () => (await json<{ points: { id: string }[] }>(['repo', 'list'])).points.map((p) => p.id);
  const restoresExactly = async (pointId: string, source: string) => {
    const out = path.join(home, `check-${pointId}.raw`);
    const r = await cli(['repo', 'restore', pointId, '--output', out]);
    expect(r.stderr).toBe('');
    expect(sha256(out)).toBe(sha256(source));
    fs.rmSync(out);
  };

  beforeAll(async () => {
    await ensureBuilt();
    home = makeTempDir('vmkeep-repo-crash-');
  });
  afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

  describe('kill -9', () => {
    const small = () => path.join(home, 'small.raw');
    const big = () => path.join(home, 'big.raw');
    let firstPoint: string;

    beforeAll(async () => {
      repo = path.join(home, 'repo');
      randomFile(small(), 4);
      randomFile(big(), 96);
      await json(['repo', 'init', '--encrypt', '--chunk-size', '256K']);
      firstPoint = (await json<{ point: string }>(['repo', 'backup-image', small(), '--name', 'small'])).point;
    });

    it('during backup-image: nothing half listed, verify clean, the next backup works', async () => {
      const before = chunkFiles(repo).length;
      await killWhen(['repo', 'backup-image', big(), '--name', 'big'], env(), home, () => {
        try {
          return fs.readdirSync(path.join(repo, 'writers')).length > 0 && chunkFiles(repo).length >= before + 40;
        } catch {
          return false;
        }
      });
      const stored = chunkFiles(repo).length - before;
      expect(stored).toBeGreaterThanOrEqual(40);
      expect(stored).toBeLessThan(96 * 4); // really midway

      expect(await pointIds()).toEqual([firstPoint]);
      expect(JSON.parse((await cli(['repo', 'verify', '--json'])).stdout)).toMatchObject({ ok: true, points: [firstPoint] });
      await restoresExactly(firstPoint, small());

      // The dead writer's marker is a stale shared lock: gc removes it (its pid is gone) and drops the half point.
      const gc = await cli(['repo', 'gc', '--grace', '0', '--json']);
      expect(gc.code).toBe(0);
      const report = JSON.parse(gc.stdout) as { staleWritersRemoved: string[]; partialPointsRemoved: string[]; sweptChunks: number };
      expect(report.staleWritersRemoved).toHaveLength(1);
      expect(report.partialPointsRemoved).toEqual(report.staleWritersRemoved);
      expect(report.sweptChunks).toBe(stored);
      expect(gc.stderr).toMatch(/warning: removed the stale lock of backup .*: pid \d+ is not running on host/);

      const next = (await json<{ point: string }>(['repo', 'backup-image', big(), '--name', 'big'])).point;
      expect(await pointIds()).toEqual([firstPoint, next]);
      await restoresExactly(next, big());
    });

    it('during gc: verify clean, every committed point restores, the next gc takes over the stale lock', async () => {
      // Garbage: the big image's point and another 96 MiB of unique chunks, both pruned; the first point is archived.
      const bigPoint = (await pointIds())[1];
      expect(await json(['repo', 'archive', firstPoint, '--until', '2999-01-01'])).toMatchObject({ locked: true });
      const other = path.join(home, 'other.raw');
      randomFile(other, 96);
      const before = new Set(chunkFiles(repo));
      const doomed = (await json<{ point: string }>(['repo', 'backup-image', other, '--name', 'doomed'])).point;
      const doomedChunks = chunkFiles(repo).filter((f) => !before.has(f)).sort();
      expect(doomedChunks).toHaveLength(96 * 4);
      const last = (await json<{ point: string }>(['repo', 'backup-image', small(), '--name', 'small again'])).point;
      const pruned = await json<{ removed: string[] }>(['repo', 'prune', '--keep-last', '1']);
      expect(pruned.removed.sort()).toEqual([bigPoint, doomed].sort());

      // GC sweeps in folder order: kill it as soon as the first doomed chunk is gone.
      expect(chunkFiles(repo)).toHaveLength(16 + 2 * 96 * 4);
      await killWhen(['repo', 'gc', '--grace', '0'], env(), home, () => !fs.existsSync(doomedChunks[0]));
      const left = chunkFiles(repo).length;
      expect(left).toBeGreaterThan(16); // killed midway: garbage still there
      expect(fs.existsSync(path.join(repo, 'locks', 'exclusive.json'))).toBe(true);

      expect(await pointIds()).toEqual([firstPoint, last]);
      expect(JSON.parse((await cli(['repo', 'verify', '--json'])).stdout)).toMatchObject({ ok: true });
      await restoresExactly(firstPoint, small());
      await restoresExactly(last, small());

      const gc = await cli(['repo', 'gc', '--grace', '0', '--json']);
      expect(gc.code).toBe(0);
      expect(gc.stderr).toMatch(/warning: removed the stale lock of gc \(host .*, pid \d+, since .*\): pid \d+ is not running/);
      expect(JSON.parse(gc.stdout)).toMatchObject({ referencedChunks: 16, staleLocks: [expect.objectContaining({ operation: 'gc' })] });
      expect(chunkFiles(repo)).toHaveLength(16);
      expect(fs.existsSync(path.join(repo, 'locks', 'exclusive.json'))).toBe(false);
    });
  });

  describe('disk full', () => {
    let mountPoint: string;
    let mounted = false;

    beforeAll(() => {
      mountPoint = makeTempDir('vmkeep-repo-tmpfs-');
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mountPoint], { stdio: 'pipe' });
        mounted = true;
      } catch (err) {
        throw new Error(
          `this suite needs to mount a 20 MiB tmpfs (as root: mount -t tmpfs -o size=20m tmpfs DIR): ${(err as Error).message}`,
          { cause: err },
        );
      }
    });
    afterAll(() => {
      if (mounted) execFileSync('umount', [mountPoint]);
      fs.rmSync(mountPoint, { recursive: true, force: true });
    });

    it('a backup bigger than the free space fails clearly, commits nothing and loses nothing', async () => {
      repo = path.join(mountPoint, 'repo');
      const small = path.join(home, 'full-small.raw');
      const huge = path.join(home, 'full-huge.raw');
      randomFile(small, 4);
      randomFile(huge, 32);
      await json(['repo', 'init', '--chunk-size', '256K']);
      const first = (await json<{ point: string }>(['repo', 'backup-image', small])).point;

      const full = await cli(['repo', 'backup-image', huge]);
      expect(full.code).toBe(1);
      expect(full.stderr.trim().split('\n')).toEqual([
        'error: the repository\'s file system is full (ENOSPC): nothing was committed; free space or run "vmkeep repo gc"',
      ]);
      expect(await pointIds()).toEqual([first]);
      expect(fs.readdirSync(path.join(repo, 'points'))).toEqual([first]);
      expect(JSON.parse((await cli(['repo', 'verify', '--json'])).stdout)).toMatchObject({ ok: true, points: [first] });
      await restoresExactly(first, small);

      // GC frees the aborted backup's chunks; then a backup that fits works again.
      expect((await cli(['repo', 'gc', '--grace', '0'])).code).toBe(0);
      expect(chunkFiles(repo)).toHaveLength(16);
      const again = (await json<{ point: string }>(['repo', 'backup-image', small])).point;
      expect(await pointIds()).toEqual([first, again]);
    });
  });
});
