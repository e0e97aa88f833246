#!/usr/bin/env bash
# Side-by-side benchmark of cairn and restic on the same corpus.
#
#   bench/compare.sh            (from the repository root, or anywhere: paths are resolved)
#
# Steps (in this order; each tool gets its own fresh local repository):
#   init       create the repository (scrypt calibrated by each tool; CAIRN_KDF_PARAMS is unset)
#   full       first backup of CORPUS/src and CORPUS/big
#   unchanged  second backup, nothing changed
#   mutated    `corpus.sh mutate` once (~1% of src files, +1 KiB inside every big file), then
#              a third backup with each tool
#   restore    restore the latest snapshot into a fresh directory, verified by comparing the
#              `corpus.sh sums` manifests of the source and the restored copy
#   check      `check --read-data`
# For every step and tool: wall time, user+sys CPU, peak RSS (/usr/bin/time) and repository size
# (du -sb), plus the cairn/restic ratio. Results: an aligned table on stdout and in
# $RUN/table.txt, plus $RUN/results.tsv and $RUN/results.json ($RUN = $OUT_DIR/<timestamp>).
#
# Environment:
#   OUT_DIR     where runs go (default /tmp/cairn-bench); never inside the git tree
#   CORPUS_DIR  corpus to use; generated there if it has no src/ (then kept); if unset a
#               corpus is generated in $RUN/corpus and removed at the end unless KEEP=1.
#               NOTE: the mutated step modifies the corpus in place.
#   BIG_MIB     size of each of the four big files when generating (default 512)
#   STEPS       comma-separated subset of init,full,unchanged,mutated,restore,check
#               (default: all). init always runs (it is only reported when listed).
#   RESTORE_FS  where restores go: fresh (a new ext4 file system on a loop device for every
#               restore run; needs root, mkfs.ext4, losetup), dir (a new directory under $RUN),
#               auto (default: fresh when possible, else dir). See step_restore.
#   KEEP=1      keep repositories, restores (RESTORE_FS=dir), caches and a generated corpus
#   ORDER       tool order within each step (default "cairn restic")
#   REPS        repetitions of the steps that can be repeated without changing what the next
#               step sees: full (extra runs into throw-away repositories), unchanged, restore,
#               check (default 1). Repetition i runs the tools in
#               ORDER when i is odd and in reverse when it is even; the table shows the median
#               of each figure over the repetitions (n=REPS in the notes), raw.tsv every run.
#   SETTLE      seconds to wait (idle) before every timed command (default 0). On VMs with
#               free page reporting (see "memory:" in env.txt) memory freed by the previous
#               command stays cheap to reuse for ~20 s and then costs a host fault per page,
#               so without a pause a tool may profit from what the one before it freed;
#               SETTLE=30 starts every command from equally cold free memory.
#   SAME_CHUNKER  1 (default): cairn's repositories get restic's chunker polynomial (init
#               --copy-chunker-params, outside the measurement; the timed init is a plain one), so
#               both tools cut the corpus at the same places and repository sizes compare
#               compression and packing only. 0: each tool draws its own polynomial (sizes then
#               differ by up to ~0.5 % by chance, mostly in the mutated step).
#   CAIRN       cairn binary (default: built from this tree into $RUN/cairn)
#   RESTIC      restic binary (default /usr/bin/restic)
#   PROFILE=1   afterwards, run one extra cairn full backup (into a throw-away repository)
#               with CAIRN_CPU_PROFILE=$RUN/cairn-full.pprof and, if perf exists, under
#               `perf record -g` (top symbols in $RUN/perf-cairn-full*.txt)
#
# Caches cannot be dropped reliably here, so they are filled instead: before each tool's
# command the corpus and that tool's repository are read once (`warm`), and both tools start
# every step from a warm page cache, after a `sync` (no tool pays for writing back another's
# dirty pages). init and mutated run once per tool; full, unchanged, restore and check run
# REPS times (median reported). Restores go to fresh file systems or directories (see
# step_restore).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CORPUS_SH=${CORPUS_SH:-/work/shared/bench/corpus.sh}
OUT_DIR=${OUT_DIR:-/tmp/cairn-bench}
export BIG_MIB=${BIG_MIB:-512}
STEPS=${STEPS:-init,full,unchanged,mutated,restore,check}
SETTLE=${SETTLE:-0}
SAME_CHUNKER=${SAME_CHUNKER:-1}
case $SAME_CHUNKER in 0 | 1) ;; *) echo "compare.sh: SAME_CHUNKER must be 0 or 1" >&2; exit 2 ;; esac
case $SETTLE in *[!0-9]* | '') echo "compare.sh: SETTLE must be a whole number of seconds" >&2; exit 2 ;; esac
ORDER=${ORDER:-cairn restic}
REPS=${REPS:-1}
RESTORE_FS=${RESTORE_FS:-auto}
RESTIC=${RESTIC:-/usr/bin/restic}
KEEP=${KEEP:-0}
PROFILE=${PROFILE:-0}
TIME=/usr/bin/time

