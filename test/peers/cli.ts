// Test peer: the `vmkeep` CLI entry point (runCli) run inside the jest process — for suites that need no compiled
// dist/ (offline `vmkeep repo ...`, or an API served in process). For the compiled bin as a user runs it, see
// `vmkeep` in ./appliance.
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { CredentialStore } from '../../apps/cli/src/credentials';
import { runCli } from '../../apps/cli/src/program';
import type { CliResult } from './appliance';

export interface InProcessCliOptions {
  /** Folder of the saved-token file (credentials.json). */
  home: string;
  /** Added to process.env while the command runs (the CLI reads it through libs/config), then taken back out. */
  env?: Record<string, string>;
  /** What the command reads on stdin (e.g. for --password-stdin); empty by default. */
  input?: string;
}

/** Runs one `vmkeep` command in process and returns its exit code and output. */
export async function runCliInProcess(args: string[], options: InProcessCliOptions): Promise<CliResult> {
  const saved = options.env ? { ...process.env } : undefined;
  if (options.env) Object.assign(process.env, options.env);
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  stdin.end(options.input ?? '');
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (b: Buffer) => out.push(b));
  stderr.on('data', (b: Buffer) => err.push(b));
  try {
    const code = await runCli(args, { stdout, stderr, stdin }, new CredentialStore(path.join(options.home, 'credentials.json')));
    return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
  } finally {
    if (saved) {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  }
}
