// What scripts/build.js ships in dist/: the apps and libraries, never test-only code — no unit specs and nothing
// under a `testing/` folder (the CLI's fake API, the repository's test disks), which the specs still import from
// the sources. Checked on the compiler's file list for tsconfig.build.json (what the build compiles, imports
// included) and on the built dist/ itself.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ROOT, ensureBuilt } from './peers/appliance';

const run = promisify(execFile);
const TEST_ONLY = /(^|\/)testing\/|\.spec\.(ts|js)$|^test\//;

function filesUnder(dir: string, base = dir): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full, base) : [path.relative(base, full).split(path.sep).join('/')];
  });
}

it('compiles no spec and no testing/ module, while the specs still have theirs', async () => {
  const tsc = require.resolve('typescript/bin/tsc');
  const { stdout } = await run(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--listFilesOnly'], { cwd: ROOT, maxBuffer: 1 << 24 });
  const compiled = stdout
    .split('\n')
    .filter(Boolean)
    .map((f) => path.relative(ROOT, f).split(path.sep).join('/'))
    .filter((f) => !f.startsWith('node_modules/'));
  expect(compiled).toContain('apps/cli/src/main.ts');
  expect(compiled).toContain('apps/api/src/main.ts');
  expect(compiled.filter((f) => TEST_ONLY.test(f))).toEqual([]);
  expect(fs.existsSync(path.join(ROOT, 'apps', 'cli', 'src', 'testing', 'fake-api.ts'))).toBe(true);
});

// VMKEEP_TEST_DIST pins a copy that is never rebuilt: only a dist/ built from these sources is checked.
const itOnBuiltDist = process.env.VMKEEP_TEST_DIST ? it.skip : it;

itOnBuiltDist('leaves dist/ without specs and testing/ modules', async () => {
  await ensureBuilt();
  const dist = path.join(ROOT, 'dist');
  const built = filesUnder(dist).filter((f) => !f.startsWith('node_modules/'));
  expect(built).toContain('apps/cli/src/main.js');
  expect(built.filter((f) => TEST_ONLY.test(f))).toEqual([]);
}, 300_000);