# Equal security: both tools calibrate scrypt themselves.
unset CAIRN_KDF_PARAMS CAIRN_REPOSITORY CAIRN_PASSWORD CAIRN_PASSWORD_FILE CAIRN_PASSWORD_COMMAND
unset RESTIC_REPOSITORY RESTIC_PASSWORD RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND RESTIC_CACHE_DIR

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
has_step() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

for s in ${STEPS//,/ }; do
  case $s in init | full | unchanged | mutated | restore | check) ;; *) die "unknown step $s" ;; esac
done
case $REPS in '' | *[!0-9]* | 0) die "REPS must be a positive integer, not '$REPS'" ;; esac
case $RESTORE_FS in
auto)
  if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null && [ -e /dev/loop-control ]; then
    RESTORE_FS=fresh
  else
    RESTORE_FS=dir
  fi
  ;;
fresh | dir) ;;
*) die "RESTORE_FS must be auto, fresh or dir, not '$RESTORE_FS'" ;;
esac

# order_for REP: ORDER for odd repetitions, reversed for even ones (cancels first-runner bias)
order_for() {
  if [ $(($1 % 2)) -eq 1 ]; then echo "$ORDER"; else echo "$ORDER" | awk '{for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "\n")}'; fi
}

if [ ! -x "$TIME" ]; then
  log "/usr/bin/time missing; installing Debian package 'time'"
  apt-get install -y time >/dev/null || die "cannot install time"
fi
[ -x "$RESTIC" ] || die "restic not found at $RESTIC"
[ -x "$CORPUS_SH" ] || die "corpus generator not found at $CORPUS_SH"

