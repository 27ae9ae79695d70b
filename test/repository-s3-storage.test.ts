// The ObjectStorage contract, run on a local folder and on a real S3-compatible server (s3rver); Object Lock
// requests checked against a fake client (s3rver has no Object Lock).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GetObjectLockConfigurationCommand, PutObjectLegalHoldCommand, PutObjectRetentionCommand } from '@aws-sdk/client-s3';
import { FsStorage, ObjectStorage, S3Storage } from '@vmkeep/repository';
import { S3Peer, startS3 } from './peers/s3';

let s3: S3Peer;
const tempDirs: string[] = [];

beforeAll(async () => {
  s3 = await startS3(['vmkeep-storage']);
});
afterAll(async () => {
  await s3?.stop();
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

const backends: [string, () => ObjectStorage][] = [
  [
    'fs',
    () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-storage-'));
      tempDirs.push(dir);
      return new FsStorage(dir);
    },
  ],
  [
    's3',
    () =>
      new S3Storage({
        bucket: 'vmkeep-storage',
        prefix: `t${Math.random().toString(36).slice(2)}/repo`,
        endpoint: s3.endpoint,
        region: s3.region,
        credentials: s3.credentials,
      }),
  ],
];

describe.each(backends)('ObjectStorage on %s', (name, make) => {
  let storage: ObjectStorage;
  beforeEach(() => {
    storage = make();
  });
  afterEach(() => storage.close());

  it('round-trips objects, reports absent ones as undefined, and replaces atomically', async () => {
    expect(await storage.get('config.json')).toBeUndefined();
    expect(await storage.stat('config.json')).toBeUndefined();
    await storage.put('config.json', '{"a":1}');
    await storage.put('chunks/ab12/ab12ff', Buffer.from([1, 2, 3, 0, 255]));
    expect((await storage.get('config.json'))?.toString()).toBe('{"a":1}');
    expect(await storage.get('chunks/ab12/ab12ff')).toEqual(Buffer.from([1, 2, 3, 0, 255]));
    await storage.put('config.json', '{"a":2}');
    expect((await storage.get('config.json'))?.toString()).toBe('{"a":2}');
    const st = await storage.stat('chunks/ab12/ab12ff');
    expect(st?.size).toBe(5);
    expect(Math.abs((st?.mtimeMs ?? 0) - (await storage.now()))).toBeLessThan(60_000);
  });

  it('putIfAbsent creates once and never overwrites', async () => {
    expect(await storage.putIfAbsent('archives/p/000001.json', 'first')).toBe(true);
    expect(await storage.putIfAbsent('archives/p/000001.json', 'second')).toBe(false);
    expect((await storage.get('archives/p/000001.json'))?.toString()).toBe('first');
  });

  it('lists by prefix recursively in key order, deletes idempotently', async () => {
    for (const key of ['points/b/manifest.json', 'points/a/d.fidx', 'points/a/manifest.json', 'pointsx', 'chunks/0000/x']) {
      await storage.put(key, key);
    }
    expect((await storage.list('points/')).map((o) => o.key)).toEqual([
      'points/a/d.fidx',
      'points/a/manifest.json',
      'points/b/manifest.json',
    ]);
    expect((await storage.list('points/a/m')).map((o) => [o.key, o.size])).toEqual([['points/a/manifest.json', 22]]);
    expect(await storage.list('nothing/')).toEqual([]);
    await storage.delete('points/a/d.fidx');
    await storage.delete('points/a/d.fidx');
    expect((await storage.list('points/a/')).map((o) => o.key)).toEqual(['points/a/manifest.json']);
  });

  it('touch moves the time forward and reports absent objects', async () => {
    await storage.put('chunks/abcd/abcd', 'x');
    const before = (await storage.stat('chunks/abcd/abcd'))!.mtimeMs;
    await new Promise((r) => setTimeout(r, 1100)); // S3 times have 1 s resolution
    expect(await storage.touch('chunks/abcd/abcd')).toBe(true);
    const after = (await storage.stat('chunks/abcd/abcd'))!.mtimeMs;
    // s3rver keeps LastModified on a copy onto the object itself (AWS S3 and MinIO set it to now).
    if (name === 'fs') expect(after).toBeGreaterThan(before);
    else expect(after).toBeGreaterThanOrEqual(before);
    expect((await storage.get('chunks/abcd/abcd'))?.toString()).toBe('x');
    expect(await storage.touch('chunks/abcd/missing')).toBe(false);
  });

  it('refuses keys that escape the repository', async () => {
    for (const bad of ['../x', '/etc/passwd', 'a//b', 'a/./b', '', 'a/../../b']) {
      await expect(storage.get(bad)).rejects.toMatchObject({ code: 'INVALID_STORAGE_KEY' });
    }
  });

  it('says when it cannot enforce retention (no Object Lock here)', async () => {
    await storage.put('archives/p/000001.json', 'r');
    expect(await storage.protect('archives/p/000001.json', new Date(Date.now() + 86_400_000), false)).toBe(false);
  });
});

describe('S3Storage', () => {
  it('names the failing operation when the server is unreachable, without the secret key', async () => {
    const storage = new S3Storage({
      bucket: 'vmkeep-storage',
      endpoint: 'http://127.0.0.1:9',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'very-secret-value' },
      maxAttempts: 1,
    });
    const err = (await storage.get('config.json').catch((e: unknown) => e)) as Error & { code: string };
    expect(err.code).toBe('STORAGE_ERROR');
    expect(err.message).toContain('get config.json');
    expect(err.message).not.toContain('very-secret-value');
    await storage.close();
  });

  it('sets COMPLIANCE retention and the legal hold where the bucket has Object Lock', async () => {
    const sent: object[] = [];
    const client = {
      send: (command: { input: object }) => {
        sent.push(command);
        if (command instanceof GetObjectLockConfigurationCommand) {
          return Promise.resolve({ ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled' } });
        }
        return Promise.resolve({});
      },
      destroy: () => undefined,
    } as unknown as ConstructorParameters<typeof S3Storage>[0]['client'];
    const storage = new S3Storage({ bucket: 'locked', prefix: 'repo', client });
    const until = new Date('2031-01-01T00:00:00Z');
    expect(await storage.protect('chunks/abcd/abcd', until, true)).toBe(true);
    const retention = sent.find((c) => c instanceof PutObjectRetentionCommand) as PutObjectRetentionCommand;
    expect(retention.input).toMatchObject({ Bucket: 'locked', Key: 'repo/chunks/abcd/abcd' });
    expect(retention.input.Retention).toEqual({ Mode: 'COMPLIANCE', RetainUntilDate: until });
    const hold = sent.find((c) => c instanceof PutObjectLegalHoldCommand) as PutObjectLegalHoldCommand;
    expect(hold.input.LegalHold).toEqual({ Status: 'ON' });
    // The bucket's configuration is asked once.
    await storage.protect('chunks/abcd/abce', until, false);
    expect(sent.filter((c) => c instanceof GetObjectLockConfigurationCommand)).toHaveLength(1);
  });
});
