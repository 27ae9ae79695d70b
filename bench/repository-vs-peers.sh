#!/usr/bin/env bash
# Repository benchmark against restic and borg on one generated VM disk image, in one run:
#   1. a raw disk of SIZE GiB holding an ext4 file system made with `mke2fs -t ext4 -d` from /usr/lib
#      (or, when /usr/lib does not fit, from a hard-linked selection of its top-level folders);
#   2. full backup of the image: VMKeep (`vmkeep repo backup-image`, encrypted repository), `restic backup`
#      (encrypted, local repository) and `borg create --compression zstd,3` (repokey encryption) —
#      wall time, peak RSS and stored bytes each, on the same warm page cache;
#   3. VMKeep backup of an identical clone of the image (stored growth, goal ≤ 2 %);
#   4. VMKeep full restore of the first point to a raw file (GB/s), compared byte for byte with the image;
#   5. VMKeep `repo list` on the encrypted repository: the peak RSS of loading the CLI and unlocking the key
#      (scrypt, 128 MiB), under which no VMKeep run above can go.
#
# Usage: bash bench/repository-vs-peers.sh [SIZE_GIB]        (default 6, the size the issue names)
# Environment:
#   LEVELS        zstd levels of the VMKeep repository, one full backup each (default "3", the default level),
#                 e.g. LEVELS="1 3"; the clone backup and the restore use the first level's repository
#   BENCH_DIR     work folder (default: a new folder under ${TMPDIR:-/tmp}); removed afterwards unless KEEP=1
#   VMKEEP_DIST   compiled tree to run (default: <repo>/dist, built with `node scripts/build.js` when missing);
#                 it is copied into the work folder first, so a rebuild during the run cannot disturb it
#   SOURCE_DIR    folder to fill the file system from (default /usr/lib)
set -euo pipefail

