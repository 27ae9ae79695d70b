/**
 * `vmkeep repo ...`: works directly on a repository (a folder or s3://BUCKET/PREFIX), no server involved. The
 * repository comes from --repo or VMKEEP_REPO, the passphrase of an encrypted one from VMKEEP_PASSPHRASE or a
 * prompt, the S3 server from VMKEEP_S3_ENDPOINT / AWS_* (libs/config, loadS3Config).
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { loadRepoCliConfig, loadS3Config } from '@vmkeep/config';
import { OUTPUT_FORMATS, OutputFormat, openImage, writeImage } from '@vmkeep/disk-formats';
import {
  PassphraseRequiredError,
  Repository,
  RepositoryLocation,
  RetentionPolicy,
  RuntimeOptions,
  StaleLock,
  VerifyReport,
  closeSharedChunkWorkers,
  copyPoints,
  describeStaleLock,
  parseRepositoryLocation,
} from '@vmkeep/repository';
import { CliContext, CliError } from '../context';
import { bytes, table } from '../format';
import type { Runner } from '../program';
import { registerRepoFiles } from './files';
import { registerRepoNbd } from './repo-nbd';
import { ProgressBar } from '../progress-bar';

interface RepoOptions {
  repo?: string;
}

/** Where the repository is: an absolute folder path, or `s3://BUCKET/PREFIX` as given. */
export function resolveLocation(flag: string | undefined, env: Record<string, string | undefined> = process.env): string {
  const { repo } = loadRepoCliConfig({ repo: flag }, env);
  if (!repo) throw new CliError('no repository given: use --repo PATH or set VMKEEP_REPO (a folder or s3://BUCKET/PREFIX)');
  const location: RepositoryLocation = parseRepositoryLocation(repo);
  return location.kind === 's3' ? `s3://${location.bucket}/${location.prefix}` : location.path;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "0", "90s", "30m", "24h", "7d", "2w", "1h30m" → milliseconds. */
export function parseDuration(text: string): number {
  const value = text.trim();
  if (value === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(value); m; m = re.exec(value)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    end = re.lastIndex;
  }
  if (end === 0 || end !== value.length || !Number.isFinite(total)) {
    throw new CliError(`invalid duration "${text}": use e.g. 0, 90s, 30m, 24h, 7d`);
  }
  return total;
}

function parseCount(value: string, flag: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new CliError(`${flag} must be a whole number, got "${value}"`);
  return n;
}

/** Reads a line from a terminal without echoing it. Refuses when stdin is not a terminal. */
export async function promptHidden(ctx: CliContext, question: string): Promise<string> {
  const stdin = ctx.io.stdin as NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  if (!stdin.isTTY || typeof stdin.setRawMode !== 'function') {
    throw new CliError('a passphrase is needed: set VMKEEP_PASSPHRASE or run in a terminal to be asked');
  }
  ctx.io.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (data: Buffer | string) => {
        for (const ch of data.toString('utf8')) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') {
            stdin.off('data', onData);
            ctx.io.stderr.write('\n');
            resolve(typed);
            return;
          }
          if (ch === '\u0003') {
            stdin.off('data', onData);
            ctx.io.stderr.write('\n');
            reject(new CliError('cancelled'));
            return;
          }
          if (ch === '\u007f' || ch === '\b') typed = [...typed].slice(0, -1).join('');
          else typed += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}

/** A new passphrase: from `fromEnv`, else asked twice. */
async function newPassphrase(ctx: CliContext, fromEnv: string | undefined, what: string): Promise<string> {
  if (fromEnv !== undefined) return fromEnv;
  const first = await promptHidden(ctx, `${what}: `);
  if (first === '') throw new CliError('the passphrase must not be empty');
  if ((await promptHidden(ctx, `${what} (again): `)) !== first) throw new CliError('the passphrases differ');
  return first;
}

/**
 * Runtime options every command opens `where` with: stale locks taken over are reported on stderr (also with
 * --json); an s3:// location gets the S3 server settings of the environment.
 */
function runtimeFor(ctx: CliContext, where: string, passphrase?: string): RuntimeOptions {
  return {
    passphrase,
    onStaleLock: (stale: StaleLock) => ctx.io.stderr.write(`warning: ${describeStaleLock(stale)}\n`),
    ...(where.startsWith('s3://') ? { s3: loadS3Config() } : {}),
  };
}

/** Opens the repository in `dir`, asking `question` only when it is encrypted and no passphrase was given. */
async function openAt(ctx: CliContext, dir: string, passphrase: string | undefined, question: string): Promise<Repository> {
  try {
    return await Repository.open(dir, runtimeFor(ctx, dir, passphrase));
  } catch (err) {
    if (!(err instanceof PassphraseRequiredError) || passphrase !== undefined) throw err;
  }
  return Repository.open(dir, runtimeFor(ctx, dir, await promptHidden(ctx, question)));
}

/** Opens the repository, asking for the passphrase only when it is encrypted and VMKEEP_PASSPHRASE is unset. */
function openRepo(ctx: CliContext, opts: RepoOptions): Promise<Repository> {
  const { passphrase } = loadRepoCliConfig({ repo: opts.repo });
  return openAt(ctx, resolveLocation(opts.repo), passphrase, 'Repository passphrase: ');
}

/** How a command body gets the repository opened for it (see withRepo). */
export type WithRepo = <O extends RepoOptions>(
  body: (ctx: CliContext, repo: Repository, opts: O, ...args: string[]) => Promise<number | void>,
) => (ctx: CliContext, opts: O, ...args: string[]) => Promise<number | void>;

/** Runs a command body with the repository open; the hashing workers are shut down afterwards. */
function withRepo<O extends RepoOptions>(
  body: (ctx: CliContext, repo: Repository, opts: O, ...args: string[]) => Promise<number | void>,
): (ctx: CliContext, opts: O, ...args: string[]) => Promise<number | void> {
  return async (ctx, opts, ...args) => {
    let repo: Repository | undefined;
    try {
      repo = await openRepo(ctx, opts);
      return await body(ctx, repo, opts, ...args);
    } catch (err) {
      throw explain(err);
    } finally {
      await repo?.close();
      await closeSharedChunkWorkers();
    }
  };
}

/** Turns low-level errors a user can act on into one clear line. */
function explain(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new CliError(`the repository's file system is full (${code}): nothing was committed; free space or run "vmkeep repo gc"`);
  }
  if (code === 'EACCES' || code === 'EROFS') return new CliError(`cannot write to the repository: ${(err as Error).message}`);
  return err;
}

