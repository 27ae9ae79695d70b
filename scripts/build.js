#!/usr/bin/env node
// Compiles the whole monorepo with tsc into dist/ and makes the @vmkeep/* aliases resolvable at run time
// by writing tiny dist/node_modules/@vmkeep/<lib>/package.json files that point at the compiled lib.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
const startedAt = Date.now();
fs.rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: 'inherit',
});
for (const lib of fs.readdirSync(path.join(root, 'libs'))) {
  const dir = path.join(dist, 'node_modules', '@vmkeep', lib);
  fs.mkdirSync(dir, { recursive: true });
  const main = path.relative(dir, path.join(dist, 'libs', lib, 'src', 'index.js'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `@vmkeep/${lib}`, main }) + '\n');
}
// Non-TypeScript assets the libraries read at run time (e.g. the vSphere WSDL).
for (const lib of fs.readdirSync(path.join(root, 'libs'))) {
  const assets = path.join(root, 'libs', lib, 'assets');
  if (fs.existsSync(assets)) fs.cpSync(assets, path.join(dist, 'libs', lib, 'assets'), { recursive: true });
}
// When this build started: test/peers/appliance.ts rebuilds only if a source file is newer.
fs.writeFileSync(path.join(dist, '.build-stamp'), String(startedAt));
