/**
 * Disk conversion: our writers against `qemu-img convert` on the same inputs in one run.
 *   npx ts-node -r tsconfig-paths/register --transpile-only bench/disk-convert.ts [GiB]
 * Inputs (made here, in a temp folder): an ext4 image built by `mke2fs -d` from generated files (text logs,
 * random binaries, duplicated files) and a raw image of random and zero runs, each GiB-sized. Each input is
 * converted to raw and to streamOptimized VMDK by both tools; times, output sizes and ratios are printed, and
 * every output of ours is checked with `qemu-img compare` (not timed).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { openRaw, OutputFormat, writeImage, WriteOptions } from '@vmkeep/disk-formats';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Log-like text: compressible but not trivially (timestamps, counters, a little noise). */
function logText(bytes: number, seed: number): Buffer {
  const words = ['GET', 'POST', '/api/v1/items', '/static/app.js', '200', '404', 'user', 'session', 'cache', 'miss', 'hit'];
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `2024-03-${String((i % 28) + 1).padStart(2, '0')} 12:${String(i % 60).padStart(2, '0')}:${String((i * 7) % 60).padStart(2, '0')} host${seed} ${words[i % words.length]} ${words[(i * 3) % words.length]} id=${(i * 2654435761) % 1000000} took=${i % 997}ms\n`;
    parts.push(line);
    size += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

async function buildExt4(dir: string, sizeMiB: number): Promise<string> {
  const tree = path.join(dir, 'tree');
  const dataMiB = Math.floor(sizeMiB * 0.6);
  let written = 0;
  for (let i = 0; written < dataMiB * MiB; i++) {
    const folder = path.join(tree, `d${i % 16}`);
    await fs.mkdir(folder, { recursive: true });
    const kind = i % 3;
    const len = (1 + (i % 24)) * MiB + i * 4096;
    const content = kind === 0 ? randomBytes(len) : logText(len, i);
    await fs.writeFile(path.join(folder, `f${i}.${kind === 0 ? 'bin' : 'log'}`), content);
    if (i % 10 === 0) await fs.writeFile(path.join(folder, `copy${i}`), content);
    written += len * (i % 10 === 0 ? 2 : 1);
  }
  const image = path.join(dir, 'ext4.img');
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, image, `${sizeMiB}M`]);
  await fs.rm(tree, { recursive: true, force: true });
  return image;
}

async function buildRandomZero(dir: string, sizeMiB: number): Promise<string> {
  const image = path.join(dir, 'random-zero.img');
  const handle = await fs.open(image, 'w');
  await handle.truncate(sizeMiB * MiB);
  // Alternating random and zero runs of 1–16 MiB (+ odd offsets): about half the disk holds data.
  let pos = 0;
  for (let i = 0; pos < sizeMiB * MiB; i++) {
    const len = Math.min(sizeMiB * MiB - pos, (1 + ((i * 7) % 16)) * MiB + 4096 * (i % 5));
    if (i % 2 === 0) for (let off = 0; off < len; off += 4 * MiB) await handle.write(randomBytes(Math.min(4 * MiB, len - off)), 0, undefined, pos + off);
    pos += len;
  }
  await handle.close();
  return image;
}

async function ours(input: string, out: string, format: OutputFormat, opts: WriteOptions = {}): Promise<number> {
  const disk = await openRaw(input);
  try {
    return await timed(() => writeImage(disk, out, format, opts));
  } finally {
    await disk.close();
  }
}

async function qemu(input: string, out: string, args: string[]): Promise<number> {
  return timed(() => run('qemu-img', ['convert', '-f', 'raw', ...args, input, out]));
}

async function sizeOf(file: string): Promise<number> {
  return (await fs.stat(file)).size;
}

async function main(): Promise<void> {
  const gib = Number(process.argv[2] ?? 2);
  const dir = await fs.mkdtemp(path.join(tmpdir(), 'vmkeep-bench-convert-'));
  const rows: Record<string, string | number>[] = [];
  try {
    const inputs = { ext4: await buildExt4(dir, gib * 1024), 'random+zero': await buildRandomZero(dir, gib * 1024) };
    for (const [name, input] of Object.entries(inputs)) {
      await run('sh', ['-c', 'cat "$0" > /dev/null', input]); // warm the page cache for both tools alike
      const out = (tag: string) => path.join(dir, `${name.replace(/\W/g, '')}-${tag}`);
      const cases: [string, () => Promise<number>, () => Promise<number>, string, string][] = [
        ['raw', () => ours(input, out('ours.raw'), 'raw'), () => qemu(input, out('qemu.raw'), ['-O', 'raw']), out('ours.raw'), out('qemu.raw')],
        [
          'vmdk-stream (level 1, default)',
          () => ours(input, out('ours1.vmdk'), 'vmdk-stream'),
          () => qemu(input, out('qemu.vmdk'), ['-O', 'vmdk', '-o', 'subformat=streamOptimized']),
          out('ours1.vmdk'),
          out('qemu.vmdk'),
        ],
        ['vmdk-stream (level 6, as qemu)', () => ours(input, out('ours6.vmdk'), 'vmdk-stream', { compressionLevel: 6 }), async () => NaN, out('ours6.vmdk'), out('qemu.vmdk')],
      ];
      let qemuStream = NaN;
      for (const [target, runOurs, runQemu, oursFile, qemuFile] of cases) {
        const tq = await runQemu();
        if (!Number.isNaN(tq) && target.startsWith('vmdk')) qemuStream = tq;
        const qemuSeconds = Number.isNaN(tq) ? qemuStream : tq;
        const to = await runOurs();
        const fmt = oursFile.endsWith('.vmdk') ? 'vmdk' : 'raw';
        await run('qemu-img', ['compare', '-f', 'raw', '-F', fmt, input, oursFile]);
        rows.push({
          input: `${name} ${gib} GiB`,
          target,
          oursSeconds: +to.toFixed(2),
          qemuSeconds: +qemuSeconds.toFixed(2),
          speedup: +(qemuSeconds / to).toFixed(2),
          oursMiB: +((await sizeOf(oursFile)) / MiB).toFixed(1),
          qemuMiB: +((await sizeOf(qemuFile)) / MiB).toFixed(1),
        });
        await fs.rm(oursFile, { force: true });
      }
      await fs.rm(out('qemu.raw'), { force: true });
      await fs.rm(out('qemu.vmdk'), { force: true });
    }
    console.table(rows);
    console.log(JSON.stringify(rows));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
