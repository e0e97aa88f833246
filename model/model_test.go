// Package model holds the Promela model of cairn's lock protocol and two-phase prune
// (prune.pml) and a test that model-checks it with spin. See docs/concurrency.md.
package model

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// panResult is what a pan run reported.
type panResult struct {
	Errors    int
	States    float64 // states stored
	Depth     int
	Complete  bool   // the search was exhaustive (no memory or depth cut-off)
	Violation string // first assertion violation, if any
	Output    string
}

var (
	reErrors    = regexp.MustCompile(`depth reached (\d+), errors: (\d+)`)
	reStates    = regexp.MustCompile(`(?m)^\s*([0-9.e+]+) states, stored`)
	reViolation = regexp.MustCompile(`pan:1: (.*) \(at depth`)
)

func parsePan(out string) (panResult, error) {
	r := panResult{Output: out}
	m := reErrors.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("parse pan output: no \"errors:\" line")
	}
	r.Depth, _ = strconv.Atoi(m[1])
	r.Errors, _ = strconv.Atoi(m[2])
	s := reStates.FindStringSubmatch(out)
	if s == nil {
		return r, errors.New("parse pan output: no \"states, stored\" line")
	}
	v, err := strconv.ParseFloat(s[1], 64)
	if err != nil {
		return r, fmt.Errorf("parse pan output: states %q: %w", s[1], err)
	}
	r.States = v
	r.Complete = !strings.Contains(out, "Search not completed") &&
		!strings.Contains(out, "reached -DMEMLIM bound") &&
		!strings.Contains(out, "max search depth too small")
	if vm := reViolation.FindStringSubmatch(out); vm != nil {
		r.Violation = vm[1]
	}
	return r, nil
}

// tool returns the path of a program the test needs. When it is missing the test
// is skipped, except under CI=true, where it fails.
func tool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found in PATH (required when CI=true; install it, e.g. apt-get install -y spin gcc)", strings.Join(names, " or "))
	}
	t.Skipf("%s not found in PATH", strings.Join(names, " or "))
	return ""
}

