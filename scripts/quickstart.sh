#!/usr/bin/env bash
# Build cairn and run a first real backup: creates a repository (if it does
# not exist yet) and backs up a directory into it, then lists the snapshots.
#
#   scripts/quickstart.sh [REPO [DIR]]     defaults: ./demo-repo and this source tree
#
# The password is read from REPO.password (created with a random password the
# first time). Keep that file safe: without it the backup cannot be restored.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
repo=${1:-demo-repo}
src=${2:-.}
go build -o bin/cairn ./cmd/cairn
mkdir -p "$(dirname "$repo")"
pwfile="$repo.password"
if [ ! -f "$pwfile" ]; then
  umask 077
  head -c 24 /dev/urandom | base64 > "$pwfile"
fi
if [ ! -f "$repo/config" ]; then
  bin/cairn -r "$repo" --password-file "$pwfile" init
fi
bin/cairn -r "$repo" --password-file "$pwfile" backup --exclude "$repo" --exclude bin "$src"
bin/cairn -r "$repo" --password-file "$pwfile" snapshots
echo "restore with: bin/cairn -r $repo --password-file $pwfile restore latest --target /tmp/cairn-restore"
