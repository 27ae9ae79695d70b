#!/usr/bin/env bash
# NBD benchmark (issue 6): our export of a restore point (`vmkeep repo nbd`, straight from a local repository)
# against `nbdkit file` serving the same raw bytes, in one run:
#   1. sequential read of the whole disk with `nbdcopy URL null:` (MB/s), twice on our server (the second read
#      finds every chunk decoded in its scratch cache);
#   2. random 4 KiB reads with fio's nbd engine (IOPS; RUNTIME seconds, IODEPTH requests in flight) on the same
#      server, whose scratch cache the sequential read has filled;
#   3. the same random reads on a fresh server (cold cache: each chunk decoded on its first read), started with
#      `--hydrate` when HYDRATE=1 (the whole disk is decoded into the cache in the background meanwhile).
# Goals: ≥ 500 MB/s sequential and ≥ 50 % of nbdkit's random-read IOPS. The disk is random data only (no zero
# regions, so block status cannot skip any read). The repository and the raw file are read once first, so both
# servers see the same warm page cache.
#
# Usage: bash bench/nbd.sh [SIZE_MIB]           (default 2048)
# Environment:
#   BENCH_DIR     work folder (default: a new folder under ${TMPDIR:-/tmp}); removed afterwards unless KEEP=1
#   VMKEEP_DIST   compiled tree to run (default: <repo>/dist, built with `node scripts/build.js` when missing);
#                 it is copied into the work folder first, so a rebuild during the run cannot disturb it
#   RUNTIME       seconds of each fio run (default 20); IODEPTH (default 16)
#   HYDRATE       1 = start the cold-cache server with --hydrate (default 0)
set -euo pipefail

SIZE_MIB=${1:-2048}
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || { echo "SIZE_MIB must be a whole number, got '$SIZE_MIB'" >&2; exit 2; }
RUNTIME=${RUNTIME:-20}
IODEPTH=${IODEPTH:-16}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have nbdcopy || missing+=("nbdcopy (apt-get install libnbd-bin)")
have nbdkit || missing+=("nbdkit (apt-get install nbdkit)")
have fio || missing+=("fio (apt-get install fio)")
have node || missing+=("node (Node.js 20 or newer)")
if ((${#missing[@]})); then
  echo "missing tools: ${missing[*]}" >&2
  exit 2
fi
if ! fio --enghelp 2>/dev/null | grep -qw nbd; then
  echo "this fio has no nbd engine (Debian's fio has it: it is built with libnbd)" >&2
  exit 2
fi

WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/vmkeep-bench-nbd.XXXXXX")}
mkdir -p "$WORK"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ ${KEEP:-0} == 1 ]] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

DIST=${VMKEEP_DIST:-$ROOT/dist}
# A test suite may be rebuilding dist/ right now (test/peers/appliance.ts holds this lock meanwhile).
for _ in $(seq 600); do [[ -e $ROOT/.tmp/build.lock ]] || break; sleep 0.5; done
if [[ ! -f $DIST/apps/cli/src/main.js || ! -f $DIST/.build-stamp ]]; then
  echo "building $DIST (node scripts/build.js)…" >&2
  (cd "$ROOT" && node scripts/build.js)
fi
cp -a "$DIST" "$WORK/dist"
# The copy resolves its npm dependencies from the checkout.
export NODE_PATH="$ROOT/node_modules${NODE_PATH:+:$NODE_PATH}"
CLI=(node "$WORK/dist/apps/cli/src/main.js")
load() { cut -d' ' -f1-3 /proc/loadavg; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

echo "making a ${SIZE_MIB} MiB random disk and backing it up…" >&2
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$WORK/disk.raw"
export VMKEEP_REPO="$WORK/repo"
"${CLI[@]}" repo init >/dev/null
POINT=$("${CLI[@]}" repo backup-image "$WORK/disk.raw" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).point))')
cat "$WORK/disk.raw" > /dev/null
find "$WORK/repo" -type f -exec cat {} + > /dev/null

# Our export, straight from the repository: serve NAME [ARGS…] starts one and sets URL_OURS and OURS_PID.
serve() {
  local name=$1
  shift
  "${CLI[@]}" repo nbd "$POINT" --listen "127.0.0.1:$(free_port)" --json "$@" > "$WORK/$name.json" 2> "$WORK/$name.log" &
  OURS_PID=$!
  pids+=("$OURS_PID")
  for _ in $(seq 100); do [[ -s $WORK/$name.json ]] && grep -q '}' "$WORK/$name.json" && break; sleep 0.1; done
  URL_OURS=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).url)' "$WORK/$name.json")
}
serve ours

