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
# Fewer malloc arenas keep the chunk pipeline's worker threads within the memory budget (docs/benchmarks.md).
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
mkdir -p "$VMKEEP_DATA_DIR"
url="http://127.0.0.1:${VMKEEP_API_PORT}"

# The default repository is encrypted: a fresh data folder gets a generated passphrase (0600 file), which is also the
# only way to attach the repository to a new appliance if this one is lost. An older, unencrypted folder stays as is.
repo_dir=${VMKEEP_REPOSITORY:-$VMKEEP_DATA_DIR/repository}
passphrase_file="$VMKEEP_DATA_DIR/repository-passphrase"
if [ -z "${VMKEEP_REPOSITORY_PASSPHRASE:-}" ]; then
  if [ ! -e "$passphrase_file" ] && [ ! -e "$repo_dir/config.json" ]; then
    (umask 077; node -e 'process.stdout.write(require("node:crypto").randomBytes(24).toString("base64url"))' > "$passphrase_file")
  fi
  if [ -e "$passphrase_file" ]; then VMKEEP_REPOSITORY_PASSPHRASE=$(cat "$passphrase_file"); export VMKEEP_REPOSITORY_PASSPHRASE; fi
fi
if [ -n "${VMKEEP_REPOSITORY_PASSPHRASE:-}" ]; then
  repo_note="$repo_dir (encrypted; passphrase in $passphrase_file unless you set VMKEEP_REPOSITORY_PASSPHRASE: keep a copy elsewhere)"
else
  repo_note="$repo_dir (not encrypted)"
fi

pids=()
# Stop: ask every process to stop, give them 20 s (a worker finishes or hands back its running jobs), then kill.
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 40); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The Redis the appliance started for itself (none when REDIS_URL names one).
  if [ -z "${REDIS_URL:-}" ] && [ -s "$VMKEEP_DATA_DIR/redis/redis.pid" ]; then kill "$(cat "$VMKEEP_DATA_DIR/redis/redis.pid")" 2>/dev/null || true; fi
}
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
  # ts-node itself (not through npx, which would not pass a stop signal on): its pid is the process to stop.
  VMKEEP_URL=$url VMKEEP_ADMIN_USER=$admin_user VMKEEP_ADMIN_PASSWORD=$admin_password \
    node_modules/.bin/ts-node --transpile-only -r tsconfig-paths/register scripts/demo-vcenter.ts > "$VMKEEP_DATA_DIR/demo.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 240); do grep -q '^READY' "$VMKEEP_DATA_DIR/demo.log" 2>/dev/null && break
    kill -0 "${pids[2]}" 2>/dev/null || { echo "the demo vCenter failed:"; tail -n 30 "$VMKEEP_DATA_DIR/demo.log"; exit 1; }
    sleep 0.5; done
fi

cat <<TXT

VMKeep is running.
  API:          $url/api        (OpenAPI docs: $url/api/docs)
  Admin login:  $admin_user / $admin_password
  Data folder:  $VMKEEP_DATA_DIR  (logs: api.log, worker.log, demo.log)
  Repository:   $repo_note

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
