#!/usr/bin/env bash
# A/B runs of one step with several binaries (or settings) alternating, for changes smaller than
# the host's noise: every round runs each variant once, in the given order, from the same state.
#
#   CORPUS_DIR=/path/to/corpus bench/ab.sh NAME=BINARY[,VAR=VALUE...] ... [restic]
#
# e.g.  STEP=full ROUNDS=4 bench/ab.sh new=/tmp/cairn-new old=/tmp/cairn-old \
#           old3=/tmp/cairn-old,GOMAXPROCS=3 restic
#
# A variant is a name, a cairn binary and optional environment settings for its commands;
# "restic" alone adds the Debian restic (RESTIC, default /usr/bin/restic). Steps (STEP):
#   full     backup of CORPUS/src and CORPUS/big into a fresh repository per run (the default)
#   check    check --read-data of one repository per variant (made once by an untimed full
#            backup with that variant's binary, then read into the page cache before each run)
#   restore  restore of that repository's snapshot onto a fresh ext4 file system per run (a
#            loop device; needs root, mkfs.ext4, losetup), else into a new directory
# Before every timed command the corpus (full) or the repository is read once, `sync` writes
# back what earlier commands left dirty, and the host idles SETTLE seconds (default 12; see
# bench/README.md on why). Each run prints wall, user and system time, busy cores
# ((user+sys)/wall: below the core count means waiting) and peak RSS; the end lists every
# variant's runs and mean wall time. Both tools calibrate their KDF (equal security).
# Environment: CORPUS_DIR (required), STEP, ROUNDS (default 3), SETTLE, OUT_DIR (default
# /tmp/cairn-bench), RESTIC.
set -euo pipefail
: "${CORPUS_DIR:?set CORPUS_DIR to a corpus made by corpus.sh gen}"
STEP=${STEP:-full}
ROUNDS=${ROUNDS:-3}
SETTLE=${SETTLE:-12}
OUT_DIR=${OUT_DIR:-/tmp/cairn-bench}
RESTIC=${RESTIC:-/usr/bin/restic}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "ab.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
[ $# -ge 1 ] || { sed -n '2,23p' "$0"; exit 2; }
case $STEP in full | check | restore) ;; *) echo "ab.sh: unknown STEP $STEP" >&2; exit 2 ;; esac
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d "$OUT_DIR/ab.XXXXXX")
MNT="" LOOP=""
cleanup() {
  [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
unset CAIRN_KDF_PARAMS CAIRN_REPOSITORY RESTIC_REPOSITORY RESTIC_CACHE_DIR CAIRN_PASSWORD RESTIC_PASSWORD
echo bench >"$WORK/pw"

names=() bins=() envs=()
for a in "$@"; do
  if [ "$a" = restic ]; then
    names+=(restic) bins+=("$RESTIC") envs+=("")
    continue
  fi
  name=${a%%=*} rest=${a#*=}
  [ "$name" != "$a" ] && [ -n "$name" ] || { echo "ab.sh: want NAME=BINARY[,VAR=VALUE...], got $a" >&2; exit 2; }
  bin=${rest%%,*} env=""
  [ "$bin" != "$rest" ] && env=${rest#*,}
  [ -x "$bin" ] || { echo "ab.sh: $bin is not executable" >&2; exit 2; }
  names+=("$name") bins+=("$bin") envs+=("${env//,/ }")
done

# cmdline I ARGS...: sets CMD to variant I's command line (environment, binary, its own
# repository and cache in $WORK, ARGS)
cmdline() {
  local i=$1
  shift
  local -a e=()
  [ -n "${envs[$i]}" ] && read -r -a e <<<"${envs[$i]}"
  if [ "${names[$i]}" = restic ]; then
    CMD=(env RESTIC_PASSWORD_FILE="$WORK/pw" "${e[@]}" "${bins[$i]}")
  else
    CMD=(env CAIRN_PASSWORD_FILE="$WORK/pw" "${e[@]}" "${bins[$i]}")
  fi
  CMD+=(-q -r "$WORK/repo-$i" --cache-dir "$WORK/cache-$i" "$@")
}
run() {
  cmdline "$@"
  "${CMD[@]}"
}

fresh_target() {
  if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null; then
    [ -n "$MNT" ] && umount "$MNT" && MNT=""
    [ -n "$LOOP" ] && losetup -d "$LOOP" && LOOP=""
    rm -f "$WORK/fs.img"
    truncate -s $(($(du -sb "$CORPUS_DIR" | cut -f1) * 3 / 2 + (1 << 30))) "$WORK/fs.img"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/fs.img"
    LOOP=$(losetup -f --show --direct-io=on "$WORK/fs.img" 2>/dev/null || losetup -f --show "$WORK/fs.img")
    mkdir -p "$WORK/mnt" && mount "$LOOP" "$WORK/mnt" && MNT=$WORK/mnt
    TARGET=$MNT/restore
  else
    rm -rf "$WORK/restore"
    TARGET=$WORK/restore
  fi
}

warm_corpus() { tar -cf - -C "$CORPUS_DIR" src big 2>/dev/null | cat >/dev/null; }
warm_repo() { tar -cf - -C "$WORK/repo-$1" . 2>/dev/null | cat >/dev/null; }

if [ "$STEP" != full ]; then
  warm_corpus
  for i in "${!names[@]}"; do
    run "$i" init >/dev/null 2>&1
    run "$i" backup "$CORPUS_DIR/src" "$CORPUS_DIR/big" >/dev/null
  done
fi

results=$WORK/results.txt
: >"$results"
for r in $(seq "$ROUNDS"); do
  for i in "${!names[@]}"; do
    args=()
    case $STEP in
    full)
      rm -rf "$WORK/repo-$i" "$WORK/cache-$i"
      run "$i" init >/dev/null 2>&1
      warm_corpus
      args=(backup "$CORPUS_DIR/src" "$CORPUS_DIR/big")
      ;;
    check)
      warm_repo "$i"
      args=(check --read-data)
      ;;
    restore)
      fresh_target
      warm_repo "$i"
      args=(restore latest --target "$TARGET")
      ;;
    esac
    sync
    sleep "$SETTLE"
    cmdline "$i" "${args[@]}"
    $TIME -o "$WORK/time" -f '%e %U %S %M' "${CMD[@]}" >/dev/null
    read -r wall user sys rss <"$WORK/time"
    busy=$(awk -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN { printf "%.2f", (u + s) / w }')
    printf '%-10s round %d  wall %6.2f s  user %6.2f s  sys %5.2f s  busy %s  rss %4d MiB\n' \
      "${names[$i]}" "$r" "$wall" "$user" "$sys" "$busy" $((rss / 1024)) | tee -a "$results"
  done
done
echo "--- $STEP, $ROUNDS rounds, ${SETTLE}s idle before each run"
for n in "${names[@]}"; do
  awk -v n="$n" '$1 == n { w = w sprintf(" %.2f", $5); s += $5; k++ } END { if (k) printf "%-10s wall%s  mean %.2f s\n", n, w, s / k }' "$results"
done
