import type { Command } from 'commander';
import { loadRepoCliConfig, loadS3Config } from '@vmkeep/config';
import { CliError, type CliContext } from '../context';
import { bytes, table } from '../format';
import type { Runner } from '../program';

/** A repository as GET /api/repositories shows it (never a secret). */
export interface RepositoryView {
  id: string;
  name: string;
  location: string;
  kind: 'folder' | 's3';
  encrypted: boolean;
  isDefault: boolean;
  s3: { endpoint?: string; region: string; forcePathStyle: boolean; accessKeyId?: string } | null;
  pointCount: number;
  storedBytes: number;
  createdAt: string;
}

interface AddOptions {
  location: string;
  passphraseStdin?: boolean;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
}

export function registerRepositories(program: Command, run: Runner): void {
  const repos = program
    .command('repositories')
    .alias('repository')
    .description('repositories of the appliance: folders or S3 prefixes, encrypted or not (admin to change)');

  repos
    .command('list')
    .description('list repositories with their restore point count and stored size')
    .action(
      run(async (ctx) => {
        const list = await ctx.client.get<RepositoryView[]>('/api/repositories');
        ctx.print(list, () =>
          table(
            ['ID', 'NAME', 'LOCATION', 'ENCRYPTED', 'DEFAULT', 'POINTS', 'STORED'],
            list.map((r) => [r.id, r.name, r.location, r.encrypted ? 'yes' : 'no', r.isDefault ? 'yes' : '', r.pointCount, bytes(r.storedBytes)]),
          ),
        );
      }),
    );

  repos
    .command('show <repository>')
    .description('one repository, by name or id')
    .action(
      run(async (ctx, _opts: object, ref: string) => {
        const found = await resolveRepository(ctx, ref);
        ctx.print(found, () => describe(found));
      }),
    );

  const withLocation = (cmd: Command) =>
    cmd
      .requiredOption('--location <where>', 'absolute folder path on the appliance, or s3://BUCKET/PREFIX')
      .option('--passphrase-stdin', 'read the passphrase from standard input (else VMKEEP_PASSPHRASE)')
      .option('--endpoint <url>', 's3://: URL of the S3-compatible server (default: the appliance setting)')
      .option('--region <region>', 's3://: region')
      .option('--path-style', 's3://: path-style URLs (endpoint/bucket/key)');

  withLocation(repos.command('create <name>'))
    .description('initialise a new repository; a passphrase makes it encrypted (keep it safe: without it the data is lost)')
    .action(
      run(async (ctx, opts: AddOptions, name: string) => {
        const created = await ctx.client.post<RepositoryView>('/api/repositories', await requestBody(ctx, name, opts));
        ctx.print(created, () => `repository ${created.name} created (id ${created.id}, ${created.encrypted ? 'encrypted' : 'not encrypted'})`);
      }),
    );

  withLocation(repos.command('attach <name>'))
    .description('register an existing repository (e.g. on a new appliance) and import its restore points')
    .action(
      run(async (ctx, opts: AddOptions, name: string) => {
        const result = await ctx.client.post<{ repository: RepositoryView; imported: number; skipped: number; vmsCreated: number }>(
          '/api/repositories/attach',
          await requestBody(ctx, name, opts),
        );
        ctx.print(result, () =>
          `repository ${result.repository.name} attached (id ${result.repository.id}): ${result.imported} restore point(s) imported` +
          (result.vmsCreated ? `, ${result.vmsCreated} detached VM(s) added` : ''),
        );
      }),
    );

  repos
    .command('delete <repository>')
    .description('forget a repository (its data is kept); refused while restore points or policies use it')
    .action(
      run(async (ctx, _opts: object, ref: string) => {
        const found = await resolveRepository(ctx, ref);
        await ctx.client.request('DELETE', `/api/repositories/${found.id}`);
        ctx.print({ id: found.id, deleted: true }, () => `repository ${found.name} removed from the appliance (data kept at ${found.location})`);
      }),
    );
}

/** The JSON body of create/attach: passphrase from stdin or VMKEEP_PASSPHRASE, S3 keys from the AWS_* variables. */
async function requestBody(ctx: CliContext, name: string, opts: AddOptions): Promise<Record<string, unknown>> {
  const passphrase = opts.passphraseStdin ? await ctx.readStdin() : loadRepoCliConfig({}).passphrase;
  if (opts.passphraseStdin && !passphrase) throw new CliError('the passphrase read from standard input is empty');
  const body: Record<string, unknown> = { name, location: opts.location, ...(passphrase ? { passphrase } : {}) };
  if (/^s3:\/\//i.test(opts.location.trim())) {
    const { credentials } = loadS3Config();
    body.s3 = {
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(opts.region ? { region: opts.region } : {}),
      ...(opts.pathStyle ? { forcePathStyle: true } : {}),
      ...(credentials ? credentials : {}),
    };
  } else if (opts.endpoint || opts.region || opts.pathStyle) {
    throw new CliError('--endpoint, --region and --path-style are for s3:// locations only');
  }
  return body;
}

/** A repository by name or id (GET /api/repositories). */
export async function resolveRepository(ctx: CliContext, ref: string): Promise<RepositoryView> {
  const list = await ctx.client.get<RepositoryView[]>('/api/repositories');
  const found = list.find((r) => r.id === ref) ?? list.find((r) => r.name === ref);
  if (!found) throw new CliError(`no repository named or with id "${ref}" (see: vmkeep repositories list)`);
  return found;
}

function describe(r: RepositoryView): string {
  const lines = [
    `id:          ${r.id}`,
    `name:        ${r.name}${r.isDefault ? ' (default)' : ''}`,
    `location:    ${r.location}`,
    `encrypted:   ${r.encrypted ? 'yes' : 'no'}`,
    `points:      ${r.pointCount}`,
    `stored:      ${bytes(r.storedBytes)}`,
    `created:     ${r.createdAt}`,
  ];
  if (r.s3) lines.push(`s3:          ${r.s3.endpoint ?? 'AWS'} region ${r.s3.region}${r.s3.forcePathStyle ? ', path style' : ''}${r.s3.accessKeyId ? `, key ${r.s3.accessKeyId}` : ''}`);
  return lines.join('\n');
}
