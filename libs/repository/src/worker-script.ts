/**
 * How to start a worker thread whose entry module sits next to the module starting it. Compiled (dist/, built by
 * scripts/build.js) the entry is `<dir>/<name>.js` and the @vmkeep/* aliases resolve through dist/node_modules.
 * Under ts-jest or ts-node the sources are TypeScript: the worker compiles its entry on the fly (ts-node, transpile
 * only) and resolves the aliases from the repository's tsconfig.json (tsconfig-paths).
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { WorkerOptions } from 'node:worker_threads';

export interface WorkerScript {
  /** The entry module to give `new Worker()`. */
  file: string;
  /** Options to merge into the Worker's options (execArgv and env under TypeScript, nothing when compiled). */
  options: Pick<WorkerOptions, 'execArgv' | 'env'>;
}

/** The nearest tsconfig.json above `dir` (the project whose `paths` define the @vmkeep/* aliases). */
function projectFile(dir: string): string | undefined {
  for (let at = dir; ; at = path.dirname(at)) {
    const file = path.join(at, 'tsconfig.json');
    if (existsSync(file)) return file;
    if (path.dirname(at) === at) return undefined;
  }
}

/**
 * The worker entry `name` beside `callerFile` (pass `__filename`): `name.js` next to compiled code, `name.ts` with
 * ts-node and tsconfig-paths preloaded next to TypeScript sources.
 */
export function workerScript(callerFile: string, name: string): WorkerScript {
  const ext = path.extname(callerFile);
  const dir = path.dirname(callerFile);
  const file = path.join(dir, `${name}${ext}`);
  if (ext !== '.ts') return { file, options: {} };
  const project = projectFile(dir);
  return {
    file,
    options: {
      execArgv: ['--require', 'ts-node/register/transpile-only', '--require', 'tsconfig-paths/register'],
      ...(project ? { env: { ...process.env, TS_NODE_PROJECT: project } } : {}),
    },
  };
}
