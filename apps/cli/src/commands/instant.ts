import type { Command } from 'commander';
import { CliContext, CliError } from '../context';
import { bytes, table } from '../format';
import type { Runner } from '../program';
import { ProgressBar } from '../progress-bar';
import { resolveHost } from '../resources';

/** An instant-restore session as the API shows it. */
interface InstantSessionView {
  id: string;
  pointId: string;
  diskKey: string;
  writable: boolean;
  url: string | null;
  sizeBytes: number;
  overlayBytes: number;
  clients: number;
  createdAt: string;
  expiresAt: string;
  /** active, closing (migrating), or lost (its API process stopped) */
  state: string;
  migration?: { target: string; bytesDone: number; bytesTotal: number };
  endReason: string | null;
}

interface ClosedSession {
  id: string;
  migrated?: { path: string; format: string; bytes: number };
}

const MIGRATE_FORMATS = ['raw', 'vmdk-stream'];

/** `vmkeep restore instant|instant-list|instant-close`: added to the `restore` group (registered before this). */
export function registerInstant(program: Command, run: Runner): void {
  const restore = program.commands.find((c) => c.name() === 'restore') ?? program.command('restore').description('restores');

  restore
    .command('instant <point>')
    .description('serve a disk of a restore point over NBD right away and print its nbd:// URL (boot a VM from it)')
    .option('--disk <key>', "disk key inside the point (default: the point's first disk)")
    .option('--writable', 'accept writes into a copy-on-write overlay (the backup itself is never written)')
    .option('--hydrate', "decode the whole point into the session's local cache in the background (client reads go first)")
    .option('--ttl <minutes>', 'lifetime of the session in minutes', '60')
    .action(
      run(async (ctx, opts: { disk?: string; writable?: boolean; hydrate?: boolean; ttl: string }, pointId: string) => {
        const ttlMinutes = Number(opts.ttl);
        if (!Number.isInteger(ttlMinutes) || ttlMinutes < 1) throw new CliError(`--ttl must be a whole number of minutes (got "${opts.ttl}")`);
        const session = await ctx.client.post<InstantSessionView>('/api/instant-sessions', {
          pointId,
          diskKey: opts.disk,
          writable: opts.writable === true,
          ...(opts.hydrate ? { hydrate: true } : {}),
          ttlMinutes,
        });
        ctx.print(session, () =>
          [
            session.url ?? '',
            `session ${session.id}: ${session.diskKey} of point ${session.pointId}, ${session.writable ? 'writable (overlay)' : 'read-only'}, ` +
              `until ${session.expiresAt}`,
            `close it with: vmkeep restore instant-close ${session.id}`,
          ].join('\n'),
        );
      }),
    );

  restore
    .command('instant-list')
    .alias('sessions')
    .description('list instant-restore sessions')
    .action(
      run(async (ctx) => {
        const sessions = await ctx.client.get<InstantSessionView[]>('/api/instant-sessions');
        ctx.print(sessions, () =>
          table(
            ['ID', 'POINT', 'DISK', 'MODE', 'STATE', 'CLIENTS', 'WRITTEN', 'EXPIRES', 'URL'],
            sessions.map((s) => [s.id, s.pointId, s.diskKey, s.writable ? 'rw' : 'ro', s.state, s.clients, bytes(s.overlayBytes), s.expiresAt, s.url ?? '-']),
          ),
        );
      }),
    );

  restore
    .command('instant-close <id>')
    .alias('close')
    .description('end an instant-restore session: discard its writes, or keep the merged disk (--migrate-to FILE or --datastore)')
    .option('--migrate-to <file>', "file name (no folders) for the merged disk in the appliance's migrated/ folder")
    .option('--keep <file>', 'same as --migrate-to (the spelling of `vmkeep restore close ID --keep OUT`)')
    .option('--format <format>', `format of the merged disk: ${MIGRATE_FORMATS.join(', ')}`, 'raw')
    .option('--datastore <name>', 'upload the merged disk to this datastore instead (vmfs descriptor + flat extent)')
    .option('--host <host>', 'registered host (name or id) to upload through (with --datastore)')
    .option('--folder <name>', 'new datastore folder for the disk (with --datastore)')
    .option('--thin', 'mark the uploaded disk thin provisioned (with --datastore)')
    .action(
      run(async (ctx, opts: { migrateTo?: string; keep?: string; format: string; datastore?: string; host?: string; folder?: string; thin?: boolean }, id: string) => {
        if (opts.keep !== undefined) {
          if (opts.migrateTo !== undefined && opts.migrateTo !== opts.keep) throw new CliError('give --keep or --migrate-to, not both');
          opts.migrateTo = opts.keep;
        }
        if (!MIGRATE_FORMATS.includes(opts.format)) throw new CliError(`format "${opts.format}" is not supported (supported: ${MIGRATE_FORMATS.join(', ')})`);
        let body: Record<string, unknown> = opts.migrateTo === undefined ? {} : { migrateTo: opts.migrateTo, format: opts.format };
        if (opts.datastore !== undefined) {
          if (opts.migrateTo !== undefined) throw new CliError('give --migrate-to or --datastore, not both');
          if (!opts.host || !opts.folder) throw new CliError('--datastore needs --host and --folder');
          const host = await resolveHost(ctx, opts.host);
          body = { datastore: { hostId: host.id, datastore: opts.datastore, folder: opts.folder, thin: opts.thin === true } };
        }
        const route = `/api/instant-sessions/${encodeURIComponent(id)}`;
        const result = await withMigrationProgress(ctx, route, body.migrateTo !== undefined || body.datastore !== undefined, () =>
          ctx.client.request<ClosedSession>('DELETE', route, body),
        );
        ctx.print(result, () =>
          result.migrated
            ? `closed session ${id}; merged disk written to ${result.migrated.path} (${result.migrated.format}, ${bytes(result.migrated.bytes)})`
            : `closed session ${id}; its writes were discarded`,
        );
      }),
    );
}

/** Runs the close request; when it migrates, polls the session and shows the bytes written so far. */
async function withMigrationProgress<T>(ctx: CliContext, route: string, migrating: boolean, close: () => Promise<T>): Promise<T> {
  if (!migrating || ctx.json || !ctx.io.stderr.isTTY) return close();
  const bar = new ProgressBar(ctx, 0, 'migrate');
  const started = Date.now();
  let done = false;
  const poll = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 500));
      const view = await ctx.client.get<InstantSessionView>(route).catch(() => undefined);
      const m = view?.migration;
      if (m && !done) bar.update(m.bytesDone, m.bytesTotal, m.bytesDone / Math.max((Date.now() - started) / 1000, 0.001), m.target);
    }
  })();
  try {
    return await close();
  } finally {
    done = true;
    await poll;
    await bar.stop();
  }
}
