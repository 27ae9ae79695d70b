/**
 * `vmkeep repo ...` end to end: the compiled CLI on a real encrypted repository folder, real images (a VMDK made
 * by qemu-img, a raw file with random and zero regions), byte-exact restores, damage found by verify.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensureBuilt, vmkeep } from './peers/appliance';
import { makeTempDir, requireBinary } from './peers/process';

const MIB = 1024 * 1024;
const PASS = 'correct horse battery staple';

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** A raw image: random, zero and repeated regions of 1 MiB each (pattern letters r, z, d). */
function writeRaw(file: string, pattern: string): void {
  const same = randomBytes(MIB);
  fs.writeFileSync(file, Buffer.concat([...pattern].map((c) => (c === 'z' ? Buffer.alloc(MIB) : c === 'd' ? same : randomBytes(MIB)))));
}

interface PointRow {
  id: string;
  createdAt: string;
  vmName?: string;
  disks: { key: string; size: number; label?: string }[];
  totalSize: number;
  archive?: { retainUntil: string; legalHold: boolean };
}

describe('vmkeep repo (CLI on a repository folder)', () => {
  let home: string;
  let repo: string;
  const env = () => ({ VMKEEP_REPO: repo, VMKEEP_PASSPHRASE: PASS });
  const cli = (args: string[], extraEnv: Record<string, string> = {}) =>
    vmkeep(args, { home, env: { ...env(), ...extraEnv } });
  const json = async <T>(args: string[]): Promise<T> => {
    const r = await cli([...args, '--json']);
    if (r.code !== 0) throw new Error(`vmkeep ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const points = async () => (await json<{ points: PointRow[] }>(['repo', 'list'])).points;

  let vmdkSource: string;
  let rawSource: string;
  let vmdkPoint: string;
  let rawPoint: string;

  beforeAll(async () => {
    await ensureBuilt();
    home = makeTempDir('vmkeep-repo-cli-');
    repo = path.join(home, 'repo');
    vmdkSource = path.join(home, 'vm-disk.raw');
    rawSource = path.join(home, 'data.raw');
    writeRaw(vmdkSource, 'rzzrdd');
    writeRaw(rawSource, 'rrzzdrz');
    // The VMDK's last MiB is only partly used, so the disk's size is not a chunk multiple.
    fs.truncateSync(vmdkSource, 6 * MIB - 4096);
    execFileSync(requireBinary('qemu-img'), ['convert', '-f', 'raw', '-O', 'vmdk', vmdkSource, path.join(home, 'vm.vmdk')]);
  });
  afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

  it('refuses a bad S3 setting and a missing repository setting, with one clear line', async () => {
    const s3 = await vmkeep(['repo', 'list', '--repo', 's3://backups/vmkeep'], { home, env: { VMKEEP_S3_ENDPOINT: 'ftp://x' } });
    expect(s3.code).toBe(1);
    expect(s3.stderr.trim()).toBe('error: invalid configuration: VMKEEP_S3_ENDPOINT must be an http:// or https:// URL');
    const none = await vmkeep(['repo', 'list'], { home });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('use --repo PATH or set VMKEEP_REPO');
  });

  it('init --encrypt creates an encrypted repository', async () => {
    const info = await json<{ encrypted: boolean; chunkSize: number }>(['repo', 'init', '--encrypt', '--chunk-size', '256K']);
    expect(info).toMatchObject({ encrypted: true, chunkSize: 256 * 1024 });
    const key = JSON.parse(fs.readFileSync(path.join(repo, 'key.json'), 'utf8')) as { kdf: { algorithm: string } };
    expect(key.kdf.algorithm).toBe('scrypt');
    expect(fs.readFileSync(path.join(repo, 'key.json'), 'utf8')).not.toContain(PASS);
  });

  it('backs up a qemu-img VMDK and a raw image, and lists them with name, disks and sizes', async () => {
    const a = await json<{ point: string; size: number; zeroChunks: number }>([
      'repo', 'backup-image', path.join(home, 'vm.vmdk'), '--name', 'web01',
    ]);
    expect(a.size).toBe(6 * MIB - 4096);
    expect(a.zeroChunks).toBe(8); // the two zero MiB at 256 KiB chunks
    const b = await json<{ point: string; size: number; dedupChunks: number }>(['repo', 'backup-image', rawSource]);
    expect(b.size).toBe(7 * MIB);
    vmdkPoint = a.point;
    rawPoint = b.point;

    const list = await points();
    expect(list.map((p) => p.id)).toEqual([vmdkPoint, rawPoint]);
    expect(list[0]).toMatchObject({ vmName: 'web01', totalSize: 6 * MIB - 4096, disks: [{ key: 'disk-0', label: 'vm.vmdk' }] });
    expect(list[1]).toMatchObject({ vmName: 'data.raw', totalSize: 7 * MIB, disks: [{ key: 'disk-0', size: 7 * MIB }] });

    const human = await cli(['repo', 'list']);
    expect(human.stdout).toMatch(new RegExp(`${vmdkPoint}.*web01.*disk-0`));
  });

  it('restores both byte-exact, as raw and as a VMDK qemu-img reads back', async () => {
    const out = path.join(home, 'restored.raw');
    expect((await cli(['repo', 'restore', vmdkPoint, '--disk', 'disk-0', '--output', out])).code).toBe(0);
    expect(sha256(out)).toBe(sha256(vmdkSource));
    expect((await cli(['repo', 'restore', rawPoint, '--output', out])).code).toBe(0);
    expect(sha256(out)).toBe(sha256(rawSource));

    const vmdk = path.join(home, 'restored.vmdk');
    expect((await cli(['repo', 'restore', rawPoint, '--output', vmdk, '--format', 'vmdk-stream'])).code).toBe(0);
    const back = path.join(home, 'back.raw');
    execFileSync(requireBinary('qemu-img'), ['convert', '-O', 'raw', vmdk, back]);
    expect(sha256(back)).toBe(sha256(rawSource));
  });

  it('verifies clean, then names the point and disk of a flipped byte and refuses to restore it', async () => {
    const clean = await cli(['repo', 'verify', '--json']);
    expect(clean.code).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({ ok: true, badChunks: [] });

    // Flip one byte in the payload of one chunk only the raw point uses (its first, random MiB).
    const chunks = fs.readdirSync(path.join(repo, 'chunks')).flatMap((fan) =>
      fs.readdirSync(path.join(repo, 'chunks', fan)).map((n) => path.join(repo, 'chunks', fan, n)),
    );
    // Find a chunk of the raw point: damage candidates until verify of the VMDK point stays clean.
    let victim: string | undefined;
    for (const file of chunks) {
      const data = fs.readFileSync(file);
      data[40] ^= 0x5a;
      fs.writeFileSync(file, data);
      const v = await cli(['repo', 'verify', vmdkPoint, '--json']);
      if (v.code === 0) {
        victim = file;
        break;
      }
      data[40] ^= 0x5a; // used by the VMDK point too: undo
      fs.writeFileSync(file, data);
    }
    expect(victim).toBeDefined();
    const id = path.basename(victim!);

    const bad = await cli(['repo', 'verify', '--json']);
    expect(bad.code).toBe(1);
    const report = JSON.parse(bad.stdout) as { ok: boolean; brokenPoints: string[]; badChunks: { id: string; refs: { pointId: string; diskKey: string }[] }[] };
    expect(report.ok).toBe(false);
    expect(report.brokenPoints).toEqual([rawPoint]);
    expect(report.badChunks.map((c) => c.id)).toEqual([id]);
    expect(report.badChunks[0].refs[0]).toMatchObject({ pointId: rawPoint, diskKey: 'disk-0' });
    const human = await cli(['repo', 'verify']);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(`point ${rawPoint} disk disk-0`);

    const out = path.join(home, 'damaged.raw');
    const restore = await cli(['repo', 'restore', rawPoint, '--output', out]);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toMatch(new RegExp(`error: chunk ${id} is corrupt: .*point ${rawPoint}, disk disk-0`));
    expect(fs.existsSync(out)).toBe(false);

    // A new backup of the same image stores the bad chunk again; the raw point is whole again.
    await json(['repo', 'backup-image', rawSource]);
    expect((await cli(['repo', 'verify'])).code).toBe(0);
  });

  it('prune --dry-run lists, archive protects a point from prune and gc', async () => {
    const all = await points();
    expect(all).toHaveLength(3);
    const dry = await json<{ dryRun: boolean; plan: { keep: { id: string }[]; remove: { id: string }[] } }>([
      'repo', 'prune', '--keep-last', '1', '--dry-run',
    ]);
    expect(dry.dryRun).toBe(true);
    expect(dry.plan.remove.map((p) => p.id).sort()).toEqual([vmdkPoint, rawPoint].sort());
    expect(await points()).toHaveLength(3);

    const status = await json<{ retainUntil: string; legalHold: boolean; locked: boolean }>([
      'repo', 'archive', vmdkPoint, '--until', '2999-01-01', '--hold',
    ]);
    expect(status).toMatchObject({ retainUntil: '2999-01-01T00:00:00.000Z', legalHold: true, locked: true });
    const shorter = await cli(['repo', 'archive', vmdkPoint, '--until', '2030-01-01']);
    expect(shorter.code).toBe(1);

    const pruned = await json<{ removed: string[]; plan: { keep: { id: string; reasons: string[] }[] } }>([
      'repo', 'prune', '--keep-last', '1',
    ]);
    expect(pruned.removed).toEqual([rawPoint]);
    expect(pruned.plan.keep.find((k) => k.id === vmdkPoint)?.reasons.join(' ')).toMatch(/archived/);
    // The removed point shares every chunk with the newest one, and the archived point's chunks are marked.
    const gc = await json<{ sweptChunks: number; referencedChunks: number }>(['repo', 'gc', '--grace', '0']);
    expect(gc).toMatchObject({ sweptChunks: 0 });
    expect(gc.referencedChunks).toBeGreaterThan(16);
    expect((await points()).map((p) => p.id)).toContain(vmdkPoint);
    expect((await cli(['repo', 'verify', vmdkPoint])).code).toBe(0);
    const out = path.join(home, 'archived.raw');
    expect((await cli(['repo', 'restore', vmdkPoint, '--output', out])).code).toBe(0);
    expect(sha256(out)).toBe(sha256(vmdkSource));
  });

  it('a wrong passphrase is one clear error; the passphrase can be changed', async () => {
    const wrong = await cli(['repo', 'list'], { VMKEEP_PASSPHRASE: 'not it' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim()).toBe('error: wrong passphrase: it does not unlock the repository key');
    const noTty = await vmkeep(['repo', 'list'], { home, env: { VMKEEP_REPO: repo } });
    expect(noTty.code).toBe(1);
    expect(noTty.stderr).toContain('set VMKEEP_PASSPHRASE');

    const changed = await cli(['repo', 'passphrase'], { VMKEEP_NEW_PASSPHRASE: 'a new one' });
    expect(changed.code).toBe(0);
    expect((await cli(['repo', 'list'])).stderr).toContain('wrong passphrase');
    const reopened = await cli(['repo', 'list', '--json'], { VMKEEP_PASSPHRASE: 'a new one' });
    expect(reopened.code).toBe(0);
    expect((JSON.parse(reopened.stdout) as { points: PointRow[] }).points.length).toBeGreaterThan(0);
  });
});
