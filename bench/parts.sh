#!/usr/bin/env bash
# Full backup of each part of the corpus alone, cairn next to restic: where the time goes.
#
#   CORPUS_DIR=/path/to/corpus bench/parts.sh
#
# For each part (an empty directory for the fixed cost, src/, and every file in big/), both
# tools init a fresh repository (calibrated KDF, equal security) and back the part up once;
# the part is read once beforehand so both start from a warm page cache. Prints wall time,
# CPU time (user+sys), peak RSS and repository size per tool, and the wall ratio.
# Environment: CORPUS_DIR (required; make one with /work/shared/bench/corpus.sh gen DIR),
# OUT_DIR (default /tmp/cairn-bench), CAIRN (binary; default: built from this tree),
# RESTIC (default /usr/bin/restic).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${CORPUS_DIR:?set CORPUS_DIR to a corpus made by corpus.sh gen}"
OUT_DIR=${OUT_DIR:-/tmp/cairn-bench}
RESTIC=${RESTIC:-/usr/bin/restic}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "parts.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
WORK=$(mktemp -d "$OUT_DIR/parts.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ -z "${CAIRN:-}" ]; then
  (cd "$ROOT" && go build -o "$WORK/cairn" ./cmd/cairn)
  CAIRN=$WORK/cairn
fi
unset CAIRN_KDF_PARAMS CAIRN_REPOSITORY RESTIC_REPOSITORY RESTIC_CACHE_DIR
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench
mkdir -p "$WORK/empty"
parts=("$WORK/empty" "$CORPUS_DIR/src")
for f in "$CORPUS_DIR"/big/*; do parts+=("$f"); done
printf "%-14s | %7s %7s %6s %11s | %7s %7s %6s %11s | %5s\n" part c.wall c.cpu c.rssM c.repo r.wall r.cpu r.rssM r.repo x.wall
for p in "${parts[@]}"; do
  find "$p" -type f -exec cat {} + >/dev/null 2>&1 || true
  declare -A wall cpu rss size
  for tool in cairn restic; do
    repo=$WORK/repo-$tool cache=$WORK/cache-$tool
    rm -rf "$repo" "$cache"
    if [ $tool = cairn ]; then bin=$CAIRN; else bin=$RESTIC; fi
    "$bin" init -r "$repo" --cache-dir "$cache" >/dev/null
    "$TIME" -f "%e %U %S %M" -o "$WORK/t" "$bin" backup -q -r "$repo" --cache-dir "$cache" "$p" >/dev/null
    read -r e u s m <"$WORK/t"
    wall[$tool]=$e cpu[$tool]=$(echo "$u + $s" | bc) rss[$tool]=$((m / 1024)) size[$tool]=$(du -sb "$repo" | cut -f1)
  done
  name=$(basename "$p"); [ "$p" = "$WORK/empty" ] && name="(empty)"
  printf "%-14s | %7.2f %7.2f %6d %11d | %7.2f %7.2f %6d %11d | %5.2f\n" "$name" \
    "${wall[cairn]}" "${cpu[cairn]}" "${rss[cairn]}" "${size[cairn]}" \
    "${wall[restic]}" "${cpu[restic]}" "${rss[restic]}" "${size[restic]}" \
    "$(echo "${wall[cairn]} / ${wall[restic]}" | bc -l)"
done
