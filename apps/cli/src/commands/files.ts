/**
 * `vmkeep files ls|get`: browse and download files of a restore point through the API; `vmkeep repo files
 * ls|get`: the same straight from a repository folder, without the server. Folders travel as tar and are
 * unpacked safely (nothing outside the output folder, symlinks recreated, never followed).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import type { Disk } from '@vmkeep/disk';
import type { Repository } from '@vmkeep/repository';
import type { DirPage, FileBrowser, VolumeView } from '@vmkeep/restore';
import { CliContext, CliError } from '../context';
import { bytes, table } from '../format';
import { resolveVm } from '../resources';
import type { Runner } from '../program';

type RestoreLib = typeof import('@vmkeep/restore');

/**
 * @vmkeep/restore (file system readers, archive writers, its Nest modules) is loaded by the commands that need it
 * only: every other command starts faster and smaller without it (a backup's peak memory included).
 */
const restoreLib = (): Promise<RestoreLib> => import('@vmkeep/restore');

/** What `ls` and `get` need, from the API or from a local browser. */
interface FilesSource {
  volumes(): Promise<VolumeView[]>;
  list(vol: number, guestPath: string, offset: number): Promise<DirPage>;
  stat(vol: number, guestPath: string): Promise<{ type: string; size: number }>;
  /** The file's bytes. */
  file(vol: number, guestPath: string): Promise<AsyncIterable<Buffer>>;
  /** A folder as a tar stream. */
  tar(vol: number, guestPath: string): Promise<AsyncIterable<Buffer>>;
}

function apiSource(ctx: CliContext, point: string): FilesSource {
  const base = `/api/restore-points/${encodeURIComponent(point)}/volumes`;
  const q = (p: string, extra = '') => `?path=${encodeURIComponent(p)}${extra}`;
  return {
    volumes: () => ctx.client.get<VolumeView[]>(base),
    list: (vol, p, offset) => ctx.client.get<DirPage>(`${base}/${vol}/dir${q(p, `&offset=${offset}&limit=1000&sort=name`)}`),
    stat: (vol, p) => ctx.client.get(`${base}/${vol}/stat${q(p)}`),
    file: async (vol, p) => (await ctx.client.download(`${base}/${vol}/file${q(p)}`)).body,
    tar: async (vol, p) => (await ctx.client.download(`${base}/${vol}/archive${q(p, '&format=tar')}`)).body,
  };
}

function localSource(browser: FileBrowser, { readFileRange, translate, normalizeGuestPath, tarStream, baseName }: RestoreLib): FilesSource {
  return {
    volumes: async () => browser.volumes,
    list: (vol, p, offset) => browser.list(vol, p, { offset, limit: 1000, sort: 'name' }),
    stat: (vol, p) => browser.stat(vol, p),
    file: async (vol, p) => readFileRange(await translate(browser.fileSystem(vol).open(normalizeGuestPath(p)))),
    tar: async (vol, p) => {
      const guest = normalizeGuestPath(p);
      return tarStream(browser.fileSystem(vol), guest, baseName(guest) || `volume-${vol}`);
    },
  };
}

function parseVolume(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new CliError(`--volume must be a volume number (see "files ls POINT"), got "${text}"`);
  return Number(text);
}

function describeVolume(v: VolumeView): string {
  return v.fileSystem ? `${v.volume} (${v.fileSystem.type}${v.fileSystem.label ? ` "${v.fileSystem.label}"` : ''})` : `${v.volume}`;
}

/** --volume, or the only volume with a readable file system. */
async function pickVolume(source: FilesSource, given: number | undefined): Promise<number> {
  if (given !== undefined) return given;
  const readable = (await source.volumes()).filter((v) => v.fileSystem);
  if (readable.length === 1) return readable[0].volume;
  if (readable.length === 0) throw new CliError('this restore point has no volume with a readable file system');
  throw new CliError(`several volumes: choose one with --volume (${readable.map(describeVolume).join(', ')})`);
}

function volumesTable(volumes: VolumeView[]): string {
  return table(
    ['VOL', 'ID', 'DISK', 'SIZE', 'FS', 'LABEL', 'STATE'],
    volumes.map((v) => [
      v.volume,
      v.id,
      v.diskKey ?? '',
      bytes(v.size),
      v.fileSystem?.type ?? '-',
      v.fileSystem?.label ?? '',
      v.fileSystem ? (v.fileSystem.dirty ? `dirty: ${v.fileSystem.warnings.join('; ')}` : 'clean') : (v.error ?? ''),
    ]),
  );
}

