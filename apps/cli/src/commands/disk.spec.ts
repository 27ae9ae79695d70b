import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { BufferDisk } from '@vmkeep/disk';
import { openImage, writeImage } from '@vmkeep/disk-formats';
import { CredentialStore } from '../credentials';
import { runCli } from '../program';
import { diskMap } from './disk';

const MiB = 1024 * 1024;
let dir: string;
let data: Buffer;
let stream: string;

/** 3 MiB: a data run, a zero gap, a data run ending inside the last grain. */
function content(): Buffer {
  const buf = Buffer.alloc(3 * MiB);
  for (let i = 0; i < 200_000; i++) buf[i] = (i * 7 + 3) & 0xff;
  for (let i = 2 * MiB + 4096; i < buf.length - 512; i++) buf[i] = (i * 13) & 0xff;
  return buf;
}

async function cli(args: string[], stdout: Writable = new PassThrough()) {
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  stdin.end();
  const out: Buffer[] = [];
  let err = '';
  stdout.on('data', (d: Buffer) => out.push(d));
  stderr.on('data', (d) => (err += d));
  const home = path.join(dir, 'home');
  const code = await runCli(args, { stdout, stderr, stdin }, new CredentialStore(path.join(home, 'credentials.json')));
  return { code, stdout: Buffer.concat(out), stderr: err };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-cli-disk-'));
  data = content();
  stream = path.join(dir, 'disk.vmdk');
  await writeImage(new BufferDisk(data), stream, 'vmdk-stream');
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('diskMap', () => {
  it('covers the disk with merged data and zero ranges', () => {
    expect(diskMap(100, [{ offset: 10, length: 10 }, { offset: 20, length: 5 }, { offset: 90, length: 20 }])).toEqual([
      { offset: 0, length: 10, data: false },
      { offset: 10, length: 15, data: true },
      { offset: 25, length: 65, data: false },
      { offset: 90, length: 10, data: true },
    ]);
    expect(diskMap(0, [])).toEqual([]);
    expect(diskMap(8, [])).toEqual([{ offset: 0, length: 8, data: false }]);
  });
});

describe('vmkeep disk', () => {
  it('info --json shows what the image is', async () => {
    const r = await cli(['disk', 'info', stream, '--json']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const info = JSON.parse(r.stdout.toString());
    expect(info).toMatchObject({ file: stream, format: 'vmdk', subformat: 'streamOptimized', virtualSize: data.length, parents: [] });
    expect(info.allocatedBytes).toBeGreaterThan(0);
    expect(info.allocatedBytes).toBeLessThan(data.length);
    const human = await cli(['disk', 'info', stream]);
    expect(human.stdout.toString()).toContain('format: vmdk (streamOptimized)');
    expect(human.stdout.toString()).toContain(`(${data.length} bytes)`);
  });

  it('cat writes the virtual disk, waiting for a slow reader', async () => {
    let buffered = 0;
    const received: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _enc, done) {
        buffered = Math.max(buffered, slow.writableLength);
        received.push(chunk);
        setImmediate(done);
      },
    });
    const r = await cli(['disk', 'cat', stream], slow);
    expect(r.code).toBe(0);
    expect(sha(Buffer.concat(received))).toBe(sha(data));
    // Backpressure: never more than one chunk queued beyond what the reader took.
    expect(buffered).toBeLessThanOrEqual(4 * MiB);
  });

  it('map --json lists data and zero ranges that match the content', async () => {
    const r = await cli(['disk', 'map', stream, '--json']);
    expect(r.code).toBe(0);
    const entries = JSON.parse(r.stdout.toString()) as { offset: number; length: number; data: boolean }[];
    expect(entries.reduce((n, e) => n + e.length, 0)).toBe(data.length);
    for (const e of entries.filter((x) => !x.data)) expect(data.subarray(e.offset, e.offset + e.length).every((b) => b === 0)).toBe(true);
    expect(entries.some((e) => !e.data && e.offset <= 1 * MiB && e.offset + e.length >= 2 * MiB)).toBe(true);
  });

  it('convert writes a readable image and refuses to overwrite one', async () => {
    const out = path.join(dir, 'out.vhdx');
    const r = await cli(['disk', 'convert', stream, out, '--to', 'vhdx', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.toString())).toMatchObject({ input: stream, output: out, format: 'vhdx' });
    const back = await openImage(out);
    try {
      expect(sha(await back.read(0, back.size))).toBe(sha(data));
    } finally {
      await back.close();
    }
    const again = await cli(['disk', 'convert', stream, out, '--to', 'raw']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
  });

  it('a corrupt image fails with one line naming the file, and convert leaves no output', async () => {
    const broken = path.join(dir, 'broken.vmdk');
    const image = fs.readFileSync(stream);
    image.writeBigUInt64LE(0n, 20); // grain size 0
    fs.writeFileSync(broken, image);
    for (const args of [['disk', 'info', broken], ['disk', 'cat', broken], ['disk', 'map', broken]]) {
      const r = await cli(args);
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(broken);
    }
    const out = path.join(dir, 'never.raw');
    const r = await cli(['disk', 'convert', broken, out, '--to', 'raw']);
    expect(r.code).toBe(1);
    expect(fs.existsSync(out)).toBe(false);
    const missing = await cli(['disk', 'info', path.join(dir, 'nope.vmdk')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.vmdk.*does not exist/);
  });

  it('an unknown target format is a usage error', async () => {
    const r = await cli(['disk', 'convert', stream, path.join(dir, 'x'), '--to', 'qcow2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/qcow2/);
  });
});
