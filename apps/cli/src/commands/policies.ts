import type { Command } from 'commander';
import { CliError, type CliContext } from '../context';
import { table } from '../format';
import type { Runner } from '../program';
import { resolveVm } from '../resources';
import { resolveRepository } from './repositories';

/** A policy as GET /api/policies returns it (the fields the CLI shows). */
export interface PolicyView {
  id: string;
  name: string;
  enabled: boolean;
  cron: string;
  timeZone: string;
  schedule: Record<string, unknown>;
  window: { start: string; end: string } | null;
  selection: Record<string, unknown[]>;
  retention: Record<string, number>;
  quiesce: string;
  cbt: boolean;
  priority: number;
  concurrency: Record<string, number>;
  retries: number;
  retryBackoffSeconds: number;
  /** Null: the default repository. */
  repositoryId?: string | null;
  nextRunAt: string | null;
  vms: { id: string; name: string; reason: string }[];
  overlaps: { vmId: string; vmName: string; policies: { id: string; name: string }[] }[];
  warnings: string[];
}

interface PolicyOptions {
  cron?: string;
  daily?: string;
  weekly?: string;
  tz?: string;
  window?: string;
  vm: string[];
  pattern: string[];
  cluster: string[];
  host: string[];
  datacenter: string[];
  folder: string[];
  pool: string[];
  tag: string[];
  attribute: string[];
  excludeVm: string[];
  excludePattern: string[];
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  quiesce?: string;
  cbt?: boolean;
  priority?: string;
  maxJobs?: string;
  maxPerHost?: string;
  maxPerDatastore?: string;
  retries?: string;
  retryBackoff?: string;
  enabled?: boolean;
  name?: string;
  repository?: string;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function addPolicyOptions(cmd: Command): Command {
  return cmd
    .option('--cron <pattern>', 'cron pattern: 5 fields, or 6 with seconds first')
    .option('--daily <HH:MM>', 'every day at this time')
    .option('--weekly <days@HH:MM>', 'e.g. mon,thu@22:30')
    .option('--tz <zone>', 'IANA time zone of schedule, window and retention (default UTC)')
    .option('--window <HH:MM-HH:MM>', 'backup window, e.g. 22:00-06:00 ("none" removes it)')
    .option('--vm <vm>', 'a VM by name or id (repeatable)', collect, [])
    .option('--pattern <glob>', 'VM name pattern, * and ? (repeatable)', collect, [])
    .option('--cluster <name>', 'cluster (repeatable)', collect, [])
    .option('--host <name>', 'ESXi host or registered host (repeatable)', collect, [])
    .option('--datacenter <name>', 'datacenter (repeatable)', collect, [])
    .option('--folder <path>', 'VM folder inventory path, subfolders included, e.g. /DC0/vm/prod (repeatable)', collect, [])
    .option('--pool <name|path>', 'resource pool name, or inventory path with child pools (repeatable)', collect, [])
    .option('--tag <category:tag>', 'vSphere tag, e.g. env:prod (repeatable)', collect, [])
    .option('--attribute <name=glob>', 'custom attribute whose value matches the glob, e.g. owner=web-* (repeatable)', collect, [])
    .option('--exclude-vm <vm>', 'never this VM, by name or id (repeatable)', collect, [])
    .option('--exclude-pattern <glob>', 'never VMs matching (repeatable)', collect, [])
    .option('--keep-last <n>', 'keep the newest n restore points')
    .option('--keep-hourly <n>', 'keep one per hour for n hours')
    .option('--keep-daily <n>', 'keep one per day for n days')
    .option('--keep-weekly <n>', 'keep one per week for n weeks')
    .option('--keep-monthly <n>', 'keep one per month for n months')
    .option('--keep-yearly <n>', 'keep one per year for n years')
    .option('--quiesce <mode>', 'require | try | never')
    .option('--cbt', 'use changed block tracking')
    .option('--no-cbt', 'do not use changed block tracking')
    .option('--priority <n>', 'higher runs first when policies compete')
    .option('--max-jobs <n>', 'most backup jobs at once (all of the appliance)')
    .option('--max-per-host <n>', 'most backup jobs at once per ESXi host')
    .option('--max-per-datastore <n>', 'most backup jobs at once per datastore')
    .option('--retries <n>', 'extra attempts after a failed backup')
    .option('--retry-backoff <seconds>', 'wait before the first retry (doubles each time)')
    .option('--repository <repository>', 'repository the backups go to, by name or id (naming the default one follows the default)')
    .option('--enable', 'enable the policy')
    .option('--disable', 'disable the policy');
}

export function registerPolicies(program: Command, run: Runner): void {
  const policy = program.command('policy').description('backup policies: what to back up, when, and how long to keep it');

  addPolicyOptions(policy.command('create <name>').description('create a policy (give one of --cron, --daily, --weekly)')).action(
    run(async (ctx, opts: PolicyOptions, name: string) => {
      const body: Record<string, unknown> = { name, ...(await policyBody(ctx, withEnabled(opts))) };
      if (!body.schedule) throw new CliError('give a schedule: --cron, --daily or --weekly');
      const created = await ctx.client.post<PolicyView>('/api/policies', body);
      ctx.print(created, () => `policy ${created.name} created (id ${created.id})\n${describePolicy(created)}`);
    }),
  );

  policy
    .command('list')
    .description('list policies')
    .action(
      run(async (ctx) => {
        const policies = await ctx.client.get<PolicyView[]>('/api/policies');
        ctx.print(policies, () =>
          table(
            ['ID', 'NAME', 'ENABLED', 'SCHEDULE', 'VMS', 'NEXT RUN', 'WARNINGS'],
            policies.map((p) => [p.id, p.name, p.enabled ? 'yes' : 'no', `${p.cron} (${p.timeZone})`, p.vms.length, p.nextRunAt, p.warnings.length]),
          ),
        );
      }),
    );

  policy
    .command('show <policy>')
    .description('a policy with its VMs, overlaps and recent runs')
    .action(
      run(async (ctx, _opts, ref: string) => {
        const found = await resolvePolicy(ctx, ref);
        const runs = await ctx.client.get<{ tickAt: string; state: string; vms: { vmName: string; outcome: string; message?: string }[] }[]>(`/api/policies/${found.id}/runs`);
        ctx.print({ ...found, runs }, () =>
          [
            describePolicy(found),
            'recent runs:',
            ...(runs.length ? runs.slice(0, 5).map((r) => `  ${r.tickAt} ${r.state}: ${r.vms.map((v) => `${v.vmName} ${v.outcome}${v.message ? ` (${v.message})` : ''}`).join(', ') || 'no VMs'}`) : ['  none']),
          ].join('\n'),
        );
      }),
    );

  addPolicyOptions(policy.command('update <policy>').description('change the given settings of a policy').option('--name <name>', 'rename')).action(
    run(async (ctx, opts: PolicyOptions, ref: string) => {
      const current = await resolvePolicy(ctx, ref);
      const body = { ...(opts.name ? { name: opts.name } : {}), ...(await policyBody(ctx, withEnabled(opts), current)) };
      if (Object.keys(body).length === 0) throw new CliError('nothing to change: give at least one option');
      const updated = await ctx.client.request<PolicyView>('PATCH', `/api/policies/${current.id}`, body);
      ctx.print(updated, () => `policy ${updated.name} updated\n${describePolicy(updated)}`);
    }),
  );

  policy
    .command('delete <policy>')
    .description('delete a policy (its restore points stay)')
    .action(
      run(async (ctx, _opts, ref: string) => {
        const found = await resolvePolicy(ctx, ref);
        await ctx.client.request('DELETE', `/api/policies/${found.id}`);
        ctx.print({ id: found.id, deleted: true }, () => `policy ${found.name} deleted`);
      }),
    );

  policy
    .command('run-now <policy>')
    .description('run a policy now, outside its schedule')
    .action(
      run(async (ctx, _opts, ref: string) => {
        const found = await resolvePolicy(ctx, ref);
        const queued = await ctx.client.post<{ policyId: string; queueJobId: string }>(`/api/policies/${found.id}/run`);
        ctx.print(queued, () => `run of policy ${found.name} queued (see: vmkeep policy show ${found.name})`);
      }),
    );
}

function withEnabled(opts: PolicyOptions & { enable?: boolean; disable?: boolean }): PolicyOptions {
  if (opts.enable && opts.disable) throw new CliError('give --enable or --disable, not both');
  return { ...opts, enabled: opts.enable ? true : opts.disable ? false : undefined };
}

async function resolvePolicy(ctx: CliContext, ref: string): Promise<PolicyView> {
  const policies = await ctx.client.get<PolicyView[]>('/api/policies');
  const found = policies.find((p) => p.id === ref) ?? policies.find((p) => p.name === ref);
  if (!found) throw new CliError(`no policy named or with id "${ref}" (see: vmkeep policy list)`);
  return found;
}

function int(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new CliError(`${flag} needs a whole number, got "${value}"`);
  return Number(value);
}

function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The request body for the given options; on update, lists and counts are merged into the current policy's. */
async function policyBody(ctx: CliContext, o: PolicyOptions, current?: PolicyView): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {};
  const schedule = defined({ cron: o.cron, daily: o.daily, weekly: o.weekly === undefined ? undefined : parseWeekly(o.weekly) });
  if (Object.keys(schedule).length > 0 || o.tz !== undefined) {
    const base = Object.keys(schedule).length > 0 ? schedule : { ...current?.schedule };
    body.schedule = { ...base, timeZone: o.tz ?? current?.timeZone ?? 'UTC' };
    if (Object.keys(schedule).length > 0) for (const k of ['cron', 'daily', 'weekly']) if (!(k in schedule)) delete (body.schedule as Record<string, unknown>)[k];
  }
  if (o.window !== undefined) body.window = o.window === 'none' ? null : parseWindow(o.window);
  const vmIds = async (refs: string[]) => Promise.all(refs.map(async (r) => (await resolveVm(ctx, r)).id));
  const selection = defined({
    vmIds: o.vm.length ? await vmIds(o.vm) : undefined,
    namePatterns: o.pattern.length ? o.pattern : undefined,
    clusters: o.cluster.length ? o.cluster : undefined,
    hosts: o.host.length ? o.host : undefined,
    datacenters: o.datacenter.length ? o.datacenter : undefined,
    folders: o.folder.length ? o.folder : undefined,
    resourcePools: o.pool.length ? o.pool : undefined,
    tags: o.tag.length ? o.tag.map((t) => splitPair(t, ':', '--tag', 'category:tag')).map(([category, name]) => ({ category, name })) : undefined,
    customAttributes: o.attribute.length ? o.attribute.map((a) => splitPair(a, '=', '--attribute', 'name=glob')).map(([name, value]) => ({ name, value })) : undefined,
    excludeVmIds: o.excludeVm.length ? await vmIds(o.excludeVm) : undefined,
    excludePatterns: o.excludePattern.length ? o.excludePattern : undefined,
  });
  if (Object.keys(selection).length > 0) body.selection = { ...current?.selection, ...selection };
  const retention = defined({
    keepLast: int(o.keepLast, '--keep-last'),
    keepHourly: int(o.keepHourly, '--keep-hourly'),
    keepDaily: int(o.keepDaily, '--keep-daily'),
    keepWeekly: int(o.keepWeekly, '--keep-weekly'),
    keepMonthly: int(o.keepMonthly, '--keep-monthly'),
    keepYearly: int(o.keepYearly, '--keep-yearly'),
  });
  if (Object.keys(retention).length > 0) body.retention = { ...current?.retention, ...retention };
  const concurrency = defined({
    global: int(o.maxJobs, '--max-jobs'),
    perHost: int(o.maxPerHost, '--max-per-host'),
    perDatastore: int(o.maxPerDatastore, '--max-per-datastore'),
  });
  if (Object.keys(concurrency).length > 0) body.concurrency = { ...current?.concurrency, ...concurrency };
  Object.assign(
    body,
    defined({
      quiesce: o.quiesce,
      cbt: o.cbt,
      priority: int(o.priority, '--priority'),
      retries: int(o.retries, '--retries'),
      retryBackoffSeconds: int(o.retryBackoff, '--retry-backoff'),
      enabled: o.enabled,
    }),
  );
  if (o.repository !== undefined) {
    // The default repository is sent as null: the policy then follows whichever repository is the default.
    const target = await resolveRepository(ctx, o.repository);
    body.repositoryId = target.isDefault ? null : target.id;
  }
  return body;
}

