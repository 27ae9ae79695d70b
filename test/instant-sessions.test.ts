// Instant-restore sessions (libs/restore, without Nest) over a real repository with real NBD clients: read-only and
// writable sessions, "migrate to production" as raw and VMDK (checked with qemu-img compare), discard, expiry, and
// the errors callers get for bad input.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { VmkeepError } from '@vmkeep/contracts';
import { BufferDisk } from '@vmkeep/disk';
import { Repository, closeSharedChunkWorkers } from '@vmkeep/repository';
import { InstantSessions } from '@vmkeep/restore';
import { makeTempDir, requireBinary } from './peers/process';

const run = promisify(execFile);
const MiB = 1024 * 1024;

describe('instant-restore sessions', () => {
  let dir: string;
  let repo: Repository;
  let pointId: string;
  let sessions: InstantSessions;
  const data = Buffer.alloc(6 * MiB);
  const logs: string[] = [];

  beforeAll(async () => {
    for (const bin of ['nbdinfo', 'nbdcopy', 'qemu-img', 'qemu-io']) requireBinary(bin);
    for (let i = 0; i < 2 * MiB; i++) data[i] = (i * 13 + 5) & 0xff;
    data.fill(0x77, 4 * MiB, 5 * MiB);
    dir = makeTempDir('vmkeep-instant-');
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 256 * 1024 });
    const writer = repo.beginPoint();
    await writer.writeDisk('disk-0', new BufferDisk(data));
    await writer.writeDisk('disk-1', new BufferDisk(Buffer.alloc(MiB, 1)));
    pointId = (await writer.commit({ vm: 'instant' })).id;
    sessions = new InstantSessions({
      host: '127.0.0.1',
      port: 0,
      allow: [],
      scratchDir: path.join(dir, 'scratch'),
      migrateDir: path.join(dir, 'migrated'),
      minuteMs: 300,
      log: (m) => logs.push(m),
      openDisk: async (id, key) => {
        if (id !== pointId) throw new VmkeepError(`restore point ${id} not found`, 'not_found');
        const diskKey = key ?? 'disk-0';
        return { disk: await repo.openDisk(pointId, diskKey), diskKey };
      },
    });
  });

  afterAll(async () => {
    await sessions?.shutdown();
    await closeSharedChunkWorkers();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves a point read-only: exact bytes, writes refused', async () => {
    const s = await sessions.start(pointId, undefined, { ttlMinutes: 60 });
    expect(s).toMatchObject({ pointId, diskKey: 'disk-0', writable: false, sizeBytes: data.length, overlayBytes: 0 });
    expect(s.url).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{32}$/);
    expect(Date.parse(s.expiresAt) - Date.parse(s.createdAt)).toBe(60 * 300);
    const out = path.join(dir, 'ro.raw');
    await run('nbdcopy', [s.url, out]);
    expect(fs.readFileSync(out).equals(data)).toBe(true);
    const info = JSON.parse((await run('nbdinfo', ['--json', s.url])).stdout) as { exports: Array<Record<string, unknown>> };
    expect(info.exports[0]['is_read_only']).toBe(true);
    await expect(run('qemu-io', ['-f', 'raw', '-c', 'write 0 512', s.url])).rejects.toBeDefined();
    expect(sessions.list().map((x) => x.id)).toContain(s.id);
    expect(await sessions.close(s.id)).toEqual({ id: s.id, migrated: undefined });
    expect(sessions.list().map((x) => x.id)).not.toContain(s.id);
    await expect(run('nbdinfo', ['--json', s.url])).rejects.toBeDefined();
  });

  it('keeps writes in an overlay and migrates the merged disk to raw and VMDK', async () => {
    const s = await sessions.start(pointId, 'disk-0', { writable: true, ttlMinutes: 60 });
    expect(s.writable).toBe(true);
    await run('qemu-io', ['-f', 'raw', '-c', `write -P 0x42 ${3 * MiB} 8192`, '-c', `write -z ${4 * MiB} ${MiB}`, '-c', 'flush', s.url]);
    const expected = Buffer.from(data);
    expected.fill(0x42, 3 * MiB, 3 * MiB + 8192);
    expected.fill(0, 4 * MiB, 5 * MiB);
    const expectedFile = path.join(dir, 'expected.raw');
    fs.writeFileSync(expectedFile, expected);
    expect(sessions.get(s.id).overlayBytes).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(dir, 'scratch', s.id))).toBe(true);

    const closed = await sessions.close(s.id, { migrateTo: 'web01-disk0.raw', format: 'raw' });
    expect(closed.migrated).toMatchObject({ path: path.join(dir, 'migrated', 'web01-disk0.raw'), format: 'raw' });
    expect(fs.readFileSync(closed.migrated!.path).equals(expected)).toBe(true);
    expect(fs.existsSync(path.join(dir, 'scratch', s.id))).toBe(false);
    // The restore point itself never changed.
    const base = await repo.openDisk(pointId, 'disk-0');
    expect((await base.read(0, data.length)).equals(data)).toBe(true);
    await base.close();

    const again = await sessions.start(pointId, 'disk-0', { writable: true });
    await run('qemu-io', ['-f', 'raw', '-c', `write -P 0x42 ${3 * MiB} 8192`, '-c', `write -z ${4 * MiB} ${MiB}`, again.url]);
    const vmdk = await sessions.close(again.id, { migrateTo: 'web01-disk0.vmdk', format: 'vmdk-stream' });
    const { stdout } = await run('qemu-img', ['compare', '-f', 'vmdk', '-F', 'raw', vmdk.migrated!.path, expectedFile]);
    expect(stdout).toMatch(/Images are identical/);
  });

  it('closes expired sessions and discards their writes', async () => {
    const s = await sessions.start(pointId, 'disk-1', { writable: true, ttlMinutes: 1 });
    expect(s.diskKey).toBe('disk-1');
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 9 0 4096', s.url]);
    const deadline = Date.now() + 5000;
    while (sessions.list().some((x) => x.id === s.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(sessions.list().map((x) => x.id)).not.toContain(s.id);
    expect(fs.existsSync(path.join(dir, 'scratch', s.id))).toBe(false);
    expect(logs.some((l) => l.includes(`instant session ${s.id} expired`))).toBe(true);
    expect(logs.join('\n')).not.toContain(s.url.split('/').pop());
  });

  it('shows migration progress while closing; a failed migration keeps the session, its URL and its writes', async () => {
    const s = await sessions.start(pointId, 'disk-0', { writable: true });
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x24 0 4096', s.url]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const closing = sessions.close(s.id, {
      deliver: {
        target: 'somewhere',
        run: async (disk, onBytes) => {
          const first = await disk.read(0, 4096);
          onBytes(4096);
          await gate;
          throw new Error(`target full after ${first[0]}`);
        },
      },
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(() => sessions.close(s.id)).toThrow(expect.objectContaining({ code: 'conflict' }));
    expect(sessions.get(s.id)).toMatchObject({ state: 'closing', migration: { target: 'somewhere', bytesDone: 4096, bytesTotal: data.length } });
    release();
    await expect(closing).rejects.toThrow('target full after 36');
    expect(sessions.get(s.id)).toMatchObject({ state: 'active', url: s.url });
    expect(sessions.get(s.id).migration).toBeUndefined();
    const { stdout } = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x24 0 4096', s.url]);
    expect(stdout).toMatch(/read 4096\/4096 bytes/);
    const done = await sessions.close(s.id, {
      deliver: { target: 't', run: async (disk, onBytes) => (onBytes(disk.size), { path: 't', format: 'test', bytes: disk.size }) },
    });
    expect(done).toEqual({ id: s.id, migrated: { path: 't', format: 'test', bytes: data.length } });
  });

  it('sweeps scratch folders that belong to no open session', async () => {
    const live = await sessions.start(pointId, 'disk-1', { writable: true });
    fs.mkdirSync(path.join(dir, 'scratch', 'dead-session'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'scratch', 'dead-session', 'overlay.data'), 'x');
    expect(await sessions.sweepScratch()).toEqual(['dead-session']);
    expect(fs.readdirSync(path.join(dir, 'scratch'))).toEqual([live.id]);
    await sessions.close(live.id);
  });

  it('answers bad input with typed errors', async () => {
    await expect(sessions.start(pointId, undefined, { ttlMinutes: 0 })).rejects.toMatchObject({ code: 'invalid' });
    await expect(sessions.start('no-such-point', undefined)).rejects.toMatchObject({ code: 'not_found' });
    expect(() => sessions.get('nope')).toThrow(expect.objectContaining({ code: 'not_found' }));
    const s = await sessions.start(pointId, undefined);
    expect(() => sessions.close(s.id, { migrateTo: '../../etc/passwd' })).toThrow(expect.objectContaining({ code: 'invalid' }));
    expect(() => sessions.close(s.id, { migrateTo: 'x.raw', format: 'qcow2' as never })).toThrow(expect.objectContaining({ code: 'invalid' }));
    await sessions.close(s.id);
  });

  it('reports a port it cannot listen on as unavailable', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    const other = new InstantSessions({
      host: '127.0.0.1',
      port,
      allow: [],
      scratchDir: path.join(dir, 'scratch2'),
      migrateDir: path.join(dir, 'migrated2'),
      openDisk: async () => ({ disk: new BufferDisk(Buffer.alloc(4096)), diskKey: 'x' }),
    });
    try {
      await expect(other.start('p', undefined)).rejects.toMatchObject({ code: 'unavailable', message: expect.stringContaining(`127.0.0.1:${port}`) });
    } finally {
      await other.shutdown();
      blocker.close();
    }
  });
});
