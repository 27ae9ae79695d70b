#!/usr/bin/env bash
# The README start command: runs the whole appliance on this machine with embedded defaults (SQLite in ./data,
# a local repository folder ./data/repository, a Redis it starts itself on a unix socket) plus a demo vCenter
# (vcsim) holding seeded VMs that it registers for you. Ctrl-C stops everything.
# Set VMKEEP_DEMO=0 to start the appliance without the demo vCenter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh appliance
node scripts/build.js

export VMKEEP_DATA_DIR=${VMKEEP_DATA_DIR:-$PWD/data}
export VMKEEP_API_PORT=${VMKEEP_API_PORT:-8080}
mkdir -p "$VMKEEP_DATA_DIR"
url="http://127.0.0.1:${VMKEEP_API_PORT}"

pids=()
cleanup() { trap - INT TERM EXIT; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup INT TERM EXIT

node dist/apps/api/src/main.js > "$VMKEEP_DATA_DIR/api.log" 2>&1 & pids+=($!)
node dist/apps/worker/src/main.js > "$VMKEEP_DATA_DIR/worker.log" 2>&1 & pids+=($!)

for _ in $(seq 1 120); do
  curl -fsS "$url/api/health" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "the API failed to start:"; tail -n 30 "$VMKEEP_DATA_DIR/api.log"; exit 1; }
  sleep 0.5
done

if [ -n "${VMKEEP_ADMIN_PASSWORD:-}" ]; then admin_password=$VMKEEP_ADMIN_PASSWORD; else admin_password=$(cat "$VMKEEP_DATA_DIR/admin-password"); fi
admin_user=${VMKEEP_ADMIN_USER:-admin}

if [ "${VMKEEP_DEMO:-1}" != 0 ]; then
  VMKEEP_URL=$url VMKEEP_ADMIN_USER=$admin_user VMKEEP_ADMIN_PASSWORD=$admin_password \
    npx ts-node --transpile-only -r tsconfig-paths/register scripts/demo-vcenter.ts > "$VMKEEP_DATA_DIR/demo.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 240); do grep -q '^READY' "$VMKEEP_DATA_DIR/demo.log" 2>/dev/null && break
    kill -0 "${pids[2]}" 2>/dev/null || { echo "the demo vCenter failed:"; tail -n 30 "$VMKEEP_DATA_DIR/demo.log"; exit 1; }
    sleep 0.5; done
fi

cat <<TXT

VMKeep is running.
  API:          $url/api        (OpenAPI docs: $url/api/docs)
  Admin login:  $admin_user / $admin_password
  Data folder:  $VMKEEP_DATA_DIR  (logs: api.log, worker.log, demo.log)

Try the CLI in another terminal:
  export VMKEEP_URL=$url
  ./bin/vmkeep.js login --username $admin_user --password-stdin <<< '$admin_password'
  ./bin/vmkeep.js host list
  ./bin/vmkeep.js vm list
  ./bin/vmkeep.js backup run vmkeep-demo-1 --wait
  ./bin/vmkeep.js point list
  ./bin/vmkeep.js restore disk <POINT> --disk disk-2000 --format raw --output disk-2000.raw

Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
