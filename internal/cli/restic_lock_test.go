package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// TestResticLockHonoured: a real restic 0.14 process holding its
// non-exclusive lock (a `backup --stdin` waiting for input) is read as a
// restic lock (not as an unreadable one, which would block everything),
// and cairn acts on it as on any shared lock: backups run beside it, the
// prune's mark runs and its sweep is deferred, `prune --exclusive` is
// refused, `unlock` keeps it, and no pack is deleted until restic is done;
// then the sweep runs and both tools check the repository clean.
func TestResticLockHonoured(t *testing.T) {
	testutil.RequireRestic(t)
	t0 := time.Now()
	cairnEnv(t)
	tmp := t.TempDir()
	srcs := makeSources(t, tmp, 3, 17)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	for _, src := range srcs[:2] {
		mustCairn(t, "-r", repoDir, "backup", "-q", src)
	}

	// restic backup --stdin holds its lock until its input ends
	cmd := testutil.ResticCommand(t, repoDir, testPassword, "backup", "--stdin", "--stdin-filename", "from-restic")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { err := cmd.Wait(); close(exited); done <- err }()
	t.Cleanup(func() { // on failure: restic is not left running
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
		}
	})
	if _, err := io.WriteString(stdin, strings.Repeat("restic stdin data\n", 1000)); err != nil {
		t.Fatal(err)
	}

	r := openTestRepo(t, repoDir)
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	var resticLock core.ID
	for resticLock.IsNull() {
		if time.Now().After(deadline) {
			t.Fatalf("restic took no lock: %s", out.String())
		}
		locks, err := r.ListLocks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range locks {
			if l.Err != nil {
				t.Fatalf("restic's lock %v is unreadable for cairn: %v", l.ID.Str(), l.Err)
			}
			if l.Info.PID == cmd.Process.Pid && l.Info.CairnOp == "" && !l.Info.Exclusive {
				resticLock = l.ID
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	packs := func() map[string]bool {
		t.Helper()
		m := map[string]bool{}
		err := filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				m[d.Name()] = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := packs()

	// a cairn backup runs beside restic's shared lock
	mustCairn(t, "-r", repoDir, "backup", "-q", srcs[2])
	// forget + prune: the mark runs, the sweep is deferred
	t.Logf("%v: restic holds lock %v", time.Since(t0), resticLock.Str())
	res := cairn(t, "-r", repoDir, "forget", "--group-by", "host", "--keep-last", "1", "--prune", "--keep-delete", "0", "--max-unused", "0%")
	if res.code != 0 || !strings.Contains(res.stdout+res.stderr, "sweep deferred") {
		t.Fatalf("forget --prune beside a restic lock: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	t.Logf("%v: forget --prune: %s", time.Since(t0), res.stdout)
	// --exclusive is refused, naming the lock
	res = cairn(t, "-r", repoDir, "prune", "--exclusive")
	if res.code != ExitLocked || !strings.Contains(res.stderr, "locked") {
		t.Fatalf("prune --exclusive beside a restic lock: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// unlock keeps the live restic lock
	mustCairn(t, "-r", repoDir, "unlock")
	if _, err := os.Stat(filepath.Join(repoDir, "locks", resticLock.String())); err != nil {
		t.Fatalf("unlock removed restic's live lock: %v", err)
	}
	for p := range before {
		if !packs()[p] {
			t.Fatalf("pack %s deleted while restic held its lock", p[:8])
		}
	}

	t.Logf("%v: exclusive refused, unlock kept the lock", time.Since(t0))
	// restic finishes; now the sweep runs
	stdin.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restic backup: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("restic backup did not finish")
	}
	t.Logf("%v: restic done", time.Since(t0))
	prune := mustCairn(t, "-r", repoDir, "prune", "--keep-delete", "0")
	after := packs()
	deleted := 0
	for p := range before {
		if !after[p] {
			deleted++
		}
	}
	if deleted == 0 {
		t.Fatalf("the sweep deleted nothing once restic was done:\n%s", prune)
	}
	t.Logf("%v: swept", time.Since(t0))
	mustCairn(t, "-r", repoDir, "check", "--read-data")
	t.Logf("%v: checked", time.Since(t0))
	if out := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data"); !strings.Contains(string(out), "no errors were found") {
		t.Fatalf("restic check: %s", out)
	}
}
