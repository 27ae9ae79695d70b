// The decoded-chunk cache of instant restore on scratch storage (libs/nbd ScratchCache, wired into InstantSessions
// and `vmkeep repo nbd`), over a real repository with real NBD clients (nbdcopy, qemu-img, qemu-io): every chunk is
// decoded at most once per session (counters of the export), reads stay byte-exact, background hydration fills the
// cache, a chunk that fails verification is an error and is never cached, writes still land only in the overlay,
// the cache file goes with the session, and a scratch folder without room falls back to memory and says why.
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { VmkeepError } from '@vmkeep/contracts';
import { BufferDisk } from '@vmkeep/disk';
import { CHUNK_FANOUT_CHARS, Repository, closeSharedChunkWorkers } from '@vmkeep/repository';
import { InstantSessions, type InstantSessionView } from '@vmkeep/restore';
import { CLI_BIN, ensureBuilt } from './peers/appliance';
import { seededBytes } from './peers/disk-images';
import { makeTempDir, requireBinary } from './peers/process';
import { until } from './peers/webhook-receiver';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;
/** Polls until `condition` holds. */
const settled = (what: string, condition: () => boolean, timeoutMs: number) => until(what, async () => condition() || undefined, timeoutMs);

describe('instant restore: decoded-chunk cache on scratch storage', () => {
  let dir: string;
  let repoPath: string;
  let repo: Repository;
  let pointId: string;
  let sessions: InstantSessions;
  const logs: string[] = [];
  /** disk-0: 8 MiB of random bytes with a zero MiB (holes) at 5–6 MiB: 28 data chunks of 256 KiB. */
  const data = seededBytes('nbd-cache', 'disk-0', 8 * MiB);
  data.fill(0, 5 * MiB, 6 * MiB);
  const DATA_CHUNKS = 28;
  /** disk-bad: 8 chunks, chunk i filled with byte 0x10 + i; chunk 5 is damaged in the repository. */
  const BAD_CHUNK = 5;
  const bad = Buffer.alloc(8 * CHUNK);
  for (let i = 0; i < 8; i++) bad.fill(0x10 + i, i * CHUNK, (i + 1) * CHUNK);
  const raw = () => path.join(dir, 'disk-0.raw');

  const newSessions = (extra: Partial<ConstructorParameters<typeof InstantSessions>[0]> = {}) =>
    new InstantSessions({
      host: '127.0.0.1',
      port: 0,
      allow: [],
      scratchDir: path.join(dir, 'scratch'),
      migrateDir: path.join(dir, 'migrated'),
      log: (m) => logs.push(m),
      openDisk: async (id, key) => {
        if (id !== pointId) throw new VmkeepError(`restore point ${id} not found`, 'not_found');
        const diskKey = key ?? 'disk-0';
        return { disk: await repo.openDisk(pointId, diskKey), diskKey };
      },
      ...extra,
    });
  const cacheOf = (id: string) => sessions.get(id).cache!;
  const cacheFile = (s: InstantSessionView) => path.join(dir, 'scratch', s.id, 'cache.data');

  beforeAll(async () => {
    for (const bin of ['nbdcopy', 'qemu-img', 'qemu-io']) requireBinary(bin);
    dir = makeTempDir('vmkeep-nbd-cache-');
    fs.writeFileSync(raw(), data);
    repoPath = path.join(dir, 'repo');
    repo = await Repository.init(repoPath, { chunkSize: CHUNK });
    const writer = repo.beginPoint();
    await writer.writeDisk('disk-0', new BufferDisk(data));
    await writer.writeDisk('disk-bad', new BufferDisk(bad));
    pointId = (await writer.commit({ vm: 'nbd-cache' })).id;
    const manifest = (await repo.listPoints()).find((p) => p.id === pointId)!;
    const index = await repo.readIndex(pointId, manifest.disks.find((d) => d.key === 'disk-bad')!);
    const id = index.idAt(BAD_CHUNK).toString('hex');
    const file = path.join(repoPath, 'chunks', id.slice(0, CHUNK_FANOUT_CHARS), id);
    const blob = fs.readFileSync(file);
    blob[Math.floor(blob.length / 2)] ^= 0x55;
    fs.writeFileSync(file, blob);
    sessions = newSessions();
  });

  afterAll(async () => {
    await sessions?.shutdown();
    await closeSharedChunkWorkers();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('decodes each chunk once: a second full read decodes nothing, bytes exact; the cache file goes on close', async () => {
    const s = await sessions.start(pointId, 'disk-0');
    expect(s.cache).toMatchObject({ blockSize: CHUNK, blocks: 32, dataBlocks: DATA_CHUNKS, cachedBlocks: 0, decodedBlocks: 0, hydration: 'off' });
    expect(fs.statSync(cacheFile(s)).size).toBe(data.length);
    const copy = path.join(dir, 'copy.raw');
    await run('nbdcopy', [s.url, copy]); // 4 connections, many requests in flight
    expect(fs.readFileSync(copy).equals(data)).toBe(true);
    await settled('all chunks written to the cache file', () => cacheOf(s.id).cachedBlocks === DATA_CHUNKS, 10_000);
    expect(cacheOf(s.id).decodedBlocks).toBe(DATA_CHUNKS);
    // The file holds the decoded point (holes stay holes and read as zeros).
    expect(fs.readFileSync(cacheFile(s)).equals(data)).toBe(true);

    const before = cacheOf(s.id);
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', raw(), s.url]);
    await run('nbdcopy', ['--no-extents', s.url, 'null:']);
    const after = cacheOf(s.id);
    expect(after.decodedBlocks).toBe(DATA_CHUNKS);
    expect(after.fileReads + after.memoryReads).toBeGreaterThan(before.fileReads + before.memoryReads + 30);

    await sessions.close(s.id);
    expect(fs.existsSync(path.dirname(cacheFile(s)))).toBe(false);
    // A cache left behind by a process that died goes with the start-up sweep of the scratch folder.
    fs.mkdirSync(path.join(dir, 'scratch', 'lost-session'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'scratch', 'lost-session', 'cache.data'), 'x');
    expect(await sessions.sweepScratch()).toEqual(['lost-session']);
  });

  it('hydrates the whole point in the background; reads after it decode nothing', async () => {
    const s = await sessions.start(pointId, 'disk-0', { hydrate: true });
    await settled('hydration done', () => cacheOf(s.id).hydration === 'done', 20_000);
    expect(cacheOf(s.id)).toMatchObject({ cachedBlocks: DATA_CHUNKS, decodedBlocks: DATA_CHUNKS, failedBlocks: 0 });
    const copy = path.join(dir, 'hydrated.raw');
    await run('nbdcopy', [s.url, copy]);
    expect(fs.readFileSync(copy).equals(data)).toBe(true);
    expect(cacheOf(s.id).decodedBlocks).toBe(DATA_CHUNKS);
    await sessions.close(s.id);
  });

  it('a chunk that fails verification is an error for every read of it, never zeros, never cached', async () => {
    const s = await sessions.start(pointId, 'disk-bad', { hydrate: true });
    await settled('hydration done', () => cacheOf(s.id).hydration === 'done', 20_000);
    expect(cacheOf(s.id)).toMatchObject({ dataBlocks: 8, cachedBlocks: 7, failedBlocks: 1 });
    const at = BAD_CHUNK * CHUNK;
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = await run('qemu-io', ['-r', '-f', 'raw', '-c', `read -P 0x15 ${at + 4096} 4096`, s.url]).catch((e: { stdout: string; stderr: string }) => e);
      expect(`${r.stdout}${r.stderr}`).toMatch(/read failed|Input\/output error/);
    }
    // The chunks around it are served.
    const ok = await run('qemu-io', ['-r', '-f', 'raw', '-c', `read -P 0x14 ${at - 4096} 4096`, '-c', `read -P 0x16 ${at + CHUNK} 4096`, s.url]);
    expect(ok.stdout).not.toMatch(/fail|Pattern verification/);
    await expect(run('nbdcopy', [s.url, path.join(dir, 'bad.raw')])).rejects.toBeDefined();
    expect(cacheOf(s.id)).toMatchObject({ cachedBlocks: 7 });
    // Nothing of the bad chunk reached the cache file.
    const fd = fs.openSync(cacheFile(s), 'r');
    const inFile = Buffer.alloc(CHUNK);
    fs.readSync(fd, inFile, 0, CHUNK, at);
    fs.closeSync(fd);
    expect(inFile.equals(Buffer.alloc(CHUNK))).toBe(true);
    await sessions.close(s.id);
  });

  it('writes still land only in the overlay; the cache keeps the point and goes on close', async () => {
    const s = await sessions.start(pointId, 'disk-0', { writable: true });
    const at = 3 * MiB + 1000;
    await run('qemu-io', ['-f', 'raw', '-c', `write -P 0x42 ${at} 8192`, '-c', 'flush', '-c', `read -P 0x42 ${at} 8192`, s.url]);
    // The partial-block write read its chunk from the point through the cache: the file holds the point's bytes.
    const inFile = Buffer.alloc(8192);
    const fd = fs.openSync(cacheFile(s), 'r');
    try {
      await settled('the written chunk in the cache file', () => {
        fs.readSync(fd, inFile, 0, 8192, at);
        return inFile.equals(data.subarray(at, at + 8192));
      }, 10_000);
    } finally {
      fs.closeSync(fd);
    }
    expect(sessions.get(s.id).overlayBytes).toBeGreaterThan(0);
    await sessions.close(s.id);
    expect(fs.existsSync(path.join(dir, 'scratch', s.id))).toBe(false);
    const again = await sessions.start(pointId, 'disk-0');
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', raw(), again.url]);
    await sessions.close(again.id);
  });

  it('without room in the scratch folder it serves from memory as before and logs why', async () => {
    const small = newSessions({ diskCache: { maxBytes: MiB } });
    try {
      const s = await small.start(pointId, 'disk-0');
      expect(s.cache).toBeUndefined();
      expect(logs.join('\n')).toMatch(/no scratch cache: the disk holds 7 MiB of data, above the scratch cache limit of 1 MiB/);
      await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', raw(), s.url]);
      expect(fs.existsSync(path.join(dir, 'scratch', s.id, 'cache.data'))).toBe(false);
      await small.close(s.id);
    } finally {
      await small.shutdown();
    }
  });

  it('vmkeep repo nbd --hydrate caches the disk in its temp folder and removes it on exit', async () => {
    await ensureBuilt();
    const tmp = path.join(dir, 'tmp');
    fs.mkdirSync(tmp);
    const child = spawn(process.execPath, [CLI_BIN, 'repo', 'nbd', pointId, '--listen', '127.0.0.1:0', '--hydrate', '--json'], {
      env: { PATH: process.env.PATH, HOME: dir, VMKEEP_REPO: repoPath, TMPDIR: tmp },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    let out = '';
    const info = await new Promise<{ url: string; cacheDir: string | null; overlayDir: string | null }>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.trimEnd().endsWith('}')) resolve(JSON.parse(out) as { url: string; cacheDir: string | null; overlayDir: string | null });
      });
      void exited.then((code) => reject(new Error(`repo nbd exited (${code}) before serving`)));
    });
    expect(info.overlayDir).toBeNull();
    expect(path.dirname(info.cacheDir!)).toBe(tmp);
    const file = path.join(info.cacheDir!, 'cache.data');
    // Hydration fills the file with the point's bytes.
    await settled('the cache file holds the whole disk', () => fs.readFileSync(file).equals(data), 20_000);
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', raw(), info.url]);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });
});
