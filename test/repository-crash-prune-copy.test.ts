/**
 * Crash safety of prune and backup copy through the compiled CLI (issue 4): `vmkeep repo prune` and `vmkeep repo
 * copy` are killed with SIGKILL at several moments. Afterwards both repositories verify clean, no half point is
 * listed, every committed point restores byte-exact, the next prune takes over the stale lock and finishes the
 * plan, and the next copy resumes (chunks already sent are not sent again) and completes.
 * (test/repository-crash.test.ts covers backup-image, gc and a full disk.)
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BufferDisk } from '@vmkeep/disk';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { ensureBuilt, vmkeep } from './peers/appliance';
import { seededBytes } from './peers/disk-images';
import { makeTempDir } from './peers/process';
import { chunkFiles, killWhen } from './repository-crash-helpers';

const KIB = 1024;
const CHUNK = 256 * KIB;
/** Points prune keeps (of 100). */
const KEEP = 40;
/** Chunks of each point the copy test copies. */
const PER_POINT = 64;

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Folders under points/ that still hold a manifest (committed points, as a reader sees them). */
function committedFolders(repo: string): string[] {
  const dir = path.join(repo, 'points');
  return fs.readdirSync(dir).filter((id) => fs.existsSync(path.join(dir, id, 'manifest.json')));
}

