#!/usr/bin/env node
// Compiles the whole monorepo with tsc into dist/ and makes the @vmkeep/* aliases resolvable at run time
// by writing tiny dist/node_modules/@vmkeep/<lib>/package.json files that point at the compiled lib.
// tsconfig.build.json leaves out test-only code: unit specs and `testing/` folders (helpers the specs import from
// the sources); test/build-output.test.ts checks that dist/ holds none.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
// Built beside dist/ and swapped in at the end, so processes running from dist/ never see it half written and a
// failed compile leaves the previous build in place.
const staging = path.join(root, '.tmp', `dist-build-${process.pid}`);
const startedAt = Date.now();
fs.rmSync(staging, { recursive: true, force: true });
try {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', staging], {
    cwd: root,
    stdio: 'inherit',
  });
} catch (err) {
  fs.rmSync(staging, { recursive: true, force: true });
  throw err;
}
for (const lib of fs.readdirSync(path.join(root, 'libs'))) {
  const dir = path.join(staging, 'node_modules', '@vmkeep', lib);
  fs.mkdirSync(dir, { recursive: true });
  const main = path.relative(dir, path.join(staging, 'libs', lib, 'src', 'index.js'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `@vmkeep/${lib}`, main }) + '\n');
}
// Non-TypeScript assets the libraries read at run time (e.g. the vSphere WSDL).
for (const lib of fs.readdirSync(path.join(root, 'libs'))) {
  const assets = path.join(root, 'libs', lib, 'assets');
  if (fs.existsSync(assets)) fs.cpSync(assets, path.join(staging, 'libs', lib, 'assets'), { recursive: true });
}
// When this build started: test/peers/appliance.ts rebuilds only if a source file is newer.
fs.writeFileSync(path.join(staging, '.build-stamp'), String(startedAt));
const live = path.join(root, 'dist');
const old = path.join(root, '.tmp', `dist-old-${process.pid}`);
if (fs.existsSync(live)) fs.renameSync(live, old);
fs.renameSync(staging, live);
fs.rmSync(old, { recursive: true, force: true });
