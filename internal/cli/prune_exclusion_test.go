package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
)

// TestEnsureOnlyPrune: a prune's mark runs under a shared lock, so two
// prunes are kept apart by ensureOnlyPrune (I4: cairn prune vs cairn
// prune), which refuses when any other readable lock is a prune's (mark,
// sweep or exclusive) and ignores every other lock and the caller's own.
func TestEnsureOnlyPrune(t *testing.T) {
	repoDir := newCheckRepo(t)
	r := openTestRepo(t, repoDir)
	ctx := context.Background()
	own, _, err := r.Lock(ctx, false, repo.LockOptions{Op: "prune-mark"})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Unlock(ctx)
	if err := ensureOnlyPrune(ctx, r, own); err != nil {
		t.Fatalf("own lock alone: %v", err)
	}
	foreign := func(op string) core.ID {
		t.Helper()
		id, err := r.SaveJSONUnpacked(ctx, core.LockFile, repo.LockInfo{Time: time.Now(), Hostname: "elsewhere", PID: 4242, CairnOp: op})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	remove := func(id core.ID) {
		t.Helper()
		if err := os.Remove(filepath.Join(repoDir, "locks", id.String())); err != nil {
			t.Fatal(err)
		}
	}
	for _, op := range []string{"backup", "check", "restore", "", "forget"} {
		id := foreign(op)
		if err := ensureOnlyPrune(ctx, r, own); err != nil {
			t.Fatalf("a %q lock refused the prune: %v", op, err)
		}
		remove(id)
	}
	for _, op := range []string{"prune-mark", "prune-sweep", "prune"} {
		id := foreign(op)
		err := ensureOnlyPrune(ctx, r, own)
		var le *repo.LockError
		if !errors.As(err, &le) || len(le.Conflicts) != 1 || le.Conflicts[0].ID != id {
			t.Fatalf("another prune's %q lock: %v", op, err)
		}
		remove(id)
	}
}

// TestSecondPruneRefused: while one prune is in its mark phase (held by a
// failpoint before it writes its new index), a second prune exits with
// ExitLocked naming the first, and a backup runs beside it; the first
// prune then completes and the repository checks clean. Without
// ensureOnlyPrune both marks would run at once (shared locks).
func TestSecondPruneRefused(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	src := filepath.Join(tmp, "src")
	mustCairn(t, "-r", repoDir, "init")
	makeHistory(t, repoDir, src, historyTimes(4), 5)
	mustCairn(t, "-r", repoDir, "forget", "--keep-last", "1")

	out, done := startChild(t, []string{"CAIRN_FAILPOINTS=prune.index-write=sleep(4s)@1"}, "-r", repoDir, "prune", "--keep-delete", "0", "--max-unused", "0%")

	// wait for the first prune's mark lock
	r := openTestRepo(t, repoDir)
	deadline := time.Now().Add(time.Minute)
	for {
		locks, err := r.ListLocks(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held := false
		for _, l := range locks {
			held = held || l.Info.CairnOp == "prune-mark"
		}
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first prune took no lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := cairn(t, "-r", repoDir, "prune", "--keep-delete", "0")
	if res.code != ExitLocked || !strings.Contains(res.stderr, "prune-mark") {
		t.Fatalf("second prune while the first marks: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	mustCairn(t, "-r", repoDir, "backup", "-q", src)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("first prune: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("first prune did not finish")
	}
	if !strings.Contains(out.String(), "mark:") {
		t.Fatalf("first prune did not mark: %s", out.String())
	}
	mustCairn(t, "-r", repoDir, "check", "--read-data")
}

// TestSecondForgetRefused (F8): while one forget is removing snapshots (held
// by a failpoint after its first removal), a second forget exits with
// ExitLocked naming the first instead of applying its policy to the same
// listing; the first completes with its own policy's result.
func TestSecondForgetRefused(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	src := filepath.Join(tmp, "src")
	mustCairn(t, "-r", repoDir, "init")
	makeHistory(t, repoDir, src, historyTimes(5), 9)

	n0 := len(snapshotIDs(t, repoDir))
	out, done := startChild(t, []string{"CAIRN_FAILPOINTS=forget.after-first-remove=sleep(4s)"}, "-r", repoDir, "forget", "--keep-last", "3")

	// wait until the first forget has removed its first snapshot (it
	// removes two, sleeping after the first)
	deadline := time.Now().Add(time.Minute)
	for len(snapshotIDs(t, repoDir)) != n0-1 {
		if time.Now().After(deadline) {
			t.Fatal("first forget removed nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := cairn(t, "-r", repoDir, "forget", "--keep-last", "1")
	if res.code != ExitLocked || !strings.Contains(res.stderr, "forget") {
		t.Fatalf("second forget beside the first: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("first forget: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("first forget did not finish")
	}
	if n := len(snapshotIDs(t, repoDir)); n != n0-2 {
		t.Fatalf("%d snapshots after the first forget, want %d", n, n0-2)
	}
	// afterwards a forget runs normally
	mustCairn(t, "-r", repoDir, "forget", "--keep-last", "1", "--group-by", "")
	if n := len(snapshotIDs(t, repoDir)); n != 1 {
		t.Fatalf("%d snapshots after forget --keep-last 1, want 1", n)
	}
}

// startChild starts cairn as a child process; its combined output collects
// in out (read it only after done delivered), and it is killed at the end of
// the test if still running.
func startChild(t *testing.T, env []string, args ...string) (out *bytes.Buffer, done <-chan error) {
	t.Helper()
	cmd := cairnProcess(t, env, args...)
	out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return out, ch
}