function speed(done: number, started: number): number {
  return done / Math.max((Date.now() - started) / 1000, 0.001);
}

function describeVerify(report: VerifyReport): string {
  const lines = [
    `checked ${report.points.length} point(s), ${report.chunksChecked} chunk(s), ${bytes(report.bytesChecked)}: ` +
      (report.ok ? 'OK' : `DAMAGED (${report.brokenPoints.length} point(s) cannot be restored completely)`),
  ];
  for (const c of report.badChunks) {
    const refs = c.refs.map((r) => `point ${r.pointId} disk ${r.diskKey} offset ${r.offset}`).join('; ');
    lines.push(`${c.problem} chunk ${c.id}: ${c.reason} — needed by ${refs}`);
  }
  for (const i of report.badIndexes) lines.push(`bad index of point ${i.pointId} disk ${i.diskKey}: ${i.reason}`);
  if (report.brokenPoints.length) lines.push(`broken points: ${report.brokenPoints.join(', ')}`);
  return lines.join('\n');
}

export function registerRepo(program: Command, run: Runner): void {
  const repo = program.command('repo').description('work on a repository (folder or S3) directly (no server)');
  const cmd = (spec: string, description: string) =>
    repo.command(spec).description(description).option('--repo <path|s3://bucket/prefix>', 'repository folder or S3 URL (or VMKEEP_REPO)');

  cmd('init', 'create a repository in an empty or missing folder')
    .option('--chunk-size <bytes>', 'chunk size: power of two, 256K-8M (default 1M)')
    .option('--compression-level <n>', 'zstd level 1-19 (default 3)')
    .option('--encrypt', 'encrypt with a passphrase (VMKEEP_PASSPHRASE or asked)')
    .action(
      run(async (ctx, opts: RepoOptions & { chunkSize?: string; compressionLevel?: string; encrypt?: boolean }) => {
        const dir = resolveLocation(opts.repo);
        const chunkSize = opts.chunkSize === undefined ? undefined : parseSize(opts.chunkSize);
        const compressionLevel =
          opts.compressionLevel === undefined ? undefined : parseCount(opts.compressionLevel, '--compression-level');
        const passphrase = opts.encrypt
          ? await newPassphrase(ctx, loadRepoCliConfig({ repo: opts.repo }).passphrase, 'New repository passphrase')
          : undefined;
        try {
          const init = { chunkSize, compressionLevel, encrypt: !!opts.encrypt };
          const created = await Repository.init(dir, init, runtimeFor(ctx, dir, passphrase));
          const info = { repo: created.dir, id: created.config.id, chunkSize: created.chunkSize, encrypted: created.encrypted };
          await created.close();
          ctx.print(info, () => `created ${created.encrypted ? 'encrypted ' : ''}repository ${created.dir} (chunk size ${bytes(created.chunkSize)})`);
        } finally {
          await closeSharedChunkWorkers();
        }
      }),
    );

  cmd('list', 'list the restore points with VM name, time, disks and sizes')
    .option('--storage', 'also count stored chunks and bytes')
    .action(
      run(
        withRepo(async (ctx, r, opts: RepoOptions & { storage?: boolean }) => {
          const d = await r.describe({ storage: !!opts.storage });
          ctx.print(d, () => {
            const rows = d.points.map((p) => [
              p.id,
              p.createdAt,
              p.vmName ?? '',
              p.disks.map((k) => `${k.key} (${bytes(k.size)})`).join(', '),
              bytes(p.totalSize),
              p.archive ? `until ${p.archive.retainUntil}${p.archive.legalHold ? ', hold' : ''}` : '',
            ]);
            const head = `repository ${r.dir}: ${d.points.length} point(s)${d.encrypted ? ', encrypted' : ''}` +
              (d.storage ? `, ${d.storage.chunks} chunks, ${bytes(d.storage.bytes)} stored` : '');
            return `${head}\n${table(['ID', 'CREATED', 'VM', 'DISKS', 'SIZE', 'ARCHIVED'], rows)}`;
          });
        }),
      ),
    );

  cmd('backup-image <image>', 'store a disk image (VMDK, VHD, VHDX, OVA or raw) as a new restore point')
    .option('--name <name>', 'VM name recorded in the point (default: the image file name)')
    .option('--disk-key <key>', 'disk key inside the point', 'disk-0')
    .action(
      run(
        withRepo(async (ctx, r, opts: RepoOptions & { name?: string; diskKey: string }, image: string) => {
          const disk = await openImage(image).catch((err: unknown) => {
            throw new CliError(`cannot read image ${image}: ${(err as Error).message}`);
          });
          const file = path.basename(image);
          const writer = r.beginPoint();
          const bar = new ProgressBar(ctx, disk.size, opts.diskKey);
          const started = Date.now();
          try {
            const stats = await writer.writeDisk(opts.diskKey, disk, {
              meta: { label: file, fileName: file, format: disk.info.format, subformat: disk.info.subformat },
              onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, speed(p.bytesDone, started)),
            });
            await bar.stop();
            const manifest = await writer.commit({
              vm: { name: opts.name ?? file },
              source: { kind: 'image', file, format: disk.info.format },
            });
            ctx.print({ point: manifest.id, disk: opts.diskKey, ...stats }, () =>
              `created point ${manifest.id}: ${bytes(stats.size)}, ${stats.newChunks} new chunk(s) (${bytes(stats.newBytes)} stored), ` +
              `${stats.dedupChunks} deduplicated, ${stats.zeroChunks} zero`,
            );
          } catch (err) {
            await bar.stop();
            await writer.abort().catch(() => undefined);
            throw err;
          } finally {
            await disk.close();
          }
        }),
      ),
    );

  cmd('restore-image <point> [out]', 'write a disk of a restore point to a file (OUT or --output)')
    .alias('restore')
    .option('--disk <key>', 'disk key (needed when the point has more than one disk)')
    .option('--output <file>', 'file to write (appears only when complete); same as OUT')
    .option('--format <format>', `output format: ${OUTPUT_FORMATS.join(', ')}`, 'raw')
    .action(
      run(
        withRepo(async (ctx, r, opts: RepoOptions & { disk?: string; output?: string; format: string }, pointId: string, out?: string) => {
          if (out !== undefined && opts.output !== undefined && out !== opts.output) throw new CliError('give the output file once: OUT or --output');
          const output = out ?? opts.output;
          if (output === undefined) throw new CliError('give the output file: repo restore-image POINT OUT (or --output FILE)');
          if (!OUTPUT_FORMATS.includes(opts.format as OutputFormat)) {
            throw new CliError(`unknown format "${opts.format}" (supported: ${OUTPUT_FORMATS.join(', ')})`);
          }
          const manifest = await r.readManifest(pointId);
          const key = opts.disk ?? (manifest.disks.length === 1 ? manifest.disks[0].key : undefined);
          if (!key) {
            throw new CliError(`point ${pointId} has several disks: choose one with --disk (${manifest.disks.map((d) => d.key).join(', ')})`);
          }
          const disk = await r.openDisk(pointId, key);
          const bar = new ProgressBar(ctx, disk.size, key);
          const started = Date.now();
          try {
            const result = await writeImage(disk, output, opts.format as OutputFormat, {
              onProgress: (done, total) => bar.update(done, total, speed(done, started)),
            });
            await bar.stop();
            ctx.print({ point: pointId, disk: key, format: opts.format, size: disk.size, ...result }, () =>
              `restored disk ${key} of point ${pointId} (${bytes(disk.size)}) to ${result.files.join(', ')}`,
            );
          } finally {
            await bar.stop();
            await disk.close();
          }
        }),
      ),
    );

  cmd('verify [points...]', 'check every chunk of the given points (default: all); exits 1 when damaged')
    .action(
      run(
        withRepo(async (ctx, r, _opts: RepoOptions, ...rest: unknown[]) => {
          const ids = (rest[0] as string[] | undefined) ?? [];
          const report = await r.verify(ids.length ? { points: ids } : {});
          ctx.print(report, () => describeVerify(report));
          return report.ok ? 0 : 1;
        }),
      ),
    );

  cmd('prune', 'remove restore points the retention policy does not keep (archived points are always kept)')
    .option('--keep-last <n>', 'keep the newest N points')
    .option('--keep-hourly <n>', 'keep the last point of each of the last N hours')
    .option('--keep-daily <n>', 'keep the last point of each of the last N days')
    .option('--keep-weekly <n>', 'keep the last point of each of the last N weeks')
    .option('--keep-monthly <n>', 'keep the last point of each of the last N months')
    .option('--keep-yearly <n>', 'keep the last point of each of the last N years')
    .option('--time-zone <tz>', 'IANA time zone of the periods (default UTC)')
    .option('--dry-run', 'only list what would be removed')
    .action(
      run(
        withRepo(async (ctx, r, opts: RepoOptions & Record<string, string | boolean | undefined>) => {
          const policy: RetentionPolicy = {};
          for (const k of ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const) {
            const v = opts[k];
            if (typeof v === 'string') policy[k] = parseCount(v, `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
          }
          if (typeof opts.timeZone === 'string') policy.timeZone = opts.timeZone;
          const result = await r.prune(policy, { dryRun: opts.dryRun === true });
          ctx.print(result, () => {
            const lines = result.plan.keep.map((k) => `keep    ${k.id}  (${k.reasons.join(', ')})`);
            const verb = result.dryRun ? 'would remove' : 'remove';
            lines.push(...result.plan.remove.map((p) => `${verb.padEnd(7)} ${p.id}`));
            lines.push(...result.skipped.map((s) => `skipped ${s.id}: ${s.reason}`));
            lines.push(
              result.dryRun
                ? `dry run: ${result.plan.remove.length} point(s) would be removed, ${result.plan.keep.length} kept`
                : `removed ${result.removed.length} point(s), kept ${result.plan.keep.length}; run "vmkeep repo gc" to free their chunks`,
            );
            return lines.join('\n');
          });
        }),
      ),
    );

  cmd('gc', 'delete chunks no restore point uses (older than the grace period)')
    .option('--grace <duration>', 'keep unreferenced chunks younger than this (e.g. 0, 30m, 24h)', '24h')
    .option('--dry-run', 'only count what would be deleted')
    .action(
      run(
        withRepo(async (ctx, r, opts: RepoOptions & { grace: string; dryRun?: boolean }) => {
          const report = await r.collectGarbage({ graceMs: parseDuration(opts.grace), dryRun: !!opts.dryRun });
          ctx.print(report, () =>
            `${report.dryRun ? 'would delete' : 'deleted'} ${report.sweptChunks} chunk(s) (${bytes(report.sweptBytes)}); ` +
            `${report.referencedChunks} referenced, ${report.keptRecentChunks} unreferenced but younger than the grace period` +
            (report.activeWriters.length ? `; ${report.activeWriters.length} backup(s) running` : ''),
          );
        }),
      ),
    );

  cmd('archive <point>', 'archive a restore point: nothing can remove it before the date or while on hold')
    .option('--until <date>', 'retain until this ISO date or time (can be extended later, never shortened)')
    .option('--hold', 'put the point on legal hold')
    .option('--release-hold', 'release the legal hold')
    .action(
      run(
        withRepo(async (ctx, r, opts: RepoOptions & { until?: string; hold?: boolean; releaseHold?: boolean }, pointId: string) => {
          if (opts.hold && opts.releaseHold) throw new CliError('--hold and --release-hold exclude each other');
          if (opts.until === undefined && !opts.hold && !opts.releaseHold) {
            throw new CliError('give --until DATE (and/or --hold / --release-hold)');
          }
          const legalHold = opts.hold ? true : opts.releaseHold ? false : undefined;
          const status = await r.archivePoint(pointId, {
            ...(opts.until !== undefined ? { retainUntil: opts.until } : {}),
            ...(legalHold !== undefined ? { legalHold } : {}),
          });
          ctx.print(status, () =>
            `point ${pointId} archived until ${status.retainUntil}${status.legalHold ? ', on legal hold' : ''}`,
          );
        }),
      ),
    );

  cmd('copy [points...]', 'copy restore points (default: all) to another repository; only missing chunks travel')
    .requiredOption('--to <repo>', 'target repository (its passphrase: VMKEEP_TARGET_PASSPHRASE or asked)')
    .action(
      run(
        withRepo(async (ctx, r, opts: RepoOptions & { to: string }, ...rest: unknown[]) => {
          const ids = (rest[0] as string[] | undefined) ?? [];
          const { targetPassphrase } = loadRepoCliConfig({ repo: opts.repo });
          const target = await openAt(ctx, resolveLocation(opts.to), targetPassphrase, 'Target repository passphrase: ');
          const bar = new ProgressBar(ctx, 0, 'copy');
          const started = Date.now();
          try {
            const report = await copyPoints(r, target, {
              ...(ids.length ? { points: ids } : {}),
              onProgress: (p) => {
                const done = p.chunksDone * r.chunkSize;
                bar.update(done, p.chunksTotal * r.chunkSize, speed(done, started), `point ${p.pointsDone + 1}/${p.pointsTotal}`);
              },
            });
            await bar.stop();
            ctx.print({ from: r.dir, to: target.dir, ...report }, () =>
              `copied ${report.copied.length} point(s) to ${target.dir} (${report.skipped.length} already there): ` +
              `${report.chunksTransferred} chunk(s) sent (${bytes(report.bytesTransferred)}), ${report.chunksPresent} already present`,
            );
          } finally {
            await bar.stop();
            await target.close();
          }
        }),
      ),
    );

  cmd('passphrase', 'change the passphrase of an encrypted repository (VMKEEP_NEW_PASSPHRASE or asked)')
    .action(
      run(async (ctx, opts: RepoOptions) => {
        const dir = resolveLocation(opts.repo);
        const config = loadRepoCliConfig({ repo: opts.repo });
        const current = config.passphrase ?? (await promptHidden(ctx, 'Current passphrase: '));
        try {
          const r = await Repository.open(dir, runtimeFor(ctx, dir, current));
          try {
            if (!r.encrypted) throw new CliError('this repository is not encrypted: it has no passphrase');
            const next = await newPassphrase(ctx, config.newPassphrase, 'New passphrase');
            await r.changePassphrase(current, next);
          } finally {
            await r.close();
          }
          ctx.print({ repo: r.dir, changed: true }, () => `passphrase of ${r.dir} changed`);
        } finally {
          await closeSharedChunkWorkers();
        }
      }),
    );
  registerRepoFiles(repo, run, withRepo);
  registerRepoNbd(cmd, run, withRepo);
}

/** "1048576", "1M", "256K", "1MiB" → bytes. */
function parseSize(text: string): number {
  const m = /^(\d+)\s*(k|kib|m|mib)?$/i.exec(text.trim());
  if (!m) throw new CliError(`invalid size "${text}": use bytes or e.g. 256K, 1M`);
  const unit = (m[2] ?? '').toLowerCase();
  return Number(m[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1);
}