case $OUT_DIR in "$ROOT"/*) die "OUT_DIR must be outside the git tree ($ROOT)" ;; esac
RUN=$OUT_DIR/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN/logs" || die "cannot create $RUN"
RUN=$(cd "$RUN" && pwd)
export RUN

if [ -z "${CAIRN:-}" ]; then
  log "building cairn from $ROOT"
  (cd "$ROOT" && go build -o "$RUN/cairn" ./cmd/cairn) || die "go build failed"
  CAIRN=$RUN/cairn
fi

GEN_CORPUS=0
if [ -z "${CORPUS_DIR:-}" ]; then
  CORPUS_DIR=$RUN/corpus
  GEN_CORPUS=1
fi
mkdir -p "$CORPUS_DIR"
CORPUS_DIR=$(cd "$CORPUS_DIR" && pwd)
if [ ! -d "$CORPUS_DIR/src" ]; then
  log "generating corpus in $CORPUS_DIR (BIG_MIB=$BIG_MIB)"
  "$CORPUS_SH" gen "$CORPUS_DIR" >"$RUN/logs/corpus-gen.log" 2>&1 || die "corpus gen failed, see $RUN/logs/corpus-gen.log"
fi

printf 'cairn-bench %s\n' "$(head -c 24 /dev/urandom | base64)" >"$RUN/password"
PW=$RUN/password

# ---- environment summary -------------------------------------------------------------
{
  echo "date:    $(date -u +%FT%TZ)"
  echo "host:    $(uname -srm), nproc=$(nproc), mem=$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start; >nproc means other work competes)"
  echo "cpu:     $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
  echo "fs:      $(df -T "$RUN" | awk 'NR==2{print $1" "$2}')"
  # Free page reporting hands guest memory back to the host as soon as it is free, which
  # makes every fresh page (page cache or heap) cost a host fault: ~2.8 s per GiB written
  # into new page-cache pages here, against ~0.3 s into recently freed ones. Results then
  # depend on which run freed memory just before (docs/performance.md).
  if [ -d /sys/module/page_reporting/parameters ]; then
    echo "memory:  free page reporting on ($(cd /sys/module/page_reporting/parameters && for p in page_reporting_order min_free_ms; do [ -r $p ] && printf '%s=%s ' $p "$(cat $p)"; done))"
  fi
  echo "cairn:   $("$CAIRN" version 2>&1 | head -1)"
  echo "restic:  $("$RESTIC" version 2>&1 | head -1)"
  echo "go:      $(go version 2>/dev/null)"
  echo "corpus:  $CORPUS_DIR ($(du -sb "$CORPUS_DIR" | cut -f1) bytes, $(find "$CORPUS_DIR" -type f | wc -l) files, BIG_MIB=$BIG_MIB)"
  echo "steps:   $STEPS (order: $ORDER; full/unchanged/restore/check x$REPS (median), init/mutated once; warm page cache, no cache drop; restore target: $RESTORE_FS; settle ${SETTLE}s; same chunker: $SAME_CHUNKER)"
  echo "run dir: $RUN"
} | tee "$RUN/env.txt"

# ---- step runner ---------------------------------------------------------------------
# Per tool: repository, cache dir. Results are appended to $RUN/raw.tsv:
# step tool rc wall user sys rss_kib repo_bytes note load1 (1-minute load average just before the command)
printf 'step\ttool\trc\twall_s\tuser_s\tsys_s\trss_kib\trepo_bytes\tnote\tload1\n' >"$RUN/raw.tsv"

# REPO_SUFFIX is empty for the repositories the steps build on, and names a throw-away
# repository for the extra repetitions of the full backup
REPO_SUFFIX=
repo_of() { echo "$RUN/repo-$1$REPO_SUFFIX"; }
cache_of() { echo "$RUN/cache-$1$REPO_SUFFIX"; }
bin_of() { if [ "$1" = cairn ]; then echo "$CAIRN"; else echo "$RESTIC"; fi; }

# run_tool STEP TOOL NOTE ARGS... : runs BIN -r REPO -p PW --cache-dir CACHE ARGS under /usr/bin/time
run_tool() {
  local step=$1 tool=$2 note=$3
  shift 3
  local bin repo tf lf rc
  bin=$(bin_of "$tool")
  repo=$(repo_of "$tool")
  tf=$RUN/logs/$tool-$step.time
  lf=$RUN/logs/$tool-$step.log
  local load1 _rest
  read -r load1 _rest </proc/loadavg
  log "$step: $tool $* (load1 $load1)"
  # write back what earlier commands left dirty, so that no tool pays for another's writes
  sync
  [ "$SETTLE" = 0 ] || sleep "$SETTLE"
  "$TIME" -o "$tf" -f "%e %U %S %M" "$bin" -r "$repo" -p "$PW" --cache-dir "$(cache_of "$tool")" "$@" >"$lf" 2>&1
  rc=$?
  # /usr/bin/time prints "Command exited with non-zero status N" before the numbers.
  local wall user sys rss
  read -r wall user sys rss < <(tail -n 1 "$tf")
  local size=0
  [ -d "$repo" ] && size=$(du -sb "$repo" | cut -f1)
  [ "$rc" -eq 0 ] || { note="${note:+$note; }exit $rc: $(tail -n 3 "$lf" | tr '\t\n' '  ' | cut -c1-200)"; log "$tool $step FAILED: $note"; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$tool" "$rc" "$wall" "$user" "$sys" "$rss" "$size" "$note" "$load1" >>"$RUN/raw.tsv"
  return "$rc"
}

record_skip() {
  printf '%s\t%s\t%s\t\t\t\t\t\t%s\t\n' "$1" "$2" "-" "$3" >>"$RUN/raw.tsv"
}

step_init() {
  local t
  for t in $ORDER; do run_tool init "$t" "" init; done
  if [ "$SAME_CHUNKER" = 1 ]; then
    # the timed init above was a plain one; the repository the steps use is made again,
    # outside the measurement, with restic's chunker polynomial
    rm -rf "$(repo_of cairn)" "$(cache_of cairn)"
    cairn_init_same_chunker >"$RUN/logs/cairn-init-same-chunker.log" 2>&1 ||
      die "cairn init --copy-chunker-params failed, see $RUN/logs/cairn-init-same-chunker.log"
  fi
}

# cairn_init_same_chunker: init cairn's repository (repo_of cairn) with the chunker polynomial
# of restic's real repository, so that both tools cut the corpus at the same places.
cairn_init_same_chunker() {
  "$CAIRN" -r "$(repo_of cairn)" -p "$PW" --cache-dir "$(cache_of cairn)" init \
    --copy-chunker-params --from-repo "$RUN/repo-restic" --from-password-file "$PW"
}

# warm DIR...: read every file once so each tool starts from the same warm page cache
# (otherwise the first tool of a step pays for the disk reads and the second does not).
warm() {
  find "$@" -type f -print0 2>/dev/null | xargs -0 -r cat >/dev/null 2>&1 || true
}

step_backup() { # $1 = step name, $2 = repetitions (default 1)
  local t i
  for ((i = 1; i <= ${2:-1}; i++)); do
    for t in $(order_for "$i"); do
      warm "$CORPUS_DIR" "$(repo_of "$t")"
      run_tool "$1" "$t" "" backup "$CORPUS_DIR/src" "$CORPUS_DIR/big"
    done
  done
}

# step_full: the first backup, REPS times; every repetition but the last goes into a
# throw-away repository (initialised outside the measurement), the last into the real one
step_full() {
  local t i
  for ((i = 1; i <= REPS; i++)); do
    for t in $(order_for "$i"); do
      if [ "$i" -lt "$REPS" ]; then
        REPO_SUFFIX=-full$i
        if [ "$t" = cairn ] && [ "$SAME_CHUNKER" = 1 ]; then
          cairn_init_same_chunker >"$RUN/logs/$t-init-full$i.log" 2>&1
        else
          "$(bin_of "$t")" -r "$(repo_of "$t")" -p "$PW" --cache-dir "$(cache_of "$t")" init >"$RUN/logs/$t-init-full$i.log" 2>&1
        fi || die "$t init of a throw-away repository failed, see $RUN/logs/$t-init-full$i.log"
      fi
      warm "$CORPUS_DIR" "$(repo_of "$t")"
      run_tool full "$t" "" backup "$CORPUS_DIR/src" "$CORPUS_DIR/big"
      if [ "$i" -lt "$REPS" ]; then
        [ "$KEEP" = 1 ] || rm -rf "$(repo_of "$t")" "$(cache_of "$t")"
        REPO_SUFFIX=
      fi
    done
  done
}

# Find the corpus inside a restore target: both tools recreate the absolute path.
restored_root() {
  local tgt=$1
  if [ -d "$tgt$CORPUS_DIR/src" ]; then echo "$tgt$CORPUS_DIR"; elif [ -d "$tgt/src" ]; then echo "$tgt"; else return 1; fi
}

# Restore targets. RESTORE_FS=fresh: every restore run gets a new ext4 file system (image file
# in $RUN on a loop device, inode tables initialised before the run), so both tools write into
# identical, empty file systems. RESTORE_FS=dir: a new directory under $RUN per run, removed only
# after the step: deleting 15,000 files makes ext4's inode allocator skip the recently freed
# inodes for minutes afterwards (recently_deleted() in perf), which slows any later restore,
# whichever tool runs it.
FRESH_MNT= FRESH_LOOP= FRESH_IMG=
fresh_fs_down() {
  [ -n "$FRESH_MNT" ] && { umount "$FRESH_MNT" 2>/dev/null || umount -l "$FRESH_MNT" 2>/dev/null; }
  [ -n "$FRESH_LOOP" ] && losetup -d "$FRESH_LOOP" 2>/dev/null
  [ -n "$FRESH_IMG" ] && rm -f "$FRESH_IMG"
  FRESH_MNT= FRESH_LOOP= FRESH_IMG=
}
trap fresh_fs_down EXIT
# fresh_fs_up NAME: new file system mounted at $RUN/NAME (= $FRESH_MNT)
fresh_fs_up() {
  local img=$RUN/$1.img mnt=$RUN/$1 bytes
  bytes=$(du -sb "$CORPUS_DIR" | cut -f1)
  truncate -s $((bytes * 3 / 2 + (1 << 30))) "$img" || return 1
  FRESH_IMG=$img
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img" >"$RUN/logs/mkfs-$1.log" 2>&1 || return 1
  FRESH_LOOP=$(losetup -f --show --direct-io=on "$img" 2>>"$RUN/logs/mkfs-$1.log") || FRESH_LOOP=$(losetup -f --show "$img") || return 1
  mkdir -p "$mnt" && mount "$FRESH_LOOP" "$mnt" || return 1
  FRESH_MNT=$mnt
}

step_restore() {
  log "computing source manifest"
  "$CORPUS_SH" sums "$CORPUS_DIR" >"$RUN/sums-source.txt" 2>"$RUN/logs/sums-source.err" || die "corpus.sh sums failed"
  local t tgt root note i
  for ((i = 1; i <= REPS; i++)); do
  for t in $(order_for "$i"); do
    if [ "$RESTORE_FS" = fresh ]; then
      fresh_fs_up "restore-$t-$i" || die "cannot create a fresh file system (RESTORE_FS=fresh), see $RUN/logs/mkfs-restore-$t-$i.log"
      tgt=$FRESH_MNT
    else
      tgt=$RUN/restore-$t-$i
      rm -rf "$tgt"
      mkdir -p "$tgt"
    fi
    warm "$(repo_of "$t")"
    if run_tool restore "$t" "" restore latest --target "$tgt"; then :; fi
    note=
    if root=$(restored_root "$tgt"); then
      "$CORPUS_SH" sums "$root" >"$RUN/sums-restore-$t.txt" 2>/dev/null
      if cmp -s "$RUN/sums-source.txt" "$RUN/sums-restore-$t.txt"; then
        note="verify OK ($(wc -l <"$RUN/sums-source.txt") files)"
      else
        note="VERIFY MISMATCH: $(diff "$RUN/sums-source.txt" "$RUN/sums-restore-$t.txt" | grep -c '^[<>]') differing manifest lines"
      fi
    else
      note="VERIFY FAILED: corpus not found under $tgt"
    fi
    log "restore $t: $note"
    # attach the verification result to the last raw line (this tool's restore)
    awk -v n="$note" 'BEGIN{FS=OFS="\t"} {if (NR > 1) print prev; prev = $0} END{$0 = prev; $9 = ($9 == "") ? n : $9 "; " n; print}' "$RUN/raw.tsv" >"$RUN/raw.tmp" && mv "$RUN/raw.tmp" "$RUN/raw.tsv"
    if [ "$RESTORE_FS" = fresh ]; then
      fresh_fs_down
      rmdir "$tgt" 2>/dev/null
    fi
  done
  done
  [ "$KEEP" = 1 ] || rm -rf "$RUN"/restore-*
}

step_check() {
  local t i
  for ((i = 1; i <= REPS; i++)); do
  for t in $(order_for "$i"); do
    if [ "$t" = cairn ] && ! "$CAIRN" check --help >/dev/null 2>&1; then
      log "cairn has no check command: skipping"
      record_skip check cairn "skipped: cairn has no check command"
      continue
    fi
    warm "$(repo_of "$t")"
    run_tool check "$t" "" check --read-data
  done
  done
}

# ---- run -----------------------------------------------------------------------------
step_init
# init is always run; drop its lines if it was not requested
if ! has_step init; then
  awk -F'\t' '$1!="init"' "$RUN/raw.tsv" >"$RUN/raw.tmp" && mv "$RUN/raw.tmp" "$RUN/raw.tsv"
fi
has_step full && step_full
has_step unchanged && step_backup unchanged "$REPS"
if has_step mutated; then
  log "mutating corpus"
  "$CORPUS_SH" mutate "$CORPUS_DIR" >"$RUN/logs/corpus-mutate.log" 2>&1 || die "corpus mutate failed"
  step_backup mutated
fi
has_step restore && step_restore
has_step check && step_check

# ---- report --------------------------------------------------------------------------
# results.tsv: one line per step with both tools and ratios.
awk -F'\t' -v order="$ORDER" '
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "" : sprintf("%.2f", a / b) }
function hb(x) { # human bytes
  if (x == "") return "";
  if (x >= 1073741824) return sprintf("%.2fG", x / 1073741824);
  if (x >= 1048576) return sprintf("%.1fM", x / 1048576);
  if (x >= 1024) return sprintf("%.1fK", x / 1024);
  return x "B"
}
function cpu(u, s) { return (u == "") ? "" : sprintf("%.2f", u + s) }
function rssm(k) { return (k == "") ? "" : sprintf("%.0f", k / 1024) }
# median of the space-separated numbers in list (empty when none)
function median(list,   v, m, i, j, x) {
  m = split(list, v, " ")
  if (m == 0) return ""
  for (i = 2; i <= m; i++) { x = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
  return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
function add(arr, k, x) { if (x != "") arr[k] = (arr[k] == "" ? "" : arr[k] " ") x }
NR == 1 { next }
{
  if (!($1 in seen)) { seen[$1] = 1; steps[++n] = $1 }
  k = $1 SUBSEP $2
  runs[k]++
  if (rc[k] == "" || rc[k] == 0) rc[k] = $3
  add(walls, k, $4); add(cpus, k, cpu($5, $6)); add(rsss, k, $7); size[k] = $8; load[k] = $10
  if ($9 != "" && index(note[k], $9) == 0) note[k] = (note[k] == "" ? "" : note[k] "; ") $9
}
END {
  for (k in runs) {
    wall[k] = median(walls[k]); c[k] = median(cpus[k]); rss[k] = median(rsss[k])
    if (c[k] != "") c[k] = sprintf("%.2f", c[k])
    if (wall[k] != "") wall[k] = sprintf("%.2f", wall[k])
    if (rss[k] != "") rss[k] = sprintf("%.0f", rss[k])
    if (runs[k] > 1) { note[k] = (note[k] == "" ? "" : note[k] "; ") "median of n=" runs[k] " (wall " walls[k] ")" }
  }
  tsv = ENVIRON["RUN"] "/results.tsv"; js = ENVIRON["RUN"] "/results.json"; tbl = ENVIRON["RUN"] "/table.txt"
  print "step\tcairn_rc\tcairn_wall_s\tcairn_cpu_s\tcairn_rss_kib\tcairn_repo_bytes\trestic_rc\trestic_wall_s\trestic_cpu_s\trestic_rss_kib\trestic_repo_bytes\tratio_wall\tratio_cpu\tratio_rss\tratio_repo\tcairn_note\trestic_note\tcairn_load1\trestic_load1" > tsv
  printf "{\n  \"env\": \"%s\",\n  \"steps\": [\n", ENVIRON["RUN"] "/env.txt" > js
  hdr = sprintf("%-9s | %8s %8s %8s %9s | %8s %8s %8s %9s | %6s %6s %6s %6s | %11s | %s", "step", "c.wall", "c.cpu", "c.rssM", "c.repo", "r.wall", "r.cpu", "r.rssM", "r.repo", "x.wall", "x.cpu", "x.rss", "x.repo", "load1 c/r", "notes")
  print hdr > tbl
  line = hdr; gsub(/./, "-", line); print line > tbl
  for (i = 1; i <= n; i++) {
    s = steps[i]; a = s SUBSEP "cairn"; b = s SUBSEP "restic"
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s, rc[a], wall[a], c[a], rss[a], size[a], rc[b], wall[b], c[b], rss[b], size[b], ratio(wall[a], wall[b]), ratio(c[a], c[b]), ratio(rss[a], rss[b]), ratio(size[a], size[b]), note[a], note[b], load[a], load[b] > tsv
    notes = ""
    if (note[a] != "") notes = "cairn: " note[a]
    if (note[b] != "") notes = notes (notes == "" ? "" : " | ") "restic: " note[b]
    printf "%-9s | %8s %8s %8s %9s | %8s %8s %8s %9s | %6s %6s %6s %6s | %11s | %s\n", s, wall[a], c[a], rssm(rss[a]), hb(size[a]), wall[b], c[b], rssm(rss[b]), hb(size[b]), ratio(wall[a], wall[b]), ratio(c[a], c[b]), ratio(rss[a], rss[b]), ratio(size[a], size[b]), (load[a] == "" && load[b] == "") ? "" : load[a] "/" load[b], notes > tbl
    printf "    {\"step\": \"%s\"", s > js
    split("cairn restic", tools, " ")
    for (j = 1; j <= 2; j++) {
      k = s SUBSEP tools[j]; nt = note[k]; gsub(/\\/, "\\\\", nt); gsub(/"/, "\\\"", nt)
      printf ", \"%s\": {\"rc\": \"%s\", \"wall_s\": %s, \"cpu_s\": %s, \"rss_kib\": %s, \"repo_bytes\": %s, \"load1\": %s, \"note\": \"%s\"}", tools[j], rc[k], (wall[k] == "" ? "null" : wall[k]), (c[k] == "" ? "null" : c[k]), (rss[k] == "" ? "null" : rss[k]), (size[k] == "" ? "null" : size[k]), (load[k] == "" ? "null" : load[k]), nt > js
    }
    printf ", \"ratio\": {\"wall\": %s, \"cpu\": %s, \"rss\": %s, \"repo\": %s}}%s\n", (ratio(wall[a], wall[b]) == "" ? "null" : ratio(wall[a], wall[b])), (ratio(c[a], c[b]) == "" ? "null" : ratio(c[a], c[b])), (ratio(rss[a], rss[b]) == "" ? "null" : ratio(rss[a], rss[b])), (ratio(size[a], size[b]) == "" ? "null" : ratio(size[a], size[b])), (i < n ? "," : "") > js
  }
  print "  ]\n}" > js
}' "$RUN/raw.tsv"

echo
cat "$RUN/table.txt"
echo
echo "wall/cpu in seconds (cpu = user+sys), rssM = peak RSS in MiB, repo = du -sb of the repository after the step,"
echo "x.* = cairn/restic ratio (<1 means cairn is faster/smaller), load1 = 1-min load average before each tool's command. Files: $RUN/{results.tsv,results.json,table.txt,env.txt,logs/}"

# ---- optional profile ----------------------------------------------------------------
# One extra cairn full backup into a throw-away repository, profiled by cairn itself
# (CAIRN_CPU_PROFILE, for `go tool pprof`) and, if available, by `perf record -g`.
if [ "$PROFILE" = 1 ]; then
  prepo=$RUN/repo-profile
  "$CAIRN" -r "$prepo" -p "$PW" init >"$RUN/logs/profile-init.log" 2>&1
  pcmd=("$CAIRN" -r "$prepo" -p "$PW" --cache-dir "$RUN/cache-profile" backup "$CORPUS_DIR/src" "$CORPUS_DIR/big")
  if command -v perf >/dev/null 2>&1; then
    log "profiling a cairn full backup (perf: $RUN/perf.data, pprof: $RUN/cairn-full.pprof)"
    CAIRN_CPU_PROFILE=$RUN/cairn-full.pprof perf record -F 499 -g -o "$RUN/perf.data" -- "${pcmd[@]}" >"$RUN/logs/profile-backup.log" 2>&1
    prc=$?
  else
    log "perf not available: pprof profile only ($RUN/cairn-full.pprof)"
    CAIRN_CPU_PROFILE=$RUN/cairn-full.pprof "${pcmd[@]}" >"$RUN/logs/profile-backup.log" 2>&1
    prc=$?
  fi
  if [ "$prc" -ne 0 ]; then
    log "profiled backup failed (exit $prc), see $RUN/logs/profile-backup.log"
  elif [ -s "$RUN/perf.data" ]; then
    perf report -i "$RUN/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep '%' | head -40 >"$RUN/perf-cairn-full.txt"
    perf report -i "$RUN/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep '%' | head -40 >"$RUN/perf-cairn-full-children.txt"
    echo; echo "perf: top self-time symbols of a cairn full backup ($RUN/perf-cairn-full.txt):"
    head -25 "$RUN/perf-cairn-full.txt"
  fi
  [ -s "$RUN/cairn-full.pprof" ] && echo "pprof: go tool pprof -top $RUN/cairn $RUN/cairn-full.pprof (needs KEEP=1 or CAIRN= for the binary)"
  [ "$KEEP" = 1 ] || rm -rf "$prepo" "$RUN/cache-profile"
fi

if [ "$KEEP" != 1 ]; then
  rm -rf "$RUN"/repo-* "$RUN"/restore-* "$RUN"/cache-* "$RUN/cairn"
  [ "$GEN_CORPUS" = 1 ] && rm -rf "$CORPUS_DIR"
fi
exit 0
