import { Command, CommanderError, Option } from 'commander';
import { ApiError, UnreachableError } from './api-client';
import { registerAuth } from './commands/auth';
import { registerBackup } from './commands/backup';
import { registerDisk } from './commands/disk';
import { registerFiles } from './commands/files';
import { registerFind } from './commands/find';
import { registerHosts } from './commands/hosts';
import { registerInstant } from './commands/instant';
import { registerJobs } from './commands/jobs';
import { registerPoints } from './commands/points';
import { registerPolicies } from './commands/policies';
import { registerRepo } from './commands/repo';
import { registerRepositories } from './commands/repositories';
import { registerRestore } from './commands/restore';
import { registerRestoreVm } from './commands/restore-vm';
import { registerVms } from './commands/vms';
import { registerWebhooks } from './commands/webhooks';
import { CliContext, CliError, type CliIo, type GlobalOptions } from './context';
import { CredentialStore } from './credentials';

/** Body of a command: gets the context, its options and its positional arguments; may return an exit code. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type CommandBody<O> = (ctx: CliContext, opts: O, ...args: any[]) => Promise<number | void>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Runner = <O>(body: CommandBody<O>) => (...args: any[]) => Promise<void>;

/**
 * Runs `vmkeep` with the given arguments (without node and script) and resolves with the exit code:
 * 0 success, 1 failure (server error, failed job, bad input), 2 usage error.
 */
export async function runCli(argv: string[], io: CliIo, credentials = new CredentialStore()): Promise<number> {
  let exitCode = 0;
  const run: Runner = (body) => async (...args) => {
    const command = args[args.length - 1] as Command;
    const positional = args.slice(0, -2);
    const ctx = new CliContext(commonOptions(command), io, credentials);
    exitCode = (await body(ctx, command.opts() as Parameters<typeof body>[1], ...positional)) ?? 0;
  };

  const program = new Command('vmkeep')
    .description('VMKeep command line: talks to the VMKeep REST API')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError();
  for (const register of [registerAuth, registerHosts, registerVms, registerBackup, registerPoints, registerRestore, registerRestoreVm, registerInstant, registerDisk, registerRepo, registerPolicies, registerFiles, registerFind, registerJobs, registerWebhooks, registerRepositories]) {
    register(program, run);
  }
  addCommonOptions(program);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version'
        ? 0
        : 2;
    }
    io.stderr.write(`error: ${describe(err)}\n`);
    return 1;
  }
}

const COMMON_OPTIONS: [flags: string, description: string][] = [
  ['--url <url>', 'VMKeep API URL (or VMKEEP_URL; default http://127.0.0.1:8080)'],
  ['--token <token>', 'API token (or VMKEEP_TOKEN; default: the one saved by login)'],
  ['--json', 'machine-readable output, no progress bars'],
];

/**
 * Every command accepts --url, --token and --json, before or after its name. A command with an option of the
 * same name (`host add --url` is the vCenter URL) keeps its own; the VMKeep URL then goes before the command name
 * (`vmkeep --url http://appliance:8080 host add ...`) or into VMKEEP_URL.
 */
function addCommonOptions(command: Command): void {
  command.exitOverride();
  for (const [flags, description] of COMMON_OPTIONS) {
    const option = new Option(flags, description);
    if (command.options.some((o) => o.long === option.long)) continue;
    command.addOption(option);
    COMMON.add(option);
  }
  for (const sub of command.commands) addCommonOptions(sub);
}

/** Options added by addCommonOptions (not a command's own option of the same name). */
const COMMON = new WeakSet<Option>();

/** --url/--token/--json as given closest to the command, ignoring a command's own option of the same name. */
function commonOptions(leaf: Command): GlobalOptions {
  const found: Record<string, unknown> = {};
  for (let cmd: Command | null = leaf; cmd; cmd = cmd.parent) {
    for (const option of cmd.options) {
      const key = option.attributeName();
      if (COMMON.has(option) && found[key] === undefined) found[key] = cmd.getOptionValue(key);
    }
  }
  return found as GlobalOptions;
}

function describe(err: unknown): string {
  if (err instanceof ApiError) return `${err.message} (HTTP ${err.status})`;
  if (err instanceof CliError || err instanceof UnreachableError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
