import type { Command } from 'commander';
import { CliError } from '../context';
import { table } from '../format';
import type { Runner } from '../program';

interface WebhookView {
  id: string;
  name: string;
  url: string;
  events: string[];
  enabled: boolean;
}

interface DeliveryView {
  id: string;
  event: string;
  state: string;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

const events = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);

/** `webhook add|list|update|remove|deliveries` (admin): signed HTTP notifications of finished jobs and policy runs. */
export function registerWebhooks(program: Command, run: Runner): void {
  const hooks = program.command('webhook').alias('webhooks').description('webhooks: signed HTTP POSTs when jobs and policy runs end (admin)');

  hooks
    .command('add')
    .description('add a webhook; the HMAC secret is read from stdin (never from an argument)')
    .argument('<name>', 'a name for it')
    .requiredOption('--url <url>', 'http:// or https:// URL to POST to')
    .requiredOption('--events <list>', 'comma-separated: backup.succeeded, backup.failed, restore.succeeded, restore.failed, policy.run.finished, restore.*, *')
    .option('--secret-stdin', 'read the signing secret (16-256 characters) from stdin')
    .option('--disabled', 'create it disabled')
    .action(
      run(async (ctx, opts: { url: string; events: string; secretStdin?: boolean; disabled?: boolean }, name: string) => {
        if (!opts.secretStdin) throw new CliError('give the signing secret on stdin with --secret-stdin');
        const secret = await ctx.readStdin();
        const hook = await ctx.client.post<WebhookView>('/api/webhooks', { name, url: opts.url, events: events(opts.events), secret, enabled: !opts.disabled });
        ctx.print(hook, () => `webhook ${hook.name} added (${hook.id}): ${hook.events.join(', ')}`);
      }),
    );

  hooks
    .command('list')
    .description('webhooks (secrets are never shown)')
    .action(
      run(async (ctx) => {
        const list = await ctx.client.get<WebhookView[]>('/api/webhooks');
        ctx.print(list, () => table(['ID', 'NAME', 'ENABLED', 'URL', 'EVENTS'], list.map((h) => [h.id, h.name, h.enabled ? 'yes' : 'no', h.url, h.events.join(',')])));
      }),
    );

  hooks
    .command('update')
    .description('change a webhook')
    .argument('<id>', 'webhook id')
    .option('--name <name>', 'new name')
    .option('--url <url>', 'new URL')
    .option('--events <list>', 'new comma-separated event list')
    .option('--secret-stdin', 'read a new signing secret from stdin')
    .option('--enable', 'enable it')
    .option('--disable', 'disable it')
    .action(
      run(async (ctx, opts: { name?: string; url?: string; events?: string; secretStdin?: boolean; enable?: boolean; disable?: boolean }, id: string) => {
        if (opts.enable && opts.disable) throw new CliError('give --enable or --disable, not both');
        const body = {
          ...(opts.name !== undefined ? { name: opts.name } : {}),
          ...(opts.url !== undefined ? { url: opts.url } : {}),
          ...(opts.events !== undefined ? { events: events(opts.events) } : {}),
          ...(opts.secretStdin ? { secret: await ctx.readStdin() } : {}),
          ...(opts.enable ? { enabled: true } : opts.disable ? { enabled: false } : {}),
        };
        const hook = await ctx.client.request<WebhookView>('PATCH', `/api/webhooks/${encodeURIComponent(id)}`, body);
        ctx.print(hook, () => `webhook ${hook.name} updated`);
      }),
    );

  hooks
    .command('remove')
    .description('delete a webhook and its delivery log')
    .argument('<id>', 'webhook id')
    .action(
      run(async (ctx, _opts: unknown, id: string) => {
        await ctx.client.request('DELETE', `/api/webhooks/${encodeURIComponent(id)}`);
        ctx.print({ id, deleted: true }, () => `webhook ${id} deleted`);
      }),
    );

  hooks
    .command('deliveries')
    .description('delivery log of a webhook, newest first')
    .argument('<id>', 'webhook id')
    .action(
      run(async (ctx, _opts: unknown, id: string) => {
        const page = await ctx.client.get<{ items: DeliveryView[] }>(`/api/webhooks/${encodeURIComponent(id)}/deliveries`);
        ctx.print(page.items, () =>
          table(
            ['ID', 'EVENT', 'STATE', 'ATTEMPTS', 'STATUS', 'CREATED', 'DELIVERED', 'ERROR'],
            page.items.map((d) => [d.id, d.event, d.state, d.attempts, d.lastStatus ?? '-', d.createdAt, d.deliveredAt ?? '', d.lastError ?? '']),
          ),
        );
      }),
    );
}