describe('repository crash safety: kill -9 during prune and copy', () => {
  let home: string;
  const cli = (args: string[], env: Record<string, string>) => vmkeep(args, { home, env });
  const json = async <T>(args: string[], env: Record<string, string>): Promise<{ data: T; stderr: string }> => {
    const r = await cli([...args, '--json'], env);
    if (r.code !== 0) throw new Error(`vmkeep ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return { data: JSON.parse(r.stdout) as T, stderr: r.stderr };
  };
  /** `repo verify` of every committed point is clean; returns the points it found (= `repo list`). */
  const verifiesClean = async (env: Record<string, string>, points?: string[]): Promise<string[]> => {
    const r = await cli(['repo', 'verify', '--json'], env);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { points: string[] };
    expect(report).toMatchObject({ ok: true, badChunks: [], badIndexes: [], brokenPoints: [], ...(points ? { points } : {}) });
    return report.points;
  };
  /** Every given point of the repository restores to exactly `expected[id]` (read through the library). */
  const restoresExactly = async (dir: string, passphrase: string | undefined, ids: string[], expected: Map<string, string>) => {
    const repo = await Repository.open(dir, { passphrase });
    try {
      for (const id of ids) {
        const disk = await repo.openDisk(id, 'disk-0');
        try {
          expect(sha256(await disk.read(0, disk.size))).toBe(expected.get(id));
        } finally {
          await disk.close();
        }
      }
    } finally {
      await repo.close();
    }
  };

  beforeAll(async () => {
    home = makeTempDir('vmkeep-crash-prune-copy-');
    await ensureBuilt();
  });
  afterAll(async () => {
    await closeSharedChunkWorkers();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('prune: killed before and while deleting → nothing half listed, verify clean, the next prune finishes the plan', async () => {
    const dir = path.join(home, 'prune-repo');
    const env = { VMKEEP_REPO: dir };
    // 100 points of two chunks: one shared by all, one of their own (so each point has chunks only it uses).
    const expected = new Map<string, string>();
    const all: string[] = [];
    const repo = await Repository.init(dir, { chunkSize: CHUNK });
    const common = seededBytes('crash-prune', 'common', CHUNK);
    for (let i = 0; i < 100; i++) {
      const data = Buffer.concat([common, seededBytes('crash-prune', `own-${i}`, CHUNK)]);
      const writer = repo.beginPoint();
      await writer.writeDisk('disk-0', new BufferDisk(data));
      const m = await writer.commit({ vm: { name: `vm-${i}` } });
      expected.set(m.id, sha256(data));
      all.push(m.id);
    }
    await repo.close();
    const keep = all.slice(-KEEP);
    const gone = all.slice(0, -KEEP);
    const lockFile = path.join(dir, 'locks', 'exclusive.json');

    // Moment 1: as soon as prune holds its lock. Moment 2: a few points into the deletes. Moment 3: ten of them.
    const moments: [string, () => boolean][] = [
      ['lock taken', () => fs.existsSync(lockFile)],
      ['3 points deleted', () => committedFolders(dir).length <= 97],
      ['10 points deleted', () => committedFolders(dir).length <= 90],
    ];
    for (const [, ready] of moments) {
      await killWhen(['repo', 'prune', '--keep-last', String(KEEP)], env, home, ready);
      const now = await verifiesClean(env);
      // Only points of the plan went; every point to keep is there; nothing half listed.
      expect(now).toEqual(all.filter((id) => now.includes(id)));
      expect(now.slice(-KEEP)).toEqual(keep);
      expect(fs.existsSync(lockFile)).toBe(true); // the dead prune's lock stays behind …
      await restoresExactly(dir, undefined, [now[0], now[Math.floor(now.length / 2)], now[now.length - 1]], expected);
    }
    expect(committedFolders(dir).length).toBeLessThanOrEqual(90);

    // … and the next prune takes it over and removes exactly the rest of the plan.
    const done = await json<{ removed: string[]; staleLocks: { operation: string }[] }>(['repo', 'prune', '--keep-last', String(KEEP)], env);
    expect(done.stderr).toMatch(/warning: removed the stale lock of prune \(host .*, pid \d+, since .*\): pid \d+ is not running/);
    expect(done.data.staleLocks).toEqual([expect.objectContaining({ operation: 'prune' })]);
    expect(done.data.removed.every((id) => gone.includes(id))).toBe(true);
    expect(fs.existsSync(lockFile)).toBe(false);

    // A kill between a delete's decision (manifest renamed to manifest.deleting) and its end leaves that folder:
    // not listed, and GC keeps its chunks until the folder is an hour old (the delete could still be running).
    const pointsDir = path.join(dir, 'points');
    const deleting = fs.readdirSync(pointsDir).filter((id) => fs.existsSync(path.join(pointsDir, id, 'manifest.deleting')));
    expect(deleting.every((id) => gone.includes(id))).toBe(true);
    expect(deleting.length).toBeLessThanOrEqual(moments.length);
    type Gc = { referencedChunks: number; sweptChunks: number; deletesFinished: string[] };
    const gc = await json<Gc>(['repo', 'gc', '--grace', '0'], env);
    expect(gc.data).toMatchObject({ referencedChunks: 1 + KEEP + deleting.length, sweptChunks: 100 - KEEP - deleting.length, deletesFinished: [] });

    // An hour later GC finishes those deletes and frees their chunks too.
    const anHourAgo = new Date(Date.now() - 3600_000 - 60_000);
    for (const id of deleting) fs.utimesSync(path.join(pointsDir, id), anHourAgo, anHourAgo);
    const later = await json<Gc>(['repo', 'gc', '--grace', '0'], env);
    expect(later.data).toMatchObject({ referencedChunks: 1 + KEEP, sweptChunks: deleting.length });
    expect(later.data.deletesFinished.sort()).toEqual([...deleting].sort());
    expect(fs.readdirSync(pointsDir).sort()).toEqual([...keep].sort());
    await verifiesClean(env, keep);
    await restoresExactly(dir, undefined, keep, expected);
  });

  it('copy: killed in the first and in a later point → target lists only whole points, the next copy resumes and completes', async () => {
    const src = { VMKEEP_REPO: path.join(home, 'copy-src'), VMKEEP_PASSPHRASE: 'copy source secret' };
    const dst = path.join(home, 'copy-dst');
    const dstPass = 'copy target secret';
    const copyEnv = { ...src, VMKEEP_TARGET_PASSPHRASE: dstPass };
    const dstEnv = { VMKEEP_REPO: dst, VMKEEP_PASSPHRASE: dstPass };
    // Differently keyed repositories: every chunk is decrypted, re-identified and re-encrypted on the way.
    const source = await Repository.init(src.VMKEEP_REPO, { chunkSize: CHUNK, encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: src.VMKEEP_PASSPHRASE });
    const target = await Repository.init(dst, { chunkSize: CHUNK, encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: dstPass });
    await target.close();
    const expected = new Map<string, string>();
    const points: string[] = [];
    for (let i = 0; i < 3; i++) {
      const data = seededBytes('crash-copy', `point-${i}`, PER_POINT * CHUNK); // 16 MiB of unique chunks
      const writer = source.beginPoint();
      await writer.writeDisk('disk-0', new BufferDisk(data));
      const m = await writer.commit({ vm: { name: `copy-${i}` } });
      expected.set(m.id, sha256(data));
      points.push(m.id);
    }
    await source.close();

    // Kill the copy a few chunks into the first point, then some way into the second (the copy goes point by
    // point). A loaded machine may let a copy get further before the kill lands, so the checks hold wherever it
    // landed: the target lists whole points only (a prefix of the source's), they verify and restore.
    let whole: string[] = [];
    let partialSeen = false;
    for (const sent of [8, PER_POINT + 16]) {
      await killWhen(['repo', 'copy', '--to', dst], copyEnv, home, () => chunkFiles(dst).length >= sent);
      whole = await verifiesClean(dstEnv);
      expect(whole).toEqual(points.slice(0, whole.length));
      expect(whole.length).toBeLessThan(3);
      await restoresExactly(dst, dstPass, whole, expected);
      // Chunks beyond the whole points' belong to a point the kill cut short: invisible, as it must be.
      if (chunkFiles(dst).length > whole.length * PER_POINT) partialSeen = true;
    }
    expect(partialSeen).toBe(true);
    expect(whole.length).toBeGreaterThanOrEqual(1);

    // The next copy skips the whole points, finds the chunks the killed runs sent, and completes.
    const before = chunkFiles(dst).length;
    const done = await json<{ copied: string[]; skipped: string[]; chunksTransferred: number; chunksPresent: number }>(
      ['repo', 'copy', '--to', dst],
      copyEnv,
    );
    expect(done.data.skipped).toEqual(whole);
    expect(done.data.copied).toEqual(points.slice(whole.length));
    expect(done.data.chunksPresent).toBe(before - whole.length * PER_POINT);
    expect(done.data.chunksTransferred).toBe(3 * PER_POINT - before);
    expect(chunkFiles(dst)).toHaveLength(3 * PER_POINT);
    await verifiesClean(dstEnv, points);
    await restoresExactly(dst, dstPass, points, expected);

    // The resumed copy took over the dead copies' markers (one per point) and dropped them on commit; a GC on
    // the target finds nothing unreferenced: every chunk the killed runs sent is used.
    expect(fs.readdirSync(path.join(dst, 'writers'))).toEqual([]);
    const gc = await json<{ sweptChunks: number; referencedChunks: number }>(['repo', 'gc', '--grace', '0'], dstEnv);
    expect(gc.data).toMatchObject({ sweptChunks: 0, referencedChunks: 3 * PER_POINT });
  });
});
