import type { Command } from 'commander';
import { CliError } from '../context';
import { bytes, table } from '../format';
import type { Runner } from '../program';

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
    .option('--ttl <minutes>', 'lifetime of the session in minutes', '60')
    .action(
      run(async (ctx, opts: { disk?: string; writable?: boolean; ttl: string }, pointId: string) => {
        const ttlMinutes = Number(opts.ttl);
        if (!Number.isInteger(ttlMinutes) || ttlMinutes < 1) throw new CliError(`--ttl must be a whole number of minutes (got "${opts.ttl}")`);
        const session = await ctx.client.post<InstantSessionView>('/api/instant-sessions', {
          pointId,
          diskKey: opts.disk,
          writable: opts.writable === true,
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
            ['ID', 'POINT', 'DISK', 'MODE', 'CLIENTS', 'WRITTEN', 'EXPIRES', 'URL'],
            sessions.map((s) => [s.id, s.pointId, s.diskKey, s.writable ? 'rw' : 'ro', s.clients, bytes(s.overlayBytes), s.expiresAt, s.url ?? '-']),
          ),
        );
      }),
    );

  restore
    .command('instant-close <id>')
    .alias('close')
    .description('end an instant-restore session: discard its writes, or keep the merged disk with --migrate-to')
    .option('--migrate-to <file>', "file name (no folders) for the merged disk in the appliance's migrated/ folder")
    .option('--format <format>', `format of the merged disk: ${MIGRATE_FORMATS.join(', ')}`, 'raw')
    .action(
      run(async (ctx, opts: { migrateTo?: string; format: string }, id: string) => {
        if (!MIGRATE_FORMATS.includes(opts.format)) throw new CliError(`format "${opts.format}" is not supported (supported: ${MIGRATE_FORMATS.join(', ')})`);
        const body = opts.migrateTo === undefined ? {} : { migrateTo: opts.migrateTo, format: opts.format };
        const result = await ctx.client.request<ClosedSession>('DELETE', `/api/instant-sessions/${encodeURIComponent(id)}`, body);
        ctx.print(result, () =>
          result.migrated
            ? `closed session ${id}; merged disk written to ${result.migrated.path} (${result.migrated.format}, ${bytes(result.migrated.bytes)})`
            : `closed session ${id}; its writes were discarded`,
        );
      }),
    );
}