async function ls(ctx: CliContext, source: FilesSource, volume: string | undefined, guestPath: string | undefined): Promise<void> {
  const { normalizeGuestPath } = await restoreLib();
  const given = parseVolume(volume);
  if (given === undefined && guestPath === undefined) {
    const volumes = await source.volumes();
    if (volumes.filter((v) => v.fileSystem).length !== 1) {
      ctx.print(volumes, () => volumesTable(volumes));
      return;
    }
  }
  const vol = await pickVolume(source, given);
  const entries: DirPage['entries'] = [];
  const p = guestPath ?? '/';
  for (let offset: number | null = 0; offset !== null; ) {
    const page: DirPage = await source.list(vol, p, offset);
    entries.push(...page.entries);
    offset = page.nextOffset;
  }
  ctx.print({ volume: vol, path: normalizeGuestPath(p), entries }, () =>
    table(
      ['TYPE', 'MODE', 'SIZE', 'MODIFIED', 'NAME'],
      entries.map((e) => [e.type, (e.mode & 0o7777).toString(8).padStart(4, '0'), e.type === 'file' ? String(e.size) : '', e.mtime ?? '', e.error ? `${e.name}  (damaged: ${e.error})` : e.name]),
    ),
  );
}

/** Writes a stream to `file` through a temporary name, so the file appears only when complete. */
async function writeFile(body: AsyncIterable<Buffer>, file: string): Promise<void> {
  const part = `${file}.part-${process.pid}`;
  try {
    await pipeline(Readable.from(body), fs.createWriteStream(part, { flags: 'wx' }));
    await fsp.rename(part, file);
  } catch (err) {
    await fsp.rm(part, { force: true });
    throw err;
  }
}

async function get(ctx: CliContext, source: FilesSource, volume: string | undefined, guestPath: string, output: string): Promise<void> {
  const { untar, normalizeGuestPath, baseName } = await restoreLib();
  const vol = await pickVolume(source, parseVolume(volume));
  const st = await source.stat(vol, guestPath);
  if (st.type === 'directory') {
    const result = await untar(await source.tar(vol, guestPath), output);
    ctx.print({ volume: vol, path: normalizeGuestPath(guestPath), output, ...result }, () =>
      `unpacked ${result.files} file(s), ${result.directories} folder(s), ${result.symlinks} symlink(s) (${bytes(result.bytes)}) into ${output}` +
      (result.skipped.length ? `\nnot unpacked (special files): ${result.skipped.join(', ')}` : ''),
    );
    return;
  }
  if (st.type !== 'file') throw new CliError(`${guestPath} is a ${st.type}: only files and folders can be downloaded`);
  let target = output;
  if ((await fsp.stat(output).catch(() => null))?.isDirectory()) target = path.join(output, baseName(normalizeGuestPath(guestPath)));
  await writeFile(await source.file(vol, guestPath), target);
  ctx.print({ volume: vol, path: normalizeGuestPath(guestPath), output: target, size: st.size }, () => `wrote ${target} (${bytes(st.size)})`);
}

interface LsOptions {
  volume?: string;
}
interface GetOptions extends LsOptions {
  output: string;
}

const VOLUME_HELP = 'volume number (default: the only readable one; "files ls POINT" lists them)';

export function registerFiles(program: Command, run: Runner): void {
  // `files find` (the guest file index) registers under the same parent: whichever comes first creates it.
  const files = program.commands.find((c) => c.name() === 'files') ?? program.command('files').description('files inside restore points');
  files
    .command('ls <point> [path]')
    .description('list a folder of a restore point (without path and --volume: its volumes)')
    .option('--volume <n>', VOLUME_HELP)
    .action(run(async (ctx, opts: LsOptions, point: string, guestPath?: string) => ls(ctx, apiSource(ctx, point), opts.volume, guestPath)));
  files
    .command('get <point> <path>')
    .description('download a file, or a folder (unpacked into --output)')
    .option('--volume <n>', VOLUME_HELP)
    .requiredOption('--output <file|dir>', 'file to write, or folder to unpack into')
    .action(run(async (ctx, opts: GetOptions, point: string, guestPath: string) => get(ctx, apiSource(ctx, point), opts.volume, guestPath, opts.output)));
  files
    .command('restore <point> <path>')
    .description('restore a file or folder into the running guest of a VM (vSphere guest operations; needs VMware Tools)')
    .option('--to-guest', 'write into the guest (the only target so far)')
    .option('--vm <vm>', "target VM by name or id (default: the point's VM)")
    .option('--volume <n>', VOLUME_HELP)
    .requiredOption('--guest-path <folder>', 'folder in the guest to restore into, made when missing ("/restore", "C:\\restore")')
    .requiredOption('--guest-user <user>', 'guest OS user name')
    .option('--guest-password-stdin', 'read the guest password from standard input')
    .option('--guest-password <password>', 'guest password (prefer --guest-password-stdin)')
    .option('--overwrite', 'replace files that exist in the guest (folders are merged)')
    .action(run(async (ctx, opts: RestoreToGuestOptions, point: string, guestPath: string) => restoreIntoGuest(ctx, opts, point, guestPath)));
}

