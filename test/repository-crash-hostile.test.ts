/**
 * Hostile manifests and indexes through `vmkeep repo` (issue 4): a committed point's manifest or index is
 * replaced by one with ids of the wrong length, absurd sizes, counts that do not add up, a newer format, or
 * (encrypted repository) a tampered seal. Every command touching it fails with one typed `error:` line naming
 * the point and the problem — no stack trace, no out-of-memory, no output file — and the other points still
 * restore. (Unit-level cases: libs/repository/src/fixed-index.spec.ts and repository.spec.ts.)
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BufferDisk } from '@vmkeep/disk';
import {
  CHUNK_ID_BYTES,
  closeSharedChunkWorkers,
  INDEX_HEADER_SIZE,
  INDEX_OFF_CHUNK_SIZE,
  INDEX_OFF_COUNT,
  INDEX_OFF_DISK_SIZE,
  Repository,
} from '@vmkeep/repository';
import { runCliInProcess } from './peers/cli';
import { seededBytes } from './peers/disk-images';
import { makeTempDir } from './peers/process';

const CHUNK = 256 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Runs the CLI in process with VMKEEP_REPO (and a passphrase) set; returns exit code and output. */
const vmkeep = (args: string[], env: Record<string, string>, home: string) => runCliInProcess(args, { home, env });

describe('hostile manifests and indexes → typed errors through vmkeep repo', () => {
  let home: string;
  let dir: string;
  let good: string;
  let victim: string;
  let goodData: Buffer;
  let manifestText: string;
  let indexBytes: Buffer;
  const env = () => ({ VMKEEP_REPO: dir });
  const pointDir = () => path.join(dir, 'points', victim);
  const indexFile = () => path.join(pointDir(), 'disk-0.fidx');
  const manifestFile = () => path.join(pointDir(), 'manifest.json');

  /** Every command on the victim fails with one `error:` line matching `problem`, and writes no file. */
  const refused = async (problem: RegExp, commands: string[][]) => {
    for (const args of commands) {
      const out = path.join(home, 'out.raw');
      const r = await vmkeep(args.map((a) => (a === 'OUT' ? out : a)), env(), home);
      expect({ args, code: r.code }).toEqual({ args, code: 1 });
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^error: /);
      expect(lines[0]).toMatch(problem);
      expect(lines[0]).toContain(victim);
      expect(fs.existsSync(out)).toBe(false);
    }
  };
  const restoreVictim = () => [['repo', 'restore', victim, '--output', 'OUT']];

  beforeAll(async () => {
    home = makeTempDir('vmkeep-crash-hostile-');
    dir = path.join(home, 'repo');
    const repo = await Repository.init(dir, { chunkSize: CHUNK });
    goodData = seededBytes('hostile', 'good', 4 * CHUNK);
    const write = async (data: Buffer) => {
      const w = repo.beginPoint();
      await w.writeDisk('disk-0', new BufferDisk(data));
      return (await w.commit({ vm: { name: 'hostile' } })).id;
    };
    good = await write(goodData);
    victim = await write(seededBytes('hostile', 'victim', 6 * CHUNK));
    await repo.close();
    manifestText = fs.readFileSync(manifestFile(), 'utf8');
    indexBytes = fs.readFileSync(indexFile());
  });
  afterEach(() => {
    fs.writeFileSync(manifestFile(), manifestText);
    fs.writeFileSync(indexFile(), indexBytes);
  });
  afterAll(async () => {
    await closeSharedChunkWorkers();
    fs.rmSync(home, { recursive: true, force: true });
  });

  const manifest = () => JSON.parse(manifestText) as { id: string; disks: Record<string, unknown>[] };
  const withDisk = (change: Record<string, unknown>) => {
    const m = manifest();
    return JSON.stringify({ ...m, disks: [{ ...m.disks[0], ...change }] });
  };

  it.each([
    ['an id of the wrong length', () => JSON.stringify({ ...manifest(), id: `${manifest().id}0` }), /manifest of point .*: id ".*" does not match its folder/],
    ['an absurd disk size', () => withDisk({ size: 2 ** 60 }), /disk disk-0: invalid size/],
    ['a chunk count that does not match the size', () => withDisk({ chunks: 2 ** 40 }), /chunk count .* does not match its size/],
    ['an absurd chunk size', () => withDisk({ chunkSize: 2 ** 31 }), /invalid chunk size/],
    ['a disk key leaving the point folder', () => withDisk({ key: '../../config.json' }), /invalid disk key/],
    ['a newer format', () => JSON.stringify({ ...manifest(), format: 99 }), /format 99, newer than the supported .*; upgrade VMKeep/],
    ['no JSON at all', () => '\u0000'.repeat(4096), /not valid JSON/],
  ])('a manifest with %s', async (_name, text, problem) => {
    fs.writeFileSync(manifestFile(), text());
    await refused(problem, [...restoreVictim(), ['repo', 'list']]);
  });

  const patchIndex = (patch: (b: Buffer) => Buffer) => fs.writeFileSync(indexFile(), patch(Buffer.from(indexBytes)));
  it.each([
    ['ids of the wrong length (a short last id)', (b: Buffer) => b.subarray(0, b.length - 1), /truncated/],
    ['one id too many', (b: Buffer) => Buffer.concat([b, Buffer.alloc(CHUNK_ID_BYTES, 7)]), /truncated or padded/],
    ['an absurd disk size', (b: Buffer) => (b.writeBigUInt64LE(2n ** 62n, INDEX_OFF_DISK_SIZE), b), /absurd disk size/],
    ['an absurd chunk count', (b: Buffer) => (b.writeBigUInt64LE(2n ** 40n, INDEX_OFF_COUNT), b), /chunk count/],
    ['another chunk size', (b: Buffer) => (b.writeUInt32LE(12345, INDEX_OFF_CHUNK_SIZE), b), /chunk size 12345/],
    ['only part of a header', (b: Buffer) => b.subarray(0, INDEX_HEADER_SIZE / 2), /shorter than the header/],
  ])('an index with %s', async (_name, patch, problem) => {
    patchIndex(patch);
    await refused(problem, restoreVictim());
    const verify = await vmkeep(['repo', 'verify', '--json'], env(), home);
    expect(verify.code).toBe(1);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: false, badIndexes: [expect.objectContaining({ pointId: victim, diskKey: 'disk-0' })] });
  });

  it('the other point of the same repository still lists, verifies and restores byte-exact', async () => {
    const out = path.join(home, 'good.raw');
    expect((await vmkeep(['repo', 'restore', good, '--output', out], env(), home)).code).toBe(0);
    expect(sha256(fs.readFileSync(out))).toBe(sha256(goodData));
    const verify = await vmkeep(['repo', 'verify', '--json'], env(), home);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, points: [good, victim] });
  });
});
