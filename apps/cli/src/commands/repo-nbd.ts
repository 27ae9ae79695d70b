/**
 * `vmkeep repo nbd`: serves one disk of a restore point over NBD straight from a repository, without the server
 * (disaster recovery of the appliance itself). Runs until SIGINT/SIGTERM; a writable export keeps its writes in a
 * copy-on-write overlay in a temp folder that is removed on exit (the repository is never written). Decoded chunks are
 * cached in that folder too (each decoded at most once per run; `--hydrate` reads the whole disk in the background).
 */
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { OverlayDisk, type Disk } from '@vmkeep/disk';
import { NbdServer, nbdUrl, newExportToken, openExportCache, parseAllowList } from '@vmkeep/nbd';
import type { Repository } from '@vmkeep/repository';
import { CliContext, CliError } from '../context';
import { bytes } from '../format';
import type { Runner } from '../program';
import type { WithRepo } from './repo';

export const DEFAULT_NBD_LISTEN = '127.0.0.1:10809';

/** "HOST:PORT" or "[V6]:PORT" → parts; port 0 = any free port. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || port > 65535 || (m[1] !== undefined && !net.isIPv6(host))) {
    throw new CliError(`--listen must be HOST:PORT (e.g. 127.0.0.1:10809 or [::1]:10809), got "${text}"`);
  }
  return { host, port };
}

/** Resolves with the first of SIGINT/SIGTERM; the handlers are removed again. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

interface NbdOptions {
  disk?: string;
  listen: string;
  writable?: boolean;
  allow?: string;
  hydrate?: boolean;
}

/** Adds `nbd` to the `repo` group; `cmd` makes a repo subcommand with --repo, `withRepo` opens the repository. */
export function registerRepoNbd(
  cmd: (spec: string, description: string) => Command,
  run: Runner,
  withRepo: WithRepo,
): void {
  cmd('nbd <point>', 'serve a disk of a restore point over NBD until Ctrl-C (no server needed); prints its nbd:// URL')
    .option('--disk <key>', "disk key inside the point (default: the point's first disk)")
    .option('--listen <host:port>', 'address to listen on (port 0 = any free port)', DEFAULT_NBD_LISTEN)
    .option('--writable', 'accept writes into a copy-on-write overlay in a temp folder, discarded on exit')
    .option('--hydrate', 'read the whole disk into the temp cache in the background (client reads go first)')
    .option('--allow <list>', 'comma-separated client IPs/CIDR ranges allowed to connect (default: anyone who knows the URL)')
    .action(
      run(async (ctx, opts: NbdOptions & { repo?: string }, pointId: string) => {
        // Bad flags fail before the repository is opened (and its passphrase asked for).
        parseListen(opts.listen);
        parseAllowList(allowOf(opts));
        return withRepo((c, repo, o: NbdOptions & { repo?: string }, point: string) => serve(c, repo, o, point))(ctx, opts, pointId);
      }),
    );
}

function allowOf(opts: NbdOptions): string[] {
  return (opts.allow ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

async function serve(ctx: CliContext, repo: Repository, opts: NbdOptions, pointId: string): Promise<number> {
  const { host, port } = parseListen(opts.listen);
  const manifest = await repo.readManifest(pointId);
  const key = opts.disk ?? manifest.disks[0]?.key;
  if (!key || !manifest.disks.some((d) => d.key === key)) {
    throw new CliError(`point ${pointId} has no disk "${opts.disk ?? ''}" (it has: ${manifest.disks.map((d) => d.key).join(', ')})`);
  }
  const server = new NbdServer({ host, port, allow: allowOf(opts), log: (line) => ctx.note(line) });
  const base = await repo.openDisk(pointId, key);
  let scratch: string | undefined;
  let cached: Disk | undefined;
  let overlay: OverlayDisk | undefined;
  try {
    scratch = await fsp.mkdtemp(path.join(os.tmpdir(), 'vmkeep-nbd-'));
    // All clients (and the overlay) share one cache of decoded chunks, in the temp folder (memory if no room there).
    const cache = await openExportCache(base, { dir: scratch, hydrate: opts.hydrate, log: (line) => ctx.note(line) });
    cached = cache.disk;
    if (opts.writable) overlay = await OverlayDisk.create(cached, scratch);
    const token = newExportToken();
    const exported: Disk = overlay ?? cached;
    server.addExport(token, exported, { readOnly: !overlay, description: `restore point ${pointId} disk ${key}` });
    const bound = await server.listen().catch((err: Error) => {
      throw new CliError(`cannot listen on ${opts.listen}: ${err.message}`);
    });
    const url = nbdUrl(host, bound.port, token);
    const stopped = untilSignal();
    ctx.print({ url, point: pointId, disk: key, size: base.size, writable: !!overlay, overlayDir: overlay ? scratch : null, cacheDir: cache.scratch ? scratch : null }, () => url);
    ctx.note(
      `serving disk ${key} of point ${pointId} (${bytes(base.size)}) ${overlay ? `writable (overlay in ${scratch}, discarded on exit)` : 'read-only'}; ` +
        'Ctrl-C to stop',
    );
    const signal = await stopped;
    const stats = cache.scratch?.stats();
    if (stats) ctx.note(`${signal}: stopping (cache: ${stats.cachedBlocks}/${stats.dataBlocks} data chunks, ${stats.decodedBlocks} decoded, ${stats.fileReads} reads from the cache file)`);
    else ctx.note(`${signal}: stopping`);
    return 0;
  } finally {
    await server.close().catch(() => undefined);
    await overlay?.close().catch(() => undefined);
    await cached?.close().catch(() => undefined);
    if (scratch) await fsp.rm(scratch, { recursive: true, force: true });
    await base.close().catch(() => undefined);
  }
}
