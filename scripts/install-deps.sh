#!/usr/bin/env bash
# install-deps.sh: make sure the tools that cairn's tests talk to are installed.
#
# Idempotent and non-interactive. Meant for a fresh Debian machine running as
# root (CI: CI=true, no stdin); a non-root user needs passwordless sudo for
# the apt part. Prints nothing but one line when everything is already there,
# unless VERBOSE=1 or CI=true, which also print the versions found.
#
# Environment:
#   VERBOSE=1        print tool versions even when nothing was installed
#   SKIP_APT=1       do not touch apt (report missing tools and fail instead)
#   GO_TOOLS="..."   override the list of Go tools (module/path@version ...)
set -euo pipefail

# command name -> Debian package providing it.
APT_TOOLS=(
	"restic:restic"
	"rclone:rclone"
	"sshd:openssh-server"
	"ssh:openssh-client"
	"ssh-keygen:openssh-client"
	"fusermount3:fuse3"
	"setfattr:attr"
	"getfattr:attr"
	"spin:spin"
	"make:make"
	"gcc:gcc"
	"git:git"
)

# Go tools installed with `go install`; pinned for reproducible CI.
# versitygw is the real S3 server the S3 backend tests start on loopback.
GO_TOOLS_DEFAULT="golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da github.com/versity/versitygw/cmd/versitygw@v1.8.0"
GO_TOOLS="${GO_TOOLS-$GO_TOOLS_DEFAULT}"

# sshd lives in /usr/sbin, go in /usr/local/go/bin; make sure both are looked at.
export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

command -v go >/dev/null 2>&1 || die "go is not installed (expected /usr/local/go/bin/go)"

gobin="$(go env GOBIN)"
if [[ -z "$gobin" ]]; then
	gobin="$(go env GOPATH)/bin"
fi
export PATH="$PATH:$gobin"

# ---- Debian packages -------------------------------------------------------

missing_pkgs=()
for entry in "${APT_TOOLS[@]}"; do
	cmd="${entry%%:*}"
	pkg="${entry#*:}"
	if ! have "$cmd"; then
		# de-duplicate (several commands may come from one package)
		case " ${missing_pkgs[*]-} " in
		*" $pkg "*) ;;
		*) missing_pkgs+=("$pkg") ;;
		esac
	fi
done

installed_something=0
if ((${#missing_pkgs[@]} > 0)); then
	if [[ "${SKIP_APT:-}" == 1 ]]; then
		die "missing packages: ${missing_pkgs[*]} (SKIP_APT=1)"
	fi
	sudo=()
	if [[ "$(id -u)" != 0 ]]; then
		have sudo || die "missing packages ${missing_pkgs[*]}; not root and no sudo"
		sudo=(sudo -n)
	fi
	log "installing: ${missing_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# One retry: a freshly booted machine sometimes races another apt run.
	if ! "${sudo[@]}" apt-get update -qq </dev/null; then
		sleep 5
		"${sudo[@]}" apt-get update -qq </dev/null
	fi
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing_pkgs[@]}" </dev/null >/dev/null
	installed_something=1
	for entry in "${APT_TOOLS[@]}"; do
		cmd="${entry%%:*}"
		have "$cmd" || die "$cmd still missing after installing ${entry#*:}"
	done
fi

# ---- Go tools --------------------------------------------------------------

for spec in $GO_TOOLS; do
	modpath="${spec%@*}"
	name="${modpath##*/}"
	if ! have "$name"; then
		log "go install $spec"
		# Outside the module so cairn's go.mod is neither read nor changed.
		(cd / && GOFLAGS=-buildvcs=false go install "$spec")
		installed_something=1
		have "$name" || die "$name not on PATH after go install (GOBIN=$gobin)"
	fi
done

# sshd refuses to start without its privilege-separation directory.
if [[ "$(id -u)" == 0 ]]; then
	mkdir -p /run/sshd
fi

# ---- report ----------------------------------------------------------------

if ((installed_something == 0)) && [[ "${VERBOSE:-}" != 1 && "${CI:-}" != true ]]; then
	log "all tools present"
	exit 0
fi

version_of() {
	local cmd=$1 out
	case "$cmd" in
	go) out="$(go version)" ;;
	restic) out="$(restic version)" ;;
	rclone) out="$(rclone version | sed -n 1p || true)" ;;
	sshd) out="$(dpkg-query -W -f='openssh-server ${Version}' openssh-server 2>/dev/null || echo present)" ;;
	ssh) out="$(ssh -V 2>&1)" ;;
	fusermount3) out="$(fusermount3 --version 2>&1 | sed -n 1p || true)" ;;
	setfattr) out="$(setfattr --version 2>&1 | sed -n 1p || true)" ;;
	spin) out="$(spin -V 2>&1 | sed -n 1p || true)" ;;
	make) out="$(make --version | sed -n 1p || true)" ;;
	git) out="$(git --version)" ;;
	benchstat) out="$(go version -m "$(command -v benchstat)" 2>/dev/null | awk '$1=="mod"{print $2" "$3; exit}')" ;;
	*) out="$(command -v "$cmd")" ;;
	esac
	printf '  %-12s %s\n' "$cmd" "${out:-present}"
}

echo "install-deps: tool versions"
for cmd in go restic rclone sshd ssh fusermount3 setfattr spin make git; do
	version_of "$cmd"
done
for spec in $GO_TOOLS; do
	modpath="${spec%@*}"
	version_of "${modpath##*/}"
done
