// The NBD server against real clients (libnbd's nbdinfo, nbdcopy, nbdsh; qemu-img and qemu-io) serving a restore
// point of a real repository, read-only and through a copy-on-write overlay; and a hand-driven socket sending
// malformed, out-of-range and oversized requests.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BufferDisk, OverlayDisk, type Disk } from '@vmkeep/disk';
import { NbdServer, newExportToken } from '@vmkeep/nbd';
import { Repository, KDF_INSECURE_FOR_TESTS, closeSharedChunkWorkers } from '@vmkeep/repository';
import { makeTempDir, requireBinary } from './peers/process';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const CHUNK = 256 * 1024;
const SIZE = 16 * MiB;

/** 16 MiB: data in a few places, zero chunks in between (they become holes). */
function content(): Buffer {
  const data = Buffer.alloc(SIZE);
  const fill = (offset: number, length: number, seed: number): void => {
    for (let i = 0; i < length; i++) data[offset + i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff || 1;
  };
  fill(0, 3 * CHUNK, 1);
  fill(5 * MiB, 2 * MiB, 2);
  fill(SIZE - CHUNK, CHUNK, 3);
  return data;
}

describe('NBD server with real clients', () => {
  const data = content();
  let dir: string;
  let repo: Repository;
  let pointId: string;
  let server: NbdServer;
  let url: (name: string) => string;
  const ro = newExportToken();
  const rw = newExportToken();
  let base: Disk;
  let overlay: OverlayDisk;
  let rawFile: string;

  beforeAll(async () => {
    for (const bin of ['nbdinfo', 'nbdcopy', 'qemu-img', 'qemu-io']) requireBinary(bin);
    dir = makeTempDir('vmkeep-nbd-');
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: CHUNK, kdf: KDF_INSECURE_FOR_TESTS } as never);
    const point = repo.beginPoint();
    await point.writeDisk('disk-0', new BufferDisk(data));
    pointId = (await point.commit({ vm: 'nbd-test' })).id;
    rawFile = path.join(dir, 'expected.raw');
    fs.writeFileSync(rawFile, data);

    server = new NbdServer({ host: '127.0.0.1', port: 0 });
    server.addExport(ro, await repo.openDisk(pointId, 'disk-0'), { readOnly: true });
    base = await repo.openDisk(pointId, 'disk-0');
    overlay = await OverlayDisk.create(base, path.join(dir, 'scratch'));
    server.addExport(rw, overlay, { readOnly: false });
    const { port } = await server.listen();
    url = (name) => `nbd://127.0.0.1:${port}/${name}`;
  });

  afterAll(async () => {
    await server?.close();
    await overlay?.close();
    await closeSharedChunkWorkers();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('describes the export to nbdinfo --json (size, read-only, multi-conn, structured replies)', async () => {
    const { stdout } = await run('nbdinfo', ['--json', url(ro)]);
    const info = JSON.parse(stdout) as { protocol: string; exports: Array<Record<string, unknown>> };
    expect(info.protocol).toBe('newstyle-fixed');
    const exp = info.exports[0];
    expect(exp['export-size']).toBe(SIZE);
    expect(exp['is_read_only']).toBe(true);
    expect(exp['can_multi_conn']).toBe(true);
    expect(exp['can_flush']).toBe(true);
    expect(exp['can_cache']).toBe(true);
    expect(exp['block_size_maximum']).toBe(32 * MiB);
    const writable = JSON.parse((await run('nbdinfo', ['--json', url(rw)])).stdout) as typeof info;
    expect(writable.exports[0]['is_read_only']).toBe(false);
    expect(writable.exports[0]['can_trim']).toBe(true);
    expect(writable.exports[0]['can_zero']).toBe(true);
  });

  it('maps holes exactly where the restore point has zero chunks (nbdinfo --map, qemu-img map)', async () => {
    const { stdout } = await run('nbdinfo', ['--map', '--totals', url(ro)]);
    // --totals: bytes per state; data is 3 chunks + 2 MiB + 1 chunk, the rest is hole+zero.
    const dataBytes = 3 * CHUNK + 2 * MiB + CHUNK;
    expect(stdout).toMatch(new RegExp(`^\\s*${dataBytes}\\s+\\S+\\s+0\\s+data`, 'm'));
    expect(stdout).toMatch(new RegExp(`^\\s*${SIZE - dataBytes}\\s+\\S+\\s+3\\s+hole,zero`, 'm'));

    const map = JSON.parse((await run('qemu-img', ['map', '--output=json', '-f', 'raw', url(ro)])).stdout) as Array<{
      start: number;
      length: number;
      data: boolean;
      zero: boolean;
    }>;
    const dataRanges = map.filter((m) => m.data).map((m) => [m.start, m.length]);
    expect(dataRanges).toEqual([
      [0, 3 * CHUNK],
      [5 * MiB, 2 * MiB],
      [SIZE - CHUNK, CHUNK],
    ]);
  });

  it('reads back the exact bytes with nbdcopy and qemu-img convert; qemu-img compare agrees', async () => {
    const copied = path.join(dir, 'nbdcopy.raw');
    await run('nbdcopy', [url(ro), copied]);
    expect(fs.readFileSync(copied).equals(data)).toBe(true);
    const converted = path.join(dir, 'convert.raw');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url(ro), converted]);
    expect(fs.readFileSync(converted).equals(data)).toBe(true);
    const { stdout } = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', url(ro), rawFile]);
    expect(stdout).toMatch(/Images are identical/);
  });

  it('lands writes (qemu-io) in the overlay only, visible through NBD', async () => {
    // An unaligned write in a hole, a write-zeroes of a whole data chunk, a write at the end, then a flush.
    await run('qemu-io', [
      '-f', 'raw',
      '-c', `write -P 0x5a ${4 * MiB + 512} 3072`,
      '-c', `write -z 0 ${256 * 1024}`,
      '-c', `write -P 0xab ${SIZE - 4096} 4096`,
      '-c', 'flush',
      url(rw),
    ]);

    const expected = Buffer.from(data);
    expected.fill(0x5a, 4 * MiB + 512, 4 * MiB + 512 + 3072);
    expected.fill(0, 0, 256 * 1024);
    expected.fill(0xab, SIZE - 4096);
    const reread = path.join(dir, 'rw.raw');
    await run('nbdcopy', [url(rw), reread]);
    expect(fs.readFileSync(reread).equals(expected)).toBe(true);

    // The zeroed first chunk is a hole now; the written 4 MiB region is data.
    const { stdout } = await run('nbdinfo', ['--map', url(rw)]);
    expect(stdout).toMatch(/^\s*0\s+262144\s+3\s+hole,zero/m);

    // The repository point and the read-only export still hold the original bytes.
    const fresh = await repo.openDisk(pointId, 'disk-0');
    expect((await fresh.read(0, SIZE)).equals(data)).toBe(true);
    await fresh.close();
    const { stdout: cmp } = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', url(ro), rawFile]);
    expect(cmp).toMatch(/Images are identical/);
    expect(overlay.overlayBytes).toBeGreaterThan(0);
    expect(fs.statSync(overlay.dataFile).blocks * 512).toBeLessThan(SIZE);
  });

  it('refuses writes on a read-only export with EPERM', async () => {
    // qemu-io refuses to open the export read-write (read-only flag); the hand-driven client below checks EPERM itself.
    const attempt = run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 512', url(ro)]);
    await expect(attempt).rejects.toMatchObject({ stderr: expect.stringMatching(/read-only|not permitted|permission denied/i) });
    const { stdout } = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', url(ro), rawFile]);
    expect(stdout).toMatch(/Images are identical/);
  });

  it('does not serve unknown export names', async () => {
    await expect(run('nbdinfo', ['--json', url('not-a-token')])).rejects.toMatchObject({
      stderr: expect.stringMatching(/unknown|not found|export/i),
    });
    // Token-named exports are unlisted.
    const { stdout } = await run('nbdinfo', ['--list', '--json', url('')]).catch((e: { stdout: string }) => e);
    expect(stdout).not.toContain(ro);
  });

  describe('a hand-driven client', () => {
    it('gets ERR_UNSUP for unknown options and structured errors for bad requests', async () => {
      const c = await RawClient.connect(server.address().port);
      const unknown = await c.option(42, Buffer.alloc(0));
      expect(unknown.type).toBe(0x80000001);
      const ext = await c.option(11, Buffer.alloc(0)); // EXTENDED_HEADERS: not offered
      expect(ext.type).toBe(0x80000001);
      const badInfo = await c.option(6, Buffer.from([0, 0, 0, 9, 1])); // name length past the data
      expect(badInfo.type).toBe(0x80000003);
      const missing = await c.option(6, infoRequest('nope'));
      expect(missing.type).toBe(0x80000006);
      await c.go(ro);

      expect(await c.request(0, SIZE - 512, 1024)).toBe(22); // EINVAL: past the end
      expect(await c.request(0, 0, 64 * MiB)).toBe(75); // EOVERFLOW: larger than the maximum
      expect(await c.request(7, 0, 4096)).toBe(22); // BLOCK_STATUS without a meta context
      expect(await c.request(0, 0, 4096, 0x80)).toBe(22); // unknown command flag
      expect(await c.request(9, 0, 4096)).toBe(22); // unknown command
      expect(await c.request(5, 0, 4096)).toBe(0); // CACHE
      expect(await c.request(3, 0, 0)).toBe(0); // FLUSH
      expect(await c.request(1, 0, 4, 0, Buffer.alloc(4))).toBe(1); // WRITE on read-only: EPERM
      expect(await c.request(0, 0, 4096)).toBe(0);
      c.destroy();
    });

    it('disconnects garbage, bad magic and abrupt clients without harm to others', async () => {
      const port = server.address().port;
      const garbage = await RawClient.connect(port, false);
      garbage.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      await garbage.closed;

      const badMagic = await RawClient.connect(port);
      badMagic.socket.write(Buffer.alloc(16, 0x41));
      await badMagic.closed;

      const huge = await RawClient.connect(port);
      const head = Buffer.alloc(16);
      head.writeBigUInt64BE(0x49484156454f5054n, 0);
      head.writeUInt32BE(6, 8);
      head.writeUInt32BE(0xffffffff, 12); // a 4 GiB option
      huge.socket.write(head);
      await huge.closed;

      const abrupt = await RawClient.connect(port);
      await abrupt.go(ro);
      const req = Buffer.alloc(28);
      req.writeUInt32BE(0x25609513, 0);
      req.writeUInt16BE(1, 6); // a WRITE whose payload never comes
      abrupt.socket.write(req.subarray(0, 20));
      abrupt.socket.destroy();

      const bigWrite = await RawClient.connect(port);
      await bigWrite.go(rw);
      expect(await bigWrite.request(1, 0, 64 * MiB)).toBe(75);
      await bigWrite.closed;

      const { stdout } = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', url(ro), rawFile]);
      expect(stdout).toMatch(/Images are identical/);
    });
  });
});

