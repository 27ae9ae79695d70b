import * as fs from 'node:fs';
import { Command, Option } from 'commander';
import { DiskError } from '@vmkeep/disk';
import { openImage, OUTPUT_FORMATS, writeImage, type Extent, type ImageDisk, type ImageInfo, type OutputFormat } from '@vmkeep/disk-formats';
import { CliContext, CliError } from '../context';
import { bytes, table } from '../format';
import type { Runner } from '../program';
import { ProgressBar } from '../progress-bar';

/** Largest piece `disk cat` reads and writes at once. */
const CAT_CHUNK = 4 * 1024 * 1024;

/** One range of `disk map`: data that may be allocated, or a range that reads as zeros. */
export interface MapEntry {
  offset: number;
  length: number;
  data: boolean;
}

/**
 * `vmkeep disk ...`: offline commands on local disk images (no server needed). Errors from the image readers and
 * writers come out as one line naming the file, the structure and the offset.
 */
export function registerDisk(program: Command, run: Runner): void {
  const disk = program.command('disk').description('inspect and convert local disk images (VMDK, VHD, VHDX, OVA, raw); works offline');

  disk
    .command('info <file>')
    .description('format, subformat, virtual size, allocated bytes, files, parent chain, metadata and warnings')
    .action(
      run(async (ctx, _opts, file: string) => {
        const info = await withImage(file, async (image) => image.info);
        ctx.print({ file, ...info }, () => renderInfo(file, info));
      }),
    );

  disk
    .command('cat <file>')
    .description("write the virtual disk's bytes to stdout")
    .action(
      run(async (ctx, _opts, file: string) => {
        await withImage(file, (image) => cat(image, ctx.io.stdout));
      }),
    );

  disk
    .command('convert <in> <out>')
    .description('convert a disk image; OUT appears only when complete')
    .addOption(new Option('--to <format>', 'output format').choices(OUTPUT_FORMATS).makeOptionMandatory())
    .option('--progress', 'show a progress bar on stderr')
    .option('--force', 'replace OUT if it exists')
    .action(
      run(async (ctx, opts: { to: OutputFormat; progress?: boolean; force?: boolean }, input: string, out: string) => {
        if (!opts.force && fs.existsSync(out)) throw new CliError(`${out} already exists (use --force to replace it)`);
        const result = await withImage(input, (image) => convert(ctx, image, out, opts.to, opts.progress === true));
        ctx.print(
          { input, output: out, format: opts.to, files: result.files, bytesWritten: result.bytesWritten },
          () => `converted ${input} to ${opts.to}: ${result.files.join(', ')} (${bytes(result.bytesWritten)} written)`,
        );
      }),
    );

  disk
    .command('map <file>')
    .description('allocated (data) and zero ranges of the virtual disk')
    .action(
      run(async (ctx, _opts, file: string) => {
        const entries = await withImage(file, async (image) => diskMap(image.size, await image.extents()));
        ctx.print(entries, () =>
          table(
            ['OFFSET', 'LENGTH', 'TYPE', 'SIZE'],
            entries.map((e) => [e.offset, e.length, e.data ? 'data' : 'zero', bytes(e.length)]),
          ),
        );
      }),
    );
}

/** Opens `file`, runs `body`, closes; reader and writer errors become one-line CLI errors. */
async function withImage<T>(file: string, body: (image: ImageDisk) => Promise<T>): Promise<T> {
  let image: ImageDisk;
  try {
    image = await openImage(file);
  } catch (err) {
    throw oneLine(err);
  }
  try {
    return await body(image);
  } catch (err) {
    throw oneLine(err);
  } finally {
    await image.close().catch(() => undefined);
  }
}

function oneLine(err: unknown): unknown {
  if (err instanceof DiskError || (err instanceof Error && 'code' in err && typeof (err as NodeJS.ErrnoException).code === 'string')) {
    return new CliError(err.message.replace(/\s*\n\s*/g, ' '));
  }
  return err;
}

/** The whole disk as data and zero ranges, in order, from the sorted extents a reader reports. */
export function diskMap(size: number, extents: Extent[]): MapEntry[] {
  const out: MapEntry[] = [];
  const push = (offset: number, length: number, data: boolean): void => {
    if (length <= 0) return;
    const last = out[out.length - 1];
    if (last && last.data === data && last.offset + last.length === offset) last.length += length;
    else out.push({ offset, length, data });
  };
  let at = 0;
  for (const e of extents) {
    const start = Math.max(e.offset, at);
    const end = Math.min(e.offset + e.length, size);
    if (end <= start) continue;
    push(at, start - at, false);
    push(start, end - start, true);
    at = end;
  }
  push(at, size - at, false);
  return out;
}

/** Writes `chunk`, waiting for the stream to drain when it is full; rejects when the stream fails (e.g. EPIPE). */
function write(stream: NodeJS.WritableStream, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    stream.once('error', onError);
    const done = (): void => {
      stream.off('error', onError);
      resolve();
    };
    if (stream.write(chunk)) done();
    else stream.once('drain', done);
  });
}

/** The virtual disk to `out`: data ranges read from the image, zero ranges from one shared zero buffer. */
async function cat(image: ImageDisk, out: NodeJS.WritableStream): Promise<void> {
  const zeros = Buffer.alloc(CAT_CHUNK);
  for (const entry of diskMap(image.size, await image.extents())) {
    for (let at = entry.offset; at < entry.offset + entry.length; at += CAT_CHUNK) {
      const length = Math.min(CAT_CHUNK, entry.offset + entry.length - at);
      await write(out, entry.data ? await image.read(at, length) : zeros.subarray(0, length));
    }
  }
}

async function convert(ctx: CliContext, image: ImageDisk, out: string, format: OutputFormat, progress: boolean) {
  const bar = progress ? new ProgressBar(ctx, image.size, 'convert') : undefined;
  const controller = new AbortController();
  const interrupt = (): void => controller.abort(new CliError('interrupted'));
  process.once('SIGINT', interrupt);
  const started = Date.now();
  try {
    return await writeImage(image, out, format, {
      signal: controller.signal,
      onProgress: (done, total) => bar?.update(done, total, done / Math.max((Date.now() - started) / 1000, 0.001)),
    });
  } finally {
    process.off('SIGINT', interrupt);
    await bar?.stop();
  }
}

function renderInfo(file: string, info: ImageInfo, indent = ''): string {
  const lines = [
    `${indent}file: ${file}`,
    `${indent}format: ${info.format} (${info.subformat})`,
    `${indent}virtual size: ${bytes(info.virtualSize)} (${info.virtualSize} bytes)`,
  ];
  if (info.allocatedBytes !== undefined) lines.push(`${indent}allocated: ${bytes(info.allocatedBytes)} (${info.allocatedBytes} bytes)`);
  lines.push(`${indent}files: ${info.files.join(', ')}`);
  const meta = Object.entries(info.metadata);
  if (meta.length > 0) lines.push(`${indent}metadata:`, ...meta.map(([k, v]) => `${indent}  ${k}: ${String(v)}`));
  for (const w of info.warnings) lines.push(`${indent}warning: ${w}`);
  info.parents.forEach((p, i) => {
    lines.push(`${indent}parent ${i + 1}:`, renderInfo(p.files[0] ?? '?', { ...p, parents: [] }, `${indent}  `));
  });
  return lines.join('\n');
}
