import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { CliError, type CliContext } from '../context';
import { bytes } from '../format';
import type { Runner } from '../program';
import { ProgressBar } from '../progress-bar';
import type { RestorePointView } from '../resources';

interface DiskOptions {
  disk: string;
  format: string;
  output: string;
}

interface ExportOptions {
  disk?: string;
  format: string;
  output: string;
}

/** Formats of `restore export` (the API's disk export formats, plus the whole VM as an OVA). */
const EXPORT_FORMATS = ['vmdk-stream', 'vhdx', 'raw', 'ova'] as const;
type ExportFormat = (typeof EXPORT_FORMATS)[number];

type PointDisk = RestorePointView['disks'][number];

function pointPath(pointId: string): string {
  return `/api/restore-points/${encodeURIComponent(pointId)}`;
}

function findDisk(point: RestorePointView, pointId: string, key: string): PointDisk {
  const disk = point.disks.find((d) => d.key === key);
  if (!disk) throw new CliError(`restore point ${pointId} has no disk "${key}" (it has: ${point.disks.map((d) => d.key).join(', ')})`);
  return disk;
}

/**
 * Downloads `apiPath` into `output` through a temp file next to it, renamed into place only once complete:
 * on any error, or Ctrl-C, nothing is left behind. With `expected`, the server must announce and send exactly
 * that many bytes; otherwise its Content-Length (when sent) is checked, and a chunked transfer is complete only
 * when the server ended it properly. `estimate` sizes the progress bar when the server sends no length.
 */
async function downloadToFile(ctx: CliContext, apiPath: string, output: string, label: string, estimate: number, expected?: number): Promise<number> {
  const partial = path.join(path.dirname(output), `.${path.basename(output)}.part-${process.pid}-${randomBytes(4).toString('hex')}`);
  const removePartial = (): void => fs.rmSync(partial, { force: true });
  // Created before the request: the body must be piped as soon as it arrives, and a bad output folder fails early.
  const file = await fs.promises.open(partial, 'wx').catch((err: NodeJS.ErrnoException) => {
    throw new CliError(`cannot write ${output} (${err.code ?? err.message})`);
  });
  process.once('SIGINT', removePartial);
  let bar: ProgressBar | undefined;
  let written = 0;
  try {
    const download = await ctx.client.download(apiPath);
    if (expected !== undefined && download.length !== undefined && download.length !== expected) {
      download.body.destroy();
      throw new CliError(`the server offers ${download.length} bytes but the disk has ${expected}`);
    }
    const length = download.length ?? expected;
    const total = length ?? estimate;
    const progress = (bar = new ProgressBar(ctx, total, label));
    const started = Date.now();
    const count = new Transform({
      transform(chunk: Buffer, _enc, done) {
        written += chunk.length;
        progress.update(written, Math.max(total, written), written / Math.max((Date.now() - started) / 1000, 0.001));
        done(null, chunk);
      },
    });
    await pipeline(download.body, count, file.createWriteStream()).catch((err: Error) => {
      const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
      throw new CliError(`the download broke off after ${written} bytes (${err.message}${cause}); nothing written`);
    });
    if (length !== undefined && written !== length) {
      throw new CliError(`download ended after ${written} of ${length} bytes; nothing written`);
    }
    fs.renameSync(partial, output);
  } catch (err) {
    await file.close().catch(() => undefined);
    removePartial();
    throw err;
  } finally {
    process.off('SIGINT', removePartial);
    await bar?.stop();
  }
  return written;
}

export function registerRestore(program: Command, run: Runner): void {
  const restore = program.command('restore').description('restores');
  restore
    .command('disk <point>')
    .description("download a disk of a restore point (see: vmkeep point list)")
    .requiredOption('--disk <key>', 'disk key inside the point, e.g. disk-2000')
    .option('--format <format>', 'output format (raw)', 'raw')
    .requiredOption('--output <file>', 'file to write')
    .action(
      run(async (ctx, opts: DiskOptions, pointId: string) => {
        if (opts.format !== 'raw') throw new CliError(`format "${opts.format}" is not supported (supported: raw; see also: vmkeep restore export)`);
        const point = await ctx.client.get<RestorePointView>(pointPath(pointId));
        const disk = findDisk(point, pointId, opts.disk);
        const route = `${pointPath(pointId)}/disks/${encodeURIComponent(disk.key)}/raw`;
        const written = await downloadToFile(ctx, route, opts.output, disk.key, disk.capacityBytes, disk.capacityBytes);
        ctx.print(
          { point: pointId, disk: disk.key, format: 'raw', output: opts.output, bytes: written },
          () => `restored ${disk.key} of point ${pointId} to ${opts.output} (${bytes(written)}, verified length)`,
        );
      }),
    );

  restore
    .command('export <point>')
    .description('export a disk of a restore point as an image (VMDK streamOptimized, VHDX, raw), or the whole VM as an OVA')
    .option('--disk <key>', 'disk key inside the point (needed when the point has several disks; not with ova)')
    .requiredOption('--format <format>', `image format: ${EXPORT_FORMATS.join(', ')}`)
    .requiredOption('--output <file>', 'file to write')
    .action(
      run(async (ctx, opts: ExportOptions, pointId: string) => {
        const format = opts.format as ExportFormat;
        if (!EXPORT_FORMATS.includes(format)) throw new CliError(`format "${opts.format}" is not supported (supported: ${EXPORT_FORMATS.join(', ')})`);
        if (format === 'ova' && opts.disk !== undefined) throw new CliError('an OVA holds every disk of the VM: leave out --disk');
        const point = await ctx.client.get<RestorePointView>(pointPath(pointId));
        let route: string;
        let label: string;
        let estimate: number;
        let disk: PointDisk | undefined;
        if (format === 'ova') {
          route = `${pointPath(pointId)}/export.ova`;
          label = 'ova';
          estimate = point.sizeBytes;
        } else {
          if (opts.disk === undefined && point.disks.length !== 1) {
            throw new CliError(`restore point ${pointId} has ${point.disks.length} disks: name one with --disk (${point.disks.map((d) => d.key).join(', ')})`);
          }
          disk = opts.disk === undefined ? point.disks[0] : findDisk(point, pointId, opts.disk);
          route = `${pointPath(pointId)}/disks/${encodeURIComponent(disk.key)}/export?format=${format}`;
          label = disk.key;
          estimate = disk.capacityBytes;
        }
        const written = await downloadToFile(ctx, route, opts.output, label, estimate, format === 'raw' ? disk?.capacityBytes : undefined);
        ctx.print(
          { point: pointId, ...(disk ? { disk: disk.key } : {}), format, output: opts.output, bytes: written },
          () => `exported ${disk ? disk.key : 'the VM'} of point ${pointId} as ${format} to ${opts.output} (${bytes(written)})`,
        );
      }),
    );
}