# nbdkit serving the raw file.
PORT_KIT=$(free_port)
nbdkit --foreground --exit-with-parent -i 127.0.0.1 -p "$PORT_KIT" file "$WORK/disk.raw" &
pids+=($!)
URL_KIT="nbd://127.0.0.1:$PORT_KIT"
for _ in $(seq 100); do nbdinfo --size "$URL_KIT" >/dev/null 2>&1 && break; sleep 0.1; done

cpu_seconds() { # PID → user+system CPU seconds so far (all threads): what the load cannot inflate
  awk -v tck="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / tck }' "/proc/$1/stat"
}
seq_read() { # URL → MB/s
  local start end
  start=$(date +%s.%N)
  nbdcopy --no-extents "$1" null:
  end=$(date +%s.%N)
  node -e "console.log((${SIZE_MIB} * 1048576 / 1e6 / ($end - $start)).toFixed(0))"
}
rand_read() { # URL → IOPS
  fio --name=randread --ioengine=nbd --uri="$1" --rw=randread --bs=4k --iodepth="$IODEPTH" --time_based \
    --runtime="$RUNTIME" --size="${SIZE_MIB}M" --output-format=json --output="$WORK/fio.json" >/dev/null
  node -e 'console.log(Math.round(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).jobs[0].read.iops))' "$WORK/fio.json"
}

L0=$(load)
SEQ_KIT=$(seq_read "$URL_KIT"); L1=$(load)
C0=$(cpu_seconds "$OURS_PID")
SEQ_OURS=$(seq_read "$URL_OURS"); L2=$(load)
C1=$(cpu_seconds "$OURS_PID")
SEQ_AGAIN=$(seq_read "$URL_OURS"); L2B=$(load)
C2=$(cpu_seconds "$OURS_PID")
RND_KIT=$(rand_read "$URL_KIT"); L3=$(load)
RND_OURS=$(rand_read "$URL_OURS"); L4=$(load)
kill "$OURS_PID"
COLD_ARGS=()
[[ ${HYDRATE:-0} == 1 ]] && COLD_ARGS=(--hydrate)
serve cold "${COLD_ARGS[@]}"
L5=$(load)
RND_COLD=$(rand_read "$URL_OURS"); L6=$(load)
ratio() { node -e "console.log((100 * $1 / $2).toFixed(0))"; }

cat <<EOF
| measurement (${SIZE_MIB} MiB random disk, $(nproc) CPUs) | VMKeep \`repo nbd\` | \`nbdkit file\` | VMKeep ÷ nbdkit | goal | load before → after (ours) |
|---|---|---|---|---|---|
| sequential read, \`nbdcopy --no-extents URL null:\` | ${SEQ_OURS} MB/s | ${SEQ_KIT} MB/s | $(ratio "$SEQ_OURS" "$SEQ_KIT") % | ≥ 500 MB/s | ${L1} → ${L2} |
| the same sequential read again (same server; $(node -e "console.log(($C2 - $C1).toFixed(2))") CPU s) | ${SEQ_AGAIN} MB/s | ${SEQ_KIT} MB/s | $(ratio "$SEQ_AGAIN" "$SEQ_KIT") % | — | ${L2} → ${L2B} |
| random 4 KiB reads, fio nbd engine, iodepth ${IODEPTH}, ${RUNTIME} s (after the sequential read) | ${RND_OURS} IOPS | ${RND_KIT} IOPS | $(ratio "$RND_OURS" "$RND_KIT") % | ≥ 50 % | ${L3} → ${L4} |
| random 4 KiB reads as above, fresh server${COLD_ARGS:+ with --hydrate} (cold cache) | ${RND_COLD} IOPS | ${RND_KIT} IOPS | $(ratio "$RND_COLD" "$RND_KIT") % | — | ${L5} → ${L6} |
EOF
echo "load average at start: $L0; our server used $(node -e "console.log(($C1 - $C0).toFixed(2))") CPU seconds for the sequential read ($(node -e "console.log((${SIZE_MIB} * 1048576 / 1e6 / ($C1 - $C0)).toFixed(0))") MB per CPU-second)" >&2