describe('NBD server access control', () => {
  it('listens only where configured and drops clients outside the allow-list', async () => {
    const server = new NbdServer({ host: '127.0.0.1', port: 0, allow: ['10.0.0.0/8'] });
    const token = newExportToken();
    server.addExport(token, new BufferDisk(Buffer.alloc(1 * MiB, 1)));
    const { host, port } = await server.listen();
    expect(host).toBe('127.0.0.1');
    try {
      await expect(run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/${token}`])).rejects.toBeDefined();
    } finally {
      await server.close();
    }
    const open = new NbdServer({ host: '127.0.0.1', port: 0, allow: ['127.0.0.1'] });
    open.addExport(token, new BufferDisk(Buffer.alloc(1 * MiB, 1)));
    const bound = await open.listen();
    try {
      const info = JSON.parse((await run('nbdinfo', ['--json', `nbd://127.0.0.1:${bound.port}/${token}`])).stdout);
      expect(info.exports[0]['export-size']).toBe(MiB);
    } finally {
      await open.close();
    }
    expect(() => new NbdServer({ host: '127.0.0.1', port: 0, allow: ['not-an-ip'] })).toThrow(/not an IP/);
  });
});

function infoRequest(name: string): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(6 + n.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(0, 4 + n.length);
  return b;
}

/** A minimal NBD client speaking the wire format by hand (simple replies), for requests real clients never send. */
class RawClient {
  private buffered = Buffer.alloc(0);
  private wake?: () => void;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.wake?.();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
    void this.closed.then(() => this.wake?.());
  }

  static async connect(port: number, greet = true): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const c = new RawClient(socket);
    if (greet) {
      const hello = await c.read(18);
      expect(hello.readBigUInt64BE(0)).toBe(0x4e42444d41474943n);
      expect(hello.readUInt16BE(16) & 3).toBe(3);
      const flags = Buffer.alloc(4);
      flags.writeUInt32BE(3, 0); // FIXED_NEWSTYLE | NO_ZEROES
      socket.write(flags);
    }
    return c;
  }

  async read(n: number): Promise<Buffer> {
    while (this.buffered.length < n) {
      if (this.socket.destroyed && this.buffered.length < n) throw new Error('closed');
      await new Promise<void>((r) => (this.wake = r));
    }
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  /** Sends an option and collects replies up to a final one (ACK or error); returns the last reply's type. */
  async option(option: number, data: Buffer): Promise<{ type: number }> {
    const head = Buffer.alloc(16);
    head.writeBigUInt64BE(0x49484156454f5054n, 0);
    head.writeUInt32BE(option, 8);
    head.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([head, data]));
    for (;;) {
      const r = await this.read(20);
      expect(r.readBigUInt64BE(0)).toBe(0x0003e889045565a9n);
      const type = r.readUInt32BE(12);
      await this.read(r.readUInt32BE(16));
      if (type === 1 || type >= 0x80000000) return { type };
    }
  }

  async go(name: string): Promise<void> {
    expect((await this.option(7, infoRequest(name))).type).toBe(1);
  }

  /** Sends one request, returns the error of its simple reply (and skips the data of a successful READ). */
  async request(type: number, offset: number, length: number, flags = 0, payload?: Buffer): Promise<number> {
    const req = Buffer.alloc(28);
    req.writeUInt32BE(0x25609513, 0);
    req.writeUInt16BE(flags, 4);
    req.writeUInt16BE(type, 6);
    req.writeBigUInt64BE(99n, 8);
    req.writeBigUInt64BE(BigInt(offset), 16);
    req.writeUInt32BE(length, 24);
    this.socket.write(payload ? Buffer.concat([req, payload]) : req);
    const reply = await this.read(16);
    expect(reply.readUInt32BE(0)).toBe(0x67446698);
    expect(reply.readBigUInt64BE(8)).toBe(99n);
    const error = reply.readUInt32BE(4);
    if (error === 0 && type === 0) await this.read(length);
    return error;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
