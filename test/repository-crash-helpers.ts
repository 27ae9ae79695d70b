/** Helpers of the repository crash suites (test/repository-crash*.test.ts): kill the CLI at a chosen moment. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI_BIN } from './peers/appliance';

/** Stored chunk files of a repository folder (temp files of writes in progress left out). */
export function chunkFiles(repo: string): string[] {
  const dir = path.join(repo, 'chunks');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .flatMap((fan) => fs.readdirSync(path.join(dir, fan)).filter((n) => !n.includes('.tmp-')).map((n) => path.join(dir, fan, n)));
}

/**
 * Starts the compiled CLI, waits until `ready()` holds (polled every millisecond; a throw counts as "not yet",
 * e.g. a folder vanished while it looked), then kills it with SIGKILL. Fails if the CLI finished first.
 */
export async function killWhen(args: string[], env: Record<string, string>, home: string, ready: () => boolean): Promise<void> {
  const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd: home, env: { PATH: process.env.PATH, HOME: home, ...env } });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let finished = false;
  void exited.then(() => (finished = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    let hit: boolean;
    try {
      hit = ready();
    } catch {
      hit = false;
    }
    if (hit) break;
    if (finished) throw new Error(`vmkeep ${args.join(' ')} finished before it could be killed: ${output}`);
    if (Date.now() > deadline) throw new Error(`vmkeep ${args.join(' ')}: condition not reached: ${output}`);
    await new Promise((r) => setTimeout(r, 1));
  }
  child.kill('SIGKILL');
  await exited;
  if (child.signalCode !== 'SIGKILL') throw new Error(`vmkeep ${args.join(' ')} was not killed (exit ${String(child.exitCode)}): ${output}`);
}
