import type { Command } from 'commander';
import { table } from '../format';
import type { Runner } from '../program';
import { listHosts, resolveHost, type HostView } from '../resources';

interface AddOptions {
  url: string;
  username: string;
  password?: string;
  passwordStdin?: boolean;
  insecure?: boolean;
  thumbprint?: string;
}

export function registerHosts(program: Command, run: Runner): void {
  const host = program.command('host').description('vCenter / ESXi hosts');

  host
    .command('add <name>')
    .description('register a vCenter or ESXi host')
    .requiredOption('--url <url>', 'vCenter/ESXi URL https://host[:port] (give the VMKeep URL before "host" or in VMKEEP_URL)')
    .requiredOption('--username <user>', 'vSphere user')
    .option('--password <password>', 'vSphere password (prefer --password-stdin)')
    .option('--password-stdin', 'read the vSphere password from standard input')
    .option('--insecure', 'accept any TLS certificate')
    .option('--thumbprint <sha256>', 'pin the TLS certificate fingerprint')
    .action(
      run(async (ctx, opts: AddOptions, name: string) => {
        const password = await ctx.password(opts, 'vSphere password');
        const created = await ctx.client.post<HostView>('/api/hosts', {
          name,
          url: opts.url,
          username: opts.username,
          password,
          insecure: opts.insecure === true,
          ...(opts.thumbprint ? { thumbprint: opts.thumbprint } : {}),
        });
        ctx.print(created, () => `host ${created.name} added (id ${created.id})`);
      }),
    );

  host
    .command('list')
    .description('list registered hosts')
    .action(
      run(async (ctx) => {
        const hosts = await listHosts(ctx);
        ctx.print(hosts, () =>
          table(
            ['ID', 'NAME', 'URL', 'TYPE', 'LAST SYNC', 'LAST ERROR'],
            hosts.map((h) => [h.id, h.name, h.url, h.apiType, h.lastSyncAt, h.lastError]),
          ),
        );
      }),
    );

  host
    .command('sync <host>')
    .description('read the inventory (VMs and disks) of a host, by name or id')
    .action(
      run(async (ctx, _opts: object, ref: string) => {
        const found = await resolveHost(ctx, ref);
        const result = await ctx.client.post<Record<string, unknown>>(`/api/hosts/${found.id}/sync`);
        ctx.print(result ?? {}, () => {
          const summary = Object.entries(result ?? {})
            .filter(([, v]) => typeof v === 'number' || typeof v === 'string')
            .map(([k, v]) => `${k}=${String(v)}`)
            .join(' ');
          return `host ${found.name} synced${summary ? `: ${summary}` : ''}`;
        });
      }),
    );
}