/** "a<sep>b" with both parts non-empty (split at the first separator). */
function splitPair(text: string, sep: string, option: string, form: string): [string, string] {
  const at = text.indexOf(sep);
  const [a, b] = at < 0 ? ['', ''] : [text.slice(0, at).trim(), text.slice(at + 1).trim()];
  if (!a || !b) throw new CliError(`${option} needs ${form} (got "${text}")`);
  return [a, b];
}

function parseWeekly(text: string): { days: string[]; at: string } {
  const m = /^([a-z,]+)@(\d{1,2}:\d{2})$/i.exec(text.trim());
  if (!m) throw new CliError(`--weekly needs days@HH:MM, e.g. mon,thu@22:30 (got "${text}")`);
  return { days: m[1].toLowerCase().split(',').filter(Boolean), at: m[2] };
}

function parseWindow(text: string): { start: string; end: string } {
  const m = /^(\d{1,2}:\d{2})-(\d{1,2}:\d{2})$/.exec(text.trim());
  if (!m) throw new CliError(`--window needs HH:MM-HH:MM, e.g. 22:00-06:00 (got "${text}")`);
  return { start: m[1], end: m[2] };
}

/** "patterns web-*; tags env:prod; attributes owner=web-*": the non-empty criteria of a selection. */
function describeSelection(selection: PolicyView['selection']): string {
  const show = (v: unknown) => {
    const o = v as Record<string, string>;
    if (typeof v !== 'object' || v === null) return String(v);
    return 'category' in o ? `${o.category}:${o.name}` : `${o.name}=${o.value}`;
  };
  return Object.entries(selection ?? {})
    .filter(([, list]) => Array.isArray(list) && list.length > 0)
    .map(([key, list]) => `${key} ${list.map(show).join(', ')}`)
    .join('; ');
}

function describePolicy(p: PolicyView): string {
  const lines = [
    `${p.name} (${p.enabled ? 'enabled' : 'disabled'}): ${p.cron} ${p.timeZone}${p.window ? `, window ${p.window.start}-${p.window.end}` : ''}`,
    `  next run: ${p.nextRunAt ?? '-'}; quiesce ${p.quiesce}; cbt ${p.cbt ? 'on' : 'off'}; priority ${p.priority}; retries ${p.retries} (backoff ${p.retryBackoffSeconds} s)`,
    `  retention: ${Object.entries(p.retention).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  limits: ${Object.entries(p.concurrency).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
    `  repository: ${p.repositoryId ?? 'default'}`,
    `  selection: ${describeSelection(p.selection) || 'nothing'}`,
    `  VMs (${p.vms.length}): ${p.vms.map((v) => `${v.name} [${v.reason}]`).join(', ') || 'none'}`,
    ...p.warnings.map((w) => `  warning: ${w}`),
  ];
  return lines.join('\n');
}
