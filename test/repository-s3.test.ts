/**
 * Repositories on S3-compatible object storage, against a real s3rver: round trip, dedup, encryption, verify of a
 * corrupted object, prune, archives (Object Lock requests checked on a spy, s3rver has none), garbage collection
 * alongside a backup, a writer that dies mid-write, backup copy local → S3 → local, and `vmkeep repo ...` on an
 * s3:// URL end to end with a byte-exact restore.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  CorruptChunkError,
  FsStorage,
  ObjectStorage,
  Repository,
  RepositoryLockedError,
  RepositoryNotEmptyError,
  RuntimeOptions,
  S3Storage,
  WrongPassphraseError,
  copyPoints,
  inlineChunkCodec,
} from '@vmkeep/repository';
import { BufferDisk } from '@vmkeep/disk';
import { runCliInProcess } from './peers/cli';
import { makeTempDir } from './peers/process';
import { S3Peer, startS3 } from './peers/s3';

const KIB = 1024;
const CHUNK = 256 * KIB;
const BUCKET = 'vmkeep-repo';
const PASS = 's3 passphrase';

let s3: S3Peer;
let home: string;
const open: Repository[] = [];

beforeAll(async () => {
  s3 = await startS3([BUCKET]);
  home = makeTempDir('vmkeep-repo-s3-');
});
afterAll(async () => {
  for (const r of open) await r.close().catch(() => undefined);
  await s3?.stop();
  fs.rmSync(home, { recursive: true, force: true });
});

let n = 0;
/** A fresh s3:// location in the test bucket. */
const location = () => `s3://${BUCKET}/t${++n}-${randomBytes(3).toString('hex')}/repo`;
const runtime = (extra: RuntimeOptions = {}): RuntimeOptions => ({
  codec: inlineChunkCodec,
  s3: { endpoint: s3.endpoint, region: s3.region, credentials: s3.credentials },
  ...extra,
});
const encrypted = { encrypt: true, kdf: 'insecure-fast-for-tests' as const, chunkSize: CHUNK };

