#!/usr/bin/env bash
# install-s3.sh: install versitygw, the S3 server the s3 backend's tests
# start (internal/testutil/servers.StartS3), with `go install`.
#
# Idempotent: does nothing if the pinned version is already installed in
# $(go env GOBIN) or $(go env GOPATH)/bin. The tests also find it there when
# that directory is not in $PATH, or at $CAIRN_TEST_VERSITYGW.
#
# Environment:
#   VERSITYGW_VERSION  module version to install (default v1.8.0)
set -euo pipefail

VERSION="${VERSITYGW_VERSION:-v1.8.0}"
MODULE="github.com/versity/versitygw"
export PATH="$PATH:/usr/local/go/bin"

bindir="$(go env GOBIN)"
if [ -z "$bindir" ]; then
	bindir="$(go env GOPATH | cut -d: -f1)/bin"
fi
bin="$bindir/versitygw"

if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null | grep -q "mod[[:space:]]*$MODULE[[:space:]]*$VERSION[[:space:]]"; then
	echo "install-s3: versitygw $VERSION already installed at $bin"
	exit 0
fi

echo "install-s3: installing versitygw $VERSION (this downloads and builds many modules; it can take minutes)" >&2
GOFLAGS="${GOFLAGS:--buildvcs=false}" go install "$MODULE/cmd/versitygw@$VERSION"
go version -m "$bin" | grep -q "$VERSION" || { echo "install-s3: $bin is not version $VERSION" >&2; exit 1; }
echo "install-s3: installed $bin"
