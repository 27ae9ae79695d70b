#!/usr/bin/env bash
# The README test command: installs what is missing, builds, type-checks, lints and runs every test suite.
# The jest global setup starts Redis and MariaDB as plain processes; suites start vcsim themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
node scripts/build.js
npx tsc -p tsconfig.json --noEmit
npx eslint .
mkdir -p .tmp
set +e
npx jest --ci --json --outputFile=.tmp/jest-results.json "$@"
rc=$?
set -e
node -e '
  const r = require("./.tmp/jest-results.json");
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests + r.numRuntimeErrorTestSuites} failed`);
' || true
exit $rc
