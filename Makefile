# cairn build and test entry points. `make test` is what CI runs (.ci/run).

SHELL       := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO        ?= go
PKGS      ?= ./...
# Extra flags for `go test` (CI passes -count=1 so no result comes from the cache).
GOTESTFLAGS ?=
TESTTIMEOUT ?= 25m
# Per-target time of the short fuzz pass (scripts/fuzz-short.sh).
FUZZTIME  ?= 5s
# Platforms that must build and vet besides linux/amd64 (make cross). Only
# Linux is tested; test files that only make sense there say //go:build linux.
CROSS     ?= darwin/arm64 darwin/amd64 freebsd/amd64 linux/386 linux/arm64
# Benchmarks: pattern, repetitions, and where the results are written.
BENCH     ?= .
BENCHCOUNT ?= 6
BENCHOUT  ?= bin/bench.txt

export FUZZTIME

.PHONY: all build check cross deps test fmt-check vet unit nocgo fuzz stress bench clean

all: build

# check: the README's test command — install every tool the tests need,
# check that the other platforms build, then test.
check: deps cross test

deps:
	bash scripts/install-deps.sh </dev/null


build:
	$(GO) build -o bin/cairn ./cmd/cairn

# Order: cheap static checks, the fuzz pass, then the full test run, so that
# go test's package summary is the last thing printed.
test: fmt-check vet fuzz nocgo unit

fmt-check:
	@files="$$(find . \( -name testdata -o -name vendor -o -name bin -o -name '.?*' \) -prune -o \
		-type f -name '*.go' -print | LC_ALL=C sort | xargs -r gofmt -l)"; \
	if [ -n "$$files" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w on them):"; \
		echo "$$files" | sed 's/^/  /'; \
		exit 1; \
	fi; \
	echo "gofmt: ok"

vet:
	$(GO) vet $(PKGS)

# cross: go build and go vet (which also compiles the tests) for every
# platform in CROSS.
cross:
	@for p in $(CROSS); do \
		echo "cross: $$p"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build $(PKGS); \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet $(PKGS); \
	done; \
	echo "cross: ok"

# nocgo: the repository package again without cgo, where blobs are
# compressed by the pure-Go encoder instead of libzstd (zstd_nocgo.go).
nocgo:
	CGO_ENABLED=0 $(GO) test -timeout $(TESTTIMEOUT) $(GOTESTFLAGS) ./internal/repo/...

unit:
	$(GO) test -race -timeout $(TESTTIMEOUT) $(GOTESTFLAGS) $(PKGS)

fuzz:
	bash scripts/fuzz-short.sh

# The stress suite at full length (CI runs a short version of the same
# tests as part of `make test`): concurrent backups, prunes, kills, faults.
stress:
	CAIRN_STRESS_LONG=1 $(GO) test -race -timeout 120m -run 'Stress|CrashPoints' $(GOTESTFLAGS) $(PKGS)

bench:
	@mkdir -p $(dir $(BENCHOUT))
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCHCOUNT) $(PKGS) | tee $(BENCHOUT)
	@if command -v benchstat >/dev/null 2>&1; then benchstat $(BENCHOUT); \
	else echo "benchstat not installed (scripts/install-deps.sh installs it)"; fi

clean:
	rm -rf bin