interface RestoreToGuestOptions extends LsOptions {
  toGuest?: boolean;
  vm?: string;
  guestPath: string;
  guestUser: string;
  guestPassword?: string;
  guestPasswordStdin?: boolean;
  overwrite?: boolean;
}

interface RestoreToGuestResult {
  target: string;
  vmId: string;
  folders: number;
  files: number;
  bytes: number;
  skipped: { path: string; reason: string }[];
}

async function restoreIntoGuest(ctx: CliContext, opts: RestoreToGuestOptions, point: string, guestPath: string): Promise<void> {
  if (!opts.toGuest) throw new CliError('give --to-guest: files are restored into the running guest of a VM (use "files get" to download them)');
  const password = await ctx.password({ password: opts.guestPassword, passwordStdin: opts.guestPasswordStdin }, 'guest password');
  const source = apiSource(ctx, point);
  const vol = await pickVolume(source, parseVolume(opts.volume));
  const vmId = opts.vm ? (await resolveVm(ctx, opts.vm)).id : undefined;
  const result = await ctx.client.post<RestoreToGuestResult>(`/api/restore-points/${encodeURIComponent(point)}/volumes/${vol}/restore-to-guest`, {
    path: guestPath,
    guestPath: opts.guestPath,
    guestUser: opts.guestUser,
    guestPassword: password,
    ...(vmId ? { vmId } : {}),
    ...(opts.overwrite ? { overwrite: true } : {}),
  });
  ctx.print(result, () =>
    [
      `restored ${result.target}: ${result.files} file(s), ${result.folders} folder(s), ${bytes(result.bytes)}`,
      ...result.skipped.map((s) => `skipped ${s.path}: ${s.reason}`),
    ].join('\n'),
  );
}

/** Runs a body with an opened repository (repo.ts's withRepo). */
type WithRepo = <O extends { repo?: string }>(
  body: (ctx: CliContext, repo: Repository, opts: O, ...args: string[]) => Promise<number | void>,
) => (ctx: CliContext, opts: O, ...args: string[]) => Promise<number | void>;

async function withBrowser<T>(repo: Repository, point: string, work: (source: FilesSource) => Promise<T>): Promise<T> {
  const manifest = await repo.readManifest(point);
  const disks: { key: string; disk: Disk }[] = [];
  let browser: FileBrowser | undefined;
  try {
    const lib = await restoreLib();
    for (const d of manifest.disks) disks.push({ key: d.key, disk: await repo.openDisk(point, d.key) });
    browser = await lib.FileBrowser.open(disks);
    return await work(localSource(browser, lib));
  } finally {
    await Promise.allSettled(disks.map((d) => d.disk.close()));
  }
}

/** `vmkeep repo files ls|get`: offline browsing of a repository's restore point. */
export function registerRepoFiles(repoCommand: Command, run: Runner, withRepo: WithRepo): void {
  const files =
    repoCommand.commands.find((c) => c.name() === 'files') ??
    repoCommand.command('files').description('browse and download files of a restore point in the repository');
  files
    .command('ls <point> [path]')
    .description('list a folder of a restore point (without path and --volume: its volumes)')
    .option('--repo <path>', 'repository folder (or VMKEEP_REPO)')
    .option('--volume <n>', VOLUME_HELP)
    .action(
      run(
        withRepo(async (ctx, repo, opts: LsOptions & { repo?: string }, point: string, guestPath?: string) =>
          withBrowser(repo, point, (source) => ls(ctx, source, opts.volume, guestPath)),
        ),
      ),
    );
  files
    .command('get <point> <path>')
    .description('copy a file, or a folder (unpacked into --output), out of a restore point')
    .option('--repo <path>', 'repository folder (or VMKEEP_REPO)')
    .option('--volume <n>', VOLUME_HELP)
    .requiredOption('--output <file|dir>', 'file to write, or folder to unpack into')
    .action(
      run(
        withRepo(async (ctx, repo, opts: GetOptions & { repo?: string }, point: string, guestPath: string) =>
          withBrowser(repo, point, (source) => get(ctx, source, opts.volume, guestPath, opts.output)),
        ),
      ),
    );
}