// runModel generates pan for prune.pml with the given -D options, compiles it for an
// exhaustive safety search and runs it.
func runModel(ctx context.Context, t *testing.T, spin, cc string, defines []string, long bool) panResult {
	t.Helper()
	src, err := os.ReadFile("prune.pml")
	if err != nil {
		t.Fatalf("read model: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prune.pml"), src, 0o644); err != nil {
		t.Fatalf("copy model: %v", err)
	}
	run := func(name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(spin, append(append([]string{}, defines...), "-a", "prune.pml")...)
	// Short runs: -O0, because compiling pan with optimisation takes longer than the search.
	opt, memlim := "-O0", "-DMEMLIM=2048"
	if long {
		opt, memlim = "-O2", "-DMEMLIM=16000"
	}
	run(cc, opt, "-DSAFETY", "-DCOLLAPSE", memlim, "-o", "pan", "pan.c")
	// pan stops at the first error; -m: depth bound far above the model's depth.
	out := run(filepath.Join(dir, "pan"), "-m100000", "-w22")
	res, err := parsePan(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return res
}

type modelCase struct {
	name    string
	defines []string
	// wantViolation: the run must end with an assertion violation (a broken variant,
	// or a reachability probe); otherwise it must be exhaustive and error free.
	wantViolation bool
}

// shortCases run in seconds. The documented exhaustive runs (docs/concurrency.md, section
// 13.2) take minutes to tens of minutes and up to 9 GB; they run with CAIRN_MODEL_LONG=1
// (go test -timeout 4h).
var shortCases = []modelCase{
	// The protocol: cairn backup + cairn prune (sweep, mark, sweep) + unlock + suspension.
	{"safe/cairn-backup", []string{"-DNO_RB", "-DNO_FG"}, false},
	// Deliberately broken variants: spin must find the counterexample.
	{"broken/sweep-non-exclusive", []string{"-DBUG_SWEEP_NONEXCL", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/incremental-by-time", []string{"-DBUG_INCR_BY_TIME", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/refresh-without-check", []string{"-DBUG_REFRESH_NOCHECK", "-DNO_I5", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/mark-deletes-orphans", []string{"-DBUG_MARK_DELETES_ORPHANS", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/restic-resumes-after-unlock", []string{"-DRESTIC_SUSPEND", "-DNO_CB", "-DNO_FG"}, true},
	// The check placement of internal/prune with one check before a series of index writes
	// or index deletions (docs/concurrency.md F11), and the placement that fixes it.
	{"broken/one-check-per-series", []string{"-DCODE_CHECKS", "-DNO_FG"}, true},
	{"safe/minimal-checks", []string{"-DMINIMAL_CHECKS", "-DNO_RB", "-DNO_FG"}, false},
	// Reachability probes: the safe model does reach the situations it is meant to cover.
	{"probe/sweep-recovers-pending", []string{"-DPROBE_RECOVER", "-DNO_FG"}, true},
	{"probe/backup-aborts-after-lock-loss", []string{"-DPROBE_BACKUP_ABORT", "-DNO_RB", "-DNO_FG"}, true},
}

var longCases = []modelCase{
	{"safe/core", nil, false},
	{"safe/core-sweep-full", []string{"-DSWEEP_FULL"}, false},
	{"safe/two-prunes", []string{"-DWITH_PB", "-DNO_RB", "-DNO_FG"}, false},
	{"safe/restic-prune", []string{"-DWITH_RP", "-DNO_FG"}, false},
	{"safe/forget-any", []string{"-DFORGET_ANY"}, false},
	{"safe/three-suspensions", []string{"-DNSUSP=3", "-DNO_RB", "-DNO_FG"}, false},
	{"safe/mark-split-two-prunes", []string{"-DMARK_SPLIT", "-DWITH_PB", "-DNO_RB", "-DNO_FG"}, false},
	{"safe/minimal-checks-core", []string{"-DMINIMAL_CHECKS"}, false},
	{"safe/minimal-checks-restic", []string{"-DMINIMAL_CHECKS", "-DNO_FG"}, false},
	{"safe/full-one-suspension", []string{"-DFULL", "-DNSUSP=1", "-DNO_FG", "-DNO_RB"}, false},
	{"safe/minimal-checks-two-prunes", []string{"-DMINIMAL_CHECKS", "-DWITH_PB", "-DNO_RB", "-DNO_FG"}, false},
	{"safe/minimal-checks-restic-prune", []string{"-DMINIMAL_CHECKS", "-DWITH_RP", "-DNO_FG"}, false},
	{"broken/mark-index-series-one-check", []string{"-DMARK_SPLIT", "-DBUG_SERIES_ONE_CHECK", "-DNO_I5", "-DWITH_PB", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/sweep-index-write-unchecked", []string{"-DBUG_SWEEP_NO_WRITE_CHECK", "-DNO_I5", "-DWITH_PB", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/backup-index-unchecked", []string{"-DBUG_BACKUP_INDEX_UNCHECKED", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/sweep-index-delete-series-one-check", []string{"-DBUG_SWEEP_SERIES_ONE_CHECK", "-DSWEEP_DELETE_ONE_CHECK", "-DNO_FG"}, true},
	{"broken/no-freeze", []string{"-DBUG_NO_FREEZE", "-DNO_I5", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/unsound-stale", []string{"-DBUG_UNSOUND_STALE", "-DNO_I5", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/no-precommit", []string{"-DBUG_NO_PRECOMMIT", "-DNO_I5", "-DNO_RB", "-DNO_FG"}, true},
	{"broken/elsewhere-pending", []string{"-DBUG_ELSEWHERE_PENDING", "-DNO_CB"}, true},
	{"probe/orphan-delete", []string{"-DPROBE_ORPHAN_DELETE", "-DNO_RB", "-DNO_FG"}, true},
	{"probe/repacked-delete", []string{"-DPROBE_REPACKED_DELETE", "-DNO_RB", "-DNO_FG"}, true},
	{"probe/incremental-need-differs", []string{"-DPROBE_NEED_DIFF", "-DFORGET_ANY", "-DNO_RB"}, true},
}

func TestSpinModel(t *testing.T) {
	spin := tool(t, "spin")
	cc := tool(t, "gcc", "cc")
	cases := shortCases
	long := os.Getenv("CAIRN_MODEL_LONG") == "1"
	if long {
		cases = append(append([]modelCase{}, shortCases...), longCases...)
	}
	timeout := 10 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - 10*time.Second
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			res := runModel(ctx, t, spin, cc, tc.defines, long)
			t.Logf("%v: states stored %.0f, depth %d, errors %d, complete %v, violation %q",
				tc.defines, res.States, res.Depth, res.Errors, res.Complete, res.Violation)
			if tc.wantViolation {
				if res.Errors == 0 || res.Violation == "" {
					t.Fatalf("expected spin to find an assertion violation, got errors=%d\n%s", res.Errors, res.Output)
				}
				return
			}
			if res.Errors != 0 {
				t.Fatalf("spin found %d error(s): %s\n%s", res.Errors, res.Violation, res.Output)
			}
			if !res.Complete {
				t.Fatalf("search was not exhaustive\n%s", res.Output)
			}
		})
	}
}

func TestParsePan(t *testing.T) {
	out := `pan:1: assertion violated (REC==0) (at depth 284)
Warning: Search not completed
State-vector 296 byte, depth reached 429, errors: 1
 1.2e+08 states, stored
`
	r, err := parsePan(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 1 || r.Depth != 429 || r.States != 1.2e8 || r.Complete || r.Violation != "assertion violated (REC==0)" {
		t.Fatalf("parsePan = %+v", r)
	}
	if _, err := parsePan("garbage"); err == nil {
		t.Fatal("parsePan accepted output without an errors line")
	}
}