async function init(where: string | ObjectStorage, opts = {}, extra: RuntimeOptions = {}): Promise<Repository> {
  const r = await Repository.init(where, { chunkSize: CHUNK, ...opts }, runtime(extra));
  open.push(r);
  return r;
}
async function reopen(where: string | ObjectStorage, extra: RuntimeOptions = {}): Promise<Repository> {
  const r = await Repository.open(where, runtime(extra));
  open.push(r);
  return r;
}
/** A storage on the same bucket and prefix as `where`, to look at or damage objects directly. */
function rawStorage(where: string): S3Storage {
  const [, , bucket, ...prefix] = where.split('/');
  return new S3Storage({ bucket, prefix: prefix.join('/'), endpoint: s3.endpoint, region: s3.region, credentials: s3.credentials });
}
/** Random data with repeated and zero regions, `units` chunks long. */
function image(pattern: string): Buffer {
  const same = randomBytes(CHUNK);
  return Buffer.concat([...pattern].map((c) => (c === 'z' ? Buffer.alloc(CHUNK) : c === 'd' ? same : randomBytes(CHUNK))));
}
async function backup(repo: Repository, data: Buffer, vm = 'vm1') {
  const point = repo.beginPoint();
  const stats = await point.writeDisk('disk-0', new BufferDisk(data));
  return { manifest: await point.commit({ vm }), stats };
}
async function restore(repo: Repository, pointId: string): Promise<Buffer> {
  const disk = await repo.openDisk(pointId, 'disk-0');
  try {
    return await disk.read(0, disk.size);
  } finally {
    await disk.close();
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** s3rver's times have 1 s resolution: wait until "older than now" is unambiguous. */
const tick = () => sleep(1100);

describe('Repository on S3 (s3rver)', () => {
  it('round-trips an encrypted point, deduplicates, and keeps names and keys off the bucket', async () => {
    const where = location();
    const repo = await init(where, encrypted, { passphrase: PASS });
    await expect(init(where, encrypted, { passphrase: PASS })).rejects.toBeInstanceOf(RepositoryNotEmptyError);
    const data = image('rdzrd');
    const first = await backup(repo, data);
    expect(first.stats).toMatchObject({ newChunks: 3, zeroChunks: 1, dedupChunks: 1 });
    const second = await backup(repo, data, 'vm2');
    expect(second.stats).toMatchObject({ newChunks: 0, dedupChunks: 4 });

    const again = await reopen(where, { passphrase: PASS });
    expect((await again.listPoints()).map((m) => m.id)).toEqual([first.manifest.id, second.manifest.id]);
    expect((await restore(again, second.manifest.id)).equals(data)).toBe(true);
    await expect(reopen(where, { passphrase: 'wrong' })).rejects.toBeInstanceOf(WrongPassphraseError);

    const objects = await rawStorage(where).list('');
    const keys = objects.map((o) => o.key);
    expect(keys).toEqual(expect.arrayContaining(['config.json', 'key.json', `points/${first.manifest.id}/manifest.json`]));
    expect(keys.filter((k) => k.startsWith('chunks/'))).toHaveLength(3);
    expect(keys.some((k) => k.startsWith('writers/') || k.startsWith('locks/'))).toBe(false);
    const manifest = await rawStorage(where).get(`points/${first.manifest.id}/manifest.json`);
    expect(manifest?.toString()).not.toContain('vm1');
    expect((await again.describe({ storage: true })).storage?.chunks).toBe(3);
  });

  it('verify names a corrupted object, restore fails loudly, the next backup stores the chunk again', async () => {
    const where = location();
    const repo = await init(where);
    const data = image('rrr');
    const { manifest } = await backup(repo, data);
    const storage = rawStorage(where);
    const chunkKeys = (await storage.list('chunks/')).map((o) => o.key);
    const victim = chunkKeys[1];
    const blob = (await storage.get(victim)) as Buffer;
    blob[blob.length - 5] ^= 0x40;
    await storage.put(victim, blob);
    await storage.close();

    const report = await repo.verify();
    expect(report.badChunks.map((b) => b.id)).toEqual([path.basename(victim)]);
    expect(report.brokenPoints).toEqual([manifest.id]);
    await expect(restore(repo, manifest.id)).rejects.toBeInstanceOf(CorruptChunkError);
    expect((await repo.listBadChunks()).map((b) => b.id)).toEqual([path.basename(victim)]);

    const repaired = await backup(repo, data);
    expect(repaired.stats.newChunks).toBe(1);
    expect((await repo.verify()).badChunks).toEqual([]);
    expect((await restore(repo, manifest.id)).equals(data)).toBe(true);
  });

  it('prunes by policy, keeps archived points, and asks for Object Lock on every object of an archive', async () => {
    const where = location();
    const protectedKeys: string[] = [];
    const storage = rawStorage(where);
    // s3rver has no Object Lock: only this call is observed (the request itself is covered by the storage tests).
    const spy = Object.assign(Object.create(storage) as S3Storage, {
      protect: async (key: string, until: Date, hold: boolean) => {
        protectedKeys.push(`${key} ${until.toISOString().slice(0, 10)} ${hold}`);
        return true;
      },
    });
    const repo = await init(spy);
    const points = [];
    for (let i = 0; i < 3; i++) points.push((await backup(repo, image('rz'))).manifest);
    await repo.archivePoint(points[0].id, { retainUntil: '2099-01-01', legalHold: true });
    const chunkIds = (await repo.readIndex(points[0].id, points[0].disks[0])).idAt(0).toString('hex');
    expect(protectedKeys).toEqual(
      expect.arrayContaining([
        `points/${points[0].id}/manifest.json 2099-01-01 true`,
        `points/${points[0].id}/disk-0.fidx 2099-01-01 true`,
        `archives/${points[0].id}/000001.json 2099-01-01 true`,
        `chunks/${chunkIds.slice(0, 4)}/${chunkIds} 2099-01-01 true`,
      ]),
    );

    const dry = await repo.prune({ keepLast: 1 }, { dryRun: true });
    expect(dry.plan.remove.map((r) => r.id)).toEqual([points[1].id]);
    const result = await repo.prune({ keepLast: 1 });
    expect(result.removed).toEqual([points[1].id]);
    expect((await repo.listPoints()).map((m) => m.id)).toEqual([points[0].id, points[2].id]);
    await expect(repo.deletePoint(points[0].id)).rejects.toThrow(/archived/);
    expect(await rawStorage(where).list(`points/${points[1].id}/`)).toEqual([]);
  });

  it('garbage collection waits for a running backup, new backups wait for it, and nothing needed is swept', async () => {
    const where = location();
    const repo = await init(where);
    const old = await backup(repo, image('rr'));
    const keep = image('rrr');
    const kept = await backup(repo, keep);
    await repo.deletePoint(old.manifest.id);
    await tick();

    // A backup is running (its marker exists) when the collection starts.
    const writer = repo.beginPoint();
    const data = image('rdr');
    await writer.writeDisk('disk-0', new BufferDisk(data));
    let gcDone = false;
    const gc = repo.collectGarbage({ graceMs: 0, writerWaitMs: 30_000 }).finally(() => (gcDone = true));
    await sleep(1500);
    expect(gcDone).toBe(false);
    // While the collection holds the lock, a new backup refuses to start (and leaves no marker behind).
    const refused = repo.beginPoint();
    await expect(refused.writeDisk('disk-0', new BufferDisk(image('r')))).rejects.toBeInstanceOf(RepositoryLockedError);
    const running = await writer.commit({ vm: 'running' });
    const report = await gc;
    expect(report.sweptChunks).toBe(2);
    expect(report.referencedChunks).toBe(6);
    expect(report.staleWritersRemoved).toEqual([]);

    expect((await repo.verify()).badChunks).toEqual([]);
    expect((await restore(repo, running.id)).equals(data)).toBe(true);
    expect((await restore(repo, kept.manifest.id)).equals(keep)).toBe(true);
    // Lock released: backups run again.
    expect((await backup(repo, image('r'))).stats.newChunks).toBe(1);
    // A collection that cannot wait any longer gives up without sweeping.
    const busy = repo.beginPoint();
    await busy.writeDisk('disk-0', new BufferDisk(image('r')));
    await expect(repo.collectGarbage({ graceMs: 0, writerWaitMs: 600 })).rejects.toThrow(/running writers/);
    await busy.abort();
  });

  it('a writer that dies mid-write leaves no point; the collection clears what it left', async () => {
    const where = location();
    const repo = await init(where);
    const committed = await backup(repo, image('rr'));

    // Aborted by its signal in the middle of a disk.
    const controller = new AbortController();
    const aborted = repo.beginPoint();
    const slow = image('rrrrrrrr');
    const disk = new BufferDisk(slow);
    const read = disk.read.bind(disk);
    let reads = 0;
    disk.read = async (offset, length) => {
      if (++reads === 3) controller.abort();
      return read(offset, length);
    };
    await expect(aborted.writeDisk('disk-0', disk, { signal: controller.signal })).rejects.toThrow(/abort/i);
    await aborted.abort();

    // Killed: it wrote a disk and its marker, then never committed nor cleaned up.
    const crashed = repo.beginPoint();
    await crashed.writeDisk('disk-0', new BufferDisk(image('rr')));
    expect((await repo.listPoints()).map((m) => m.id)).toEqual([committed.manifest.id]);
    const storage = rawStorage(where);
    expect((await storage.list('writers/')).map((o) => o.key)).toEqual([`writers/${crashed.id}.json`]);
    expect((await storage.list(`points/${aborted.id}/`)).length).toBe(0);
    expect((await repo.verify()).badChunks).toEqual([]);

    await tick();
    const report = await repo.collectGarbage({ graceMs: 0, staleWriterMs: 0 });
    expect(report.staleWritersRemoved).toEqual([crashed.id]);
    expect(report.partialPointsRemoved).toEqual([crashed.id]);
    expect(report.sweptChunks).toBeGreaterThanOrEqual(2);
    expect(await storage.list('writers/')).toEqual([]);
    expect(await storage.list(`points/${crashed.id}/`)).toEqual([]);
    expect((await restore(repo, committed.manifest.id)).length).toBe(2 * CHUNK);
    await expect(crashed.commit({ vm: 'late' })).rejects.toThrow(/stale|marker/i);
  });

  it('copies local → S3 → local, re-encrypting, and restores byte-exact', async () => {
    const localA = path.join(home, 'copy-a');
    const localB = path.join(home, 'copy-b');
    const source = await init(localA, encrypted, { passphrase: 'a' });
    const data = image('rzdrd');
    const { manifest } = await backup(source, data);
    const remote = await init(location(), encrypted, { passphrase: 'b' });
    const up = await copyPoints(source, remote);
    expect(up).toMatchObject({ copied: [manifest.id], chunksTransferred: 3 });
    expect((await copyPoints(source, remote)).skipped).toEqual([manifest.id]);
    const back = await init(new FsStorage(localB));
    const down = await copyPoints(remote, back);
    expect(down).toMatchObject({ copied: [manifest.id], chunksTransferred: 3 });
    expect((await restore(back, manifest.id)).equals(data)).toBe(true);
    expect((await back.verify()).badChunks).toEqual([]);
  });
});

/** Runs the vmkeep CLI in this process with `env` added (it reads the environment through libs/config). */
const vmkeep = (args: string[], env: Record<string, string>) => runCliInProcess(args, { home, env });

describe('vmkeep repo on s3://', () => {
  it('init, backup-image, list, restore and verify end to end; restores byte-exact; secrets stay out of output', async () => {
    const repoUrl = location();
    const env = { ...s3.env, VMKEEP_REPO: repoUrl, VMKEEP_PASSPHRASE: PASS };
    const ok = async (args: string[]) => {
      const r = await vmkeep([...args, '--json'], env);
      if (r.code !== 0) throw new Error(`vmkeep ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
      expect(r.stdout + r.stderr).not.toContain(PASS);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const src = path.join(home, 'cli.raw');
    fs.writeFileSync(src, Buffer.concat([image('rzdd'), randomBytes(4096)]));
    expect(await ok(['repo', 'init', '--encrypt', '--chunk-size', '256K'])).toMatchObject({ encrypted: true, chunkSize: CHUNK });
    const backed = await ok(['repo', 'backup-image', src]);
    const listed = (await ok(['repo', 'list'])) as { points: { id: string; totalSize: number }[] };
    expect(listed.points).toHaveLength(1);
    expect(listed.points[0].totalSize).toBe(fs.statSync(src).size);
    expect(JSON.stringify(backed)).toContain(listed.points[0].id);
    const out = path.join(home, 'cli-restored.raw');
    await ok(['repo', 'restore', listed.points[0].id, '--output', out]);
    const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    expect(sha(out)).toBe(sha(src));
    expect(await ok(['repo', 'verify'])).toMatchObject({ badChunks: [] });

    // A bucket that does not exist: one clear line naming the location, no credentials in it.
    const missing = await vmkeep(['repo', 'list', '--repo', 's3://no-such-bucket/x'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/^error: storage s3:\/\/no-such-bucket\/x at http:\/\/127\.0\.0\.1:\d+: get config\.json failed: /);
    expect(missing.stderr).not.toContain(s3.credentials.secretAccessKey);
  });
});
