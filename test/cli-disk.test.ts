/**
 * `vmkeep disk` as a user runs it: the compiled CLI (bin/vmkeep.js) on images written by qemu-img, checked
 * against what qemu-img itself says about the same files (info, convert -O raw, map, compare).
 */
import { spawn } from 'node:child_process';
import { createWriteStream, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLI_BIN, ensureBuilt, vmkeep, type CliResult } from './peers/appliance';
import { buildRandomZeroImage, sha256File } from './peers/disk-images';
import { qemuDataRanges, run, type Range } from './peers/vmdk-fixtures';

let dir: string;
let raw: string;
const images: Record<string, { file: string; qemuFormat: string; format: string; subformat: string }> = {};

/** `vmkeep ARGS` with stdout (binary) written to `outFile`. */
function vmkeepToFile(args: string[], outFile: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(outFile);
    out.on('open', () => {
      const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stdout.pipe(out);
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => out.end(() => resolve({ code, stderr })));
    });
  });
}

const cli = (...args: string[]): Promise<CliResult> => vmkeep(args, { home: dir });

async function qemuInfo(file: string): Promise<{ 'virtual-size': number; format: string }> {
  return JSON.parse(await run('qemu-img', ['info', '--output=json', file]));
}

/** Data ranges of a `vmkeep disk map --json` output, merged. */
function dataRanges(entries: { offset: number; length: number; data: boolean }[]): Range[] {
  const out: Range[] = [];
  for (const e of entries.filter((x) => x.data)) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === e.offset) last.length += e.length;
    else out.push({ offset: e.offset, length: e.length });
  }
  return out;
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-cli-disk-'));
  const [image] = await Promise.all([buildRandomZeroImage({ dir, sizeMiB: 24, seed: 'cli-disk' }), ensureBuilt()]);
  raw = image.path;
  const make = async (name: string, qemuFormat: string, options: string, format: string, subformat: string): Promise<void> => {
    const file = path.join(dir, name);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', qemuFormat, '-o', options, raw, file]);
    images[name] = { file, qemuFormat, format, subformat };
  };
  await make('sparse.vmdk', 'vmdk', 'subformat=monolithicSparse', 'vmdk', 'monolithicSparse');
  await make('stream.vmdk', 'vmdk', 'subformat=streamOptimized', 'vmdk', 'streamOptimized');
  await make('dynamic.vhd', 'vpc', 'subformat=dynamic,force_size=on', 'vhd', 'dynamic');
  await make('dynamic.vhdx', 'vhdx', 'subformat=dynamic', 'vhdx', 'dynamic');
});

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('disk info --json agrees with qemu-img info', async () => {
  for (const [name, image] of Object.entries(images)) {
    const r = await cli('disk', 'info', image.file, '--json');
    expect({ name, code: r.code, stderr: r.stderr }).toEqual({ name, code: 0, stderr: '' });
    const info = JSON.parse(r.stdout);
    const qemu = await qemuInfo(image.file);
    expect(qemu.format).toBe(image.qemuFormat);
    expect({ name, format: info.format, subformat: info.subformat, virtualSize: info.virtualSize }).toEqual({
      name, format: image.format, subformat: image.subformat, virtualSize: qemu['virtual-size'],
    });
    expect(info.files.length).toBeGreaterThan(0);
  }
});

test('disk cat writes exactly what qemu-img convert -O raw reads', async () => {
  for (const [name, image] of Object.entries(images)) {
    const expected = path.join(dir, `${name}.qemu.raw`);
    await run('qemu-img', ['convert', '-O', 'raw', image.file, expected]);
    const out = path.join(dir, `${name}.cat.raw`);
    const r = await vmkeepToFile(['disk', 'cat', image.file], out);
    expect({ name, code: r.code, stderr: r.stderr }).toEqual({ name, code: 0, stderr: '' });
    expect({ name, sha: await sha256File(out) }).toEqual({ name, sha: await sha256File(expected) });
    await Promise.all([fs.rm(out), fs.rm(expected)]);
  }
});

test('disk convert to every target gives an image qemu-img compares equal to the source', async () => {
  const source = images['stream.vmdk'].file;
  for (const to of ['raw', 'vmdk-stream', 'vmdk-sparse', 'vmdk-flat', 'vhdx']) {
    const out = path.join(dir, `converted-${to}.${to === 'raw' ? 'raw' : to === 'vhdx' ? 'vhdx' : 'vmdk'}`);
    const r = await cli('disk', 'convert', source, out, '--to', to, '--progress');
    expect({ to, code: r.code, stderr: r.stderr }).toEqual({ to, code: 0, stderr: '' });
    expect(r.stdout).toContain(`converted ${source} to ${to}`);
    // qemu-img compare exits 0 only when both images read the same.
    await expect(run('qemu-img', ['compare', source, out])).resolves.toContain('Images are identical');
    await run('qemu-img', ['check', out]).catch((err: { code?: number; stdout?: string }) => {
      // `check` does not support raw or flat VMDKs (exit 63): nothing to check there.
      if (err.code !== 63) throw err;
    });
  }
});

test('disk map agrees with qemu-img map', async () => {
  for (const name of ['sparse.vmdk', 'stream.vmdk', 'dynamic.vhdx']) {
    const r = await cli('disk', 'map', images[name].file, '--json');
    expect(r.code).toBe(0);
    const entries = JSON.parse(r.stdout) as { offset: number; length: number; data: boolean }[];
    expect(entries.reduce((n, e) => n + e.length, 0)).toBe((await qemuInfo(images[name].file))['virtual-size']);
    expect({ name, data: dataRanges(entries) }).toEqual({ name, data: await qemuDataRanges(images[name].file) });
  }
  const human = await cli('disk', 'map', images['sparse.vmdk'].file);
  expect(human.stdout.split('\n')[0]).toMatch(/^OFFSET\s+LENGTH\s+TYPE/);
});

test('a corrupt image exits non-zero with one line naming the file; a failed convert leaves no OUT', async () => {
  const broken = path.join(dir, 'broken.vmdk');
  const bytes = await fs.readFile(images['sparse.vmdk'].file);
  bytes.writeBigUInt64LE(3n, 20); // grain size: not a power of two
  await fs.writeFile(broken, bytes);
  const r = await cli('disk', 'info', broken);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr).toContain('broken.vmdk');

  // Truncated in the middle of its grains: opens, then fails while converting.
  const truncated = path.join(dir, 'truncated.vmdk');
  const stream = await fs.readFile(images['stream.vmdk'].file);
  await fs.writeFile(truncated, stream.subarray(0, Math.floor(stream.length / 2)));
  for (const to of ['raw', 'vmdk-stream', 'vmdk-flat', 'vhdx']) {
    const out = path.join(dir, `from-truncated-${to}.img`);
    const c = await cli('disk', 'convert', truncated, out, '--to', to);
    expect({ to, code: c.code, lines: c.stderr.trimEnd().split('\n').length }).toEqual({ to, code: 1, lines: 1 });
    expect(c.stderr).toContain('truncated.vmdk');
    const left = (await fs.readdir(dir)).filter((f) => f.startsWith(`from-truncated-${to}`));
    expect({ to, left }).toEqual({ to, left: [] });
  }
});
