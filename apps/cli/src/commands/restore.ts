import * as fs from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { CliError } from '../context';
import { bytes } from '../format';
import type { Runner } from '../program';
import { ProgressBar } from '../progress-bar';
import type { RestorePointView } from '../resources';

interface DiskOptions {
  disk: string;
  format: string;
  output: string;
}

export function registerRestore(program: Command, run: Runner): void {
  program
    .command('restore')
    .description('restores')
    .command('disk <point>')
    .description("download a disk of a restore point (see: vmkeep point list)")
    .requiredOption('--disk <key>', 'disk key inside the point, e.g. disk-2000')
    .option('--format <format>', 'output format (raw)', 'raw')
    .requiredOption('--output <file>', 'file to write')
    .action(
      run(async (ctx, opts: DiskOptions, pointId: string) => {
        if (opts.format !== 'raw') throw new CliError(`format "${opts.format}" is not supported (supported: raw)`);
        const point = await ctx.client.get<RestorePointView>(`/api/restore-points/${encodeURIComponent(pointId)}`);
        const disk = point.disks.find((d) => d.key === opts.disk);
        if (!disk) {
          throw new CliError(`restore point ${pointId} has no disk "${opts.disk}" (it has: ${point.disks.map((d) => d.key).join(', ')})`);
        }
        const path = `/api/restore-points/${encodeURIComponent(pointId)}/disks/${encodeURIComponent(disk.key)}/raw`;
        const download = await ctx.client.download(path);
        if (download.length !== undefined && download.length !== disk.capacityBytes) {
          download.body.destroy();
          throw new CliError(`the server offers ${download.length} bytes but the disk has ${disk.capacityBytes}`);
        }

        const bar = new ProgressBar(ctx, disk.capacityBytes, disk.key);
        const partial = `${opts.output}.part`;
        let written = 0;
        const started = Date.now();
        const count = new Transform({
          transform(chunk: Buffer, _enc, done) {
            written += chunk.length;
            bar.update(written, disk.capacityBytes, written / Math.max((Date.now() - started) / 1000, 0.001));
            done(null, chunk);
          },
        });
        try {
          await pipeline(download.body, count, fs.createWriteStream(partial));
        } catch (err) {
          fs.rmSync(partial, { force: true });
          throw err;
        } finally {
          await bar.stop();
        }
        if (written !== disk.capacityBytes) {
          fs.rmSync(partial, { force: true });
          throw new CliError(`download ended after ${written} of ${disk.capacityBytes} bytes; nothing written`);
        }
        fs.renameSync(partial, opts.output);
        ctx.print(
          { point: pointId, disk: disk.key, format: 'raw', output: opts.output, bytes: written },
          () => `restored ${disk.key} of point ${pointId} to ${opts.output} (${bytes(written)}, verified length)`,
        );
      }),
    );
}