SIZE_GIB=${1:-6}
[[ $SIZE_GIB =~ ^[1-9][0-9]*$ ]] || { echo "SIZE_GIB must be a whole number of GiB, got '$SIZE_GIB'" >&2; exit 2; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SOURCE_DIR=${SOURCE_DIR:-/usr/lib}
read -r -a LEVELS <<<"${LEVELS:-3}"
for level in "${LEVELS[@]}"; do
  [[ $level =~ ^[1-9][0-9]*$ ]] || { echo "LEVELS must hold zstd levels (whole numbers ≥ 1), got '$level'" >&2; exit 2; }
done
TIME_BIN=/usr/bin/time

# --- tools -------------------------------------------------------------------------------------------------
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have restic || missing+=("restic (apt-get install restic)")
have borg || missing+=("borg (apt-get install borgbackup)")
have mke2fs || missing+=("mke2fs (apt-get install e2fsprogs)")
[[ -x $TIME_BIN ]] || missing+=("$TIME_BIN (apt-get install time)")
have node || missing+=("node (Node.js 20 or newer)")
if ((${#missing[@]})); then
  echo "missing tools: ${missing[*]}" >&2
  echo "on Debian/Ubuntu: sudo apt-get install restic borgbackup e2fsprogs time" >&2
  exit 2
fi

WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/vmkeep-vs-peers.XXXXXX")}
mkdir -p "$WORK"
cleanup() { [[ ${KEEP:-0} == 1 ]] && echo "kept $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT

DIST=${VMKEEP_DIST:-$ROOT/dist}
if [[ ! -f $DIST/apps/cli/src/main.js || ! -f $DIST/.build-stamp ]]; then
  echo "building $DIST (node scripts/build.js)…"
  (cd "$ROOT" && node scripts/build.js)
fi
cp -a "$DIST" "$WORK/dist"
CLI=("node" "$WORK/dist/apps/cli/src/main.js")
export NODE_PATH="$ROOT/node_modules${NODE_PATH:+:$NODE_PATH}"

# Secrets only for this run; none of them is printed.
export VMKEEP_PASSPHRASE="bench-vmkeep-$RANDOM$RANDOM" RESTIC_PASSWORD="bench-restic-$RANDOM$RANDOM"
export BORG_PASSPHRASE="bench-borg-$RANDOM$RANDOM" BORG_BASE_DIR="$WORK/borg-home" RESTIC_CACHE_DIR="$WORK/restic-cache"
unset VMKEEP_REPO RESTIC_REPOSITORY BORG_REPO

load() { cut -d' ' -f1 /proc/loadavg; }
bytes_of() { { du -sb "$1" 2>/dev/null || true; } | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
warm() { cat "$1" >/dev/null; }   # the image comes from the page cache for every tool alike

# run_timed NAME CMD… : runs CMD under /usr/bin/time; sets WALL (s), RSS (KiB), CPU (user+sys s), LOAD_BEFORE/AFTER;
# log in $WORK/NAME.log
run_timed() {
  local name=$1; shift
  sync
  LOAD_BEFORE=$(load)
  if ! "$TIME_BIN" -f '%e %M %U %S' -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1; then
    echo "$name failed:" >&2; tail -20 "$WORK/$name.log" >&2; exit 1
  fi
  LOAD_AFTER=$(load)
  local user sys
  read -r WALL RSS user sys <"$WORK/$name.time"
  CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  printf '  %-22s %8.2f s  CPU %7.2f s  peak RSS %5d MiB  load %s → %s\n' "$name" "$WALL" "$CPU" $((RSS / 1024)) \
    "$LOAD_BEFORE" "$LOAD_AFTER"
}

# --- image -------------------------------------------------------------------------------------------------
IMG=$WORK/disk.raw
SIZE_BYTES=$((SIZE_GIB * 1024 * 1024 * 1024))
budget=$((SIZE_BYTES * 72 / 100))   # leaves room for ext4 metadata and inode tables
src=$SOURCE_DIR
if (($(bytes_of "$SOURCE_DIR") > budget)); then
  # Too big: take whole top-level folders of SOURCE_DIR, in name order, while they fit.
  src=$WORK/stage
  mkdir -p "$src"
  used=0
  while IFS= read -r -d '' entry; do
    size=$(bytes_of "$entry")
    ((used + size > budget)) && continue
    cp -al "$entry" "$src/" 2>/dev/null || cp -a "$entry" "$src/"
    used=$((used + size))
  done < <(find "$SOURCE_DIR" -mindepth 1 -maxdepth 1 -print0 | sort -z)
fi
echo "image: ${SIZE_GIB} GiB raw, ext4 from $src ($(mib "$(bytes_of "$src")") MiB of files)"
truncate -s "$SIZE_BYTES" "$IMG"
mke2fs -q -F -t ext4 -d "$src" "$IMG"
rm -rf "$WORK/stage"
cp --reflink=auto --sparse=never "$IMG" "$WORK/clone.raw"
cmp -s "$IMG" "$WORK/clone.raw"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM," \
  "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); $(restic version | cut -d' ' -f1-2); $(borg --version); node $(node --version)"

# --- backups -----------------------------------------------------------------------------------------------
echo "full backups of the image:"
for level in "${LEVELS[@]}"; do
  "${CLI[@]}" repo init --encrypt --compression-level "$level" --repo "$WORK/vmkeep-$level" >/dev/null
done
VREPO=$WORK/vmkeep-${LEVELS[0]}
restic init --repo "$WORK/restic" >/dev/null
borg init --encryption=repokey "$WORK/borg" >/dev/null 2>&1

declare -A L_WALL L_RSS L_CPU L_STORED L_LOAD
for level in "${LEVELS[@]}"; do
  warm "$IMG"; run_timed "vmkeep-backup-zstd$level" "${CLI[@]}" --json repo backup-image "$IMG" --repo "$WORK/vmkeep-$level"
  L_WALL[$level]=$WALL L_RSS[$level]=$RSS L_CPU[$level]=$CPU L_LOAD[$level]="$LOAD_BEFORE → $LOAD_AFTER"
  L_STORED[$level]=$(bytes_of "$WORK/vmkeep-$level")
done
V_WALL=${L_WALL[${LEVELS[0]}]} V_STORED=${L_STORED[${LEVELS[0]}]}
POINT=$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).point)' \
  "$WORK/vmkeep-backup-zstd${LEVELS[0]}.log")

warm "$IMG"; run_timed restic-backup restic backup --repo "$WORK/restic" "$IMG"
R_WALL=$WALL R_RSS=$RSS R_CPU=$CPU R_LOAD="$LOAD_BEFORE → $LOAD_AFTER"
R_STORED=$(bytes_of "$WORK/restic")

warm "$IMG"; run_timed borg-create borg create --compression zstd,3 "$WORK/borg::first" "$IMG"
B_WALL=$WALL B_RSS=$RSS B_CPU=$CPU B_LOAD="$LOAD_BEFORE → $LOAD_AFTER"
B_STORED=$(bytes_of "$WORK/borg")

echo "VMKeep backup of an identical clone, then full restore:"
warm "$WORK/clone.raw"; run_timed vmkeep-clone-backup "${CLI[@]}" --json repo backup-image "$WORK/clone.raw" --repo "$VREPO"
C_WALL=$WALL C_RSS=$RSS C_CPU=$CPU C_LOAD="$LOAD_BEFORE → $LOAD_AFTER"
C_GROWTH=$(($(bytes_of "$VREPO") - V_STORED))
rm -f "$WORK/clone.raw"

run_timed vmkeep-restore "${CLI[@]}" --json repo restore "$POINT" --output "$WORK/restored.raw" --repo "$VREPO"
T_WALL=$WALL T_RSS=$RSS T_CPU=$CPU T_LOAD="$LOAD_BEFORE → $LOAD_AFTER"

# The floor under every VMKeep peak above: loading the CLI and unlocking the key (scrypt, 128 MiB) alone.
run_timed vmkeep-unlock "${CLI[@]}" repo list --repo "$VREPO"
U_WALL=$WALL U_RSS=$RSS U_CPU=$CPU U_LOAD="$LOAD_BEFORE → $LOAD_AFTER"
cmp "$IMG" "$WORK/restored.raw" && RESTORE_OK=byte-exact || RESTORE_OK=DIFFERENT

# --- report ------------------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
speed() { awk -v s="$SIZE_BYTES" -v t="$1" 'BEGIN { printf "%.0f MB/s", s / 1e6 / t }'; }
row() { printf '| %s | %.2f s (%s) | %.2f s | %d MiB | %s MiB | %s | %s |\n' "$1" "$2" "$(speed "$2")" "$3" $(($4 / 1024)) "$(mib "$5")" "$6" "$7"; }
echo
echo "Results (${SIZE_GIB} GiB image, $(date -u +%Y-%m-%dT%H:%MZ), $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')):"
echo
echo "| run | wall time | CPU (user+sys) | peak RSS | stored | VMKeep ÷ tool (time / stored) | 1-min load before → after |"
echo "|---|---|---|---|---|---|---|"
for level in "${LEVELS[@]}"; do
  row "VMKeep full backup (encrypted, zstd $level)" "${L_WALL[$level]}" "${L_CPU[$level]}" "${L_RSS[$level]}" "${L_STORED[$level]}" \
    "÷ restic $(ratio "${L_WALL[$level]}" "$R_WALL") / $(ratio "${L_STORED[$level]}" "$R_STORED")" "${L_LOAD[$level]}"
done
row "restic backup" "$R_WALL" "$R_CPU" "$R_RSS" "$R_STORED" "—" "$R_LOAD"
row "borg create zstd,3" "$B_WALL" "$B_CPU" "$B_RSS" "$B_STORED" "zstd ${LEVELS[0]} ÷ borg $(ratio "$V_WALL" "$B_WALL") / $(ratio "$V_STORED" "$B_STORED")" "$B_LOAD"
row "VMKeep backup of identical clone (zstd ${LEVELS[0]})" "$C_WALL" "$C_CPU" "$C_RSS" "$C_GROWTH" \
  "growth $(awk -v g="$C_GROWTH" -v s="$V_STORED" 'BEGIN { printf "%.3f %%", 100 * g / s }')" "$C_LOAD"
printf '| VMKeep full restore to raw | %.2f s (%s) | %.2f s | %d MiB | — | %s | %s |\n' "$T_WALL" \
  "$(awk -v s="$SIZE_BYTES" -v t="$T_WALL" 'BEGIN { printf "%.2f GB/s", s / 1e9 / t }')" "$T_CPU" $((T_RSS / 1024)) "$RESTORE_OK" "$T_LOAD"
printf '| VMKeep key unlock alone (`repo list`) | %.2f s | %.2f s | %d MiB | — | — | %s |\n' "$U_WALL" "$U_CPU" $((U_RSS / 1024)) "$U_LOAD"
echo
echo "Goals (issue 4, zstd ${LEVELS[0]}): time ≤ 0.25 × restic → $(ratio "$V_WALL" "$R_WALL"); stored ≤ restic → $(ratio "$V_STORED" "$R_STORED");" \
  "peak RSS ≤ 256 MiB → $((${L_RSS[${LEVELS[0]}]} / 1024)) MiB; clone growth ≤ 2 %; restore ≥ 1 GB/s."
[[ $RESTORE_OK == byte-exact ]]
