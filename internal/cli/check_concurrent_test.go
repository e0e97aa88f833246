package cli

// check holds a shared lock: it runs alongside backups (and they alongside
// it), and what running or interrupted backups and prune marks leave in the
// repository is not an error (docs/concurrency.md, sections 1 and 9).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
)

// unindexedPacks returns the packs in data/ of a local repository that no
// index file lists (r's index is brought up to date first).
func unindexedPacks(t *testing.T, r *repo.Repository) core.IDs {
	t.Helper()
	ctx := context.Background()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	indexed := r.Index().Packs()
	ids, err := r.ListIDs(ctx, core.PackFile)
	if err != nil {
		t.Fatal(err)
	}
	var out core.IDs
	for _, id := range ids {
		if !indexed.Has(id) {
			out = append(out, id)
		}
	}
	return out
}

// checkSummary returns the summary line of check --json output.
func checkSummary(t *testing.T, out string) checkSummaryJSON {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var sum checkSummaryJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.MessageType != "summary" {
		t.Fatalf("no JSON summary: %v\n%s", err, out)
	}
	return sum
}

// TestCheckWhileBackupsRun: three backups hold their (shared) locks and are
// frozen mid-run (SIGSTOP), some with packs uploaded but not indexed; check
// runs to the end without them moving (so it neither waits for them nor is
// refused), exits 0 and reports the unindexed packs as additional files. A
// backup started while check holds its lock completes (check blocks no
// backup), and its snapshot, written after check listed the snapshots, is
// not checked. The frozen backups then complete, and the repository is
// clean.
func TestCheckWhileBackupsRun(t *testing.T) {
	repoDir := newCheckRepo(t)
	ctx := context.Background()
	tmp := t.TempDir()
	srcs := makeSources(t, tmp, 4, 21)
	r := openTestRepo(t, repoDir)

	// every pack upload pauses, so that a backup holds uploaded but
	// unindexed packs for a while
	env := []string{"CAIRN_FAILPOINTS=backup.after-pack-upload=sleep(1s)"}
	type proc struct {
		cmd     *exec.Cmd
		out     bytes.Buffer
		done    chan error
		stopped bool
		exited  bool
	}
	procs := make([]*proc, 3)
	for i := range procs {
		p := &proc{done: make(chan error, 1)}
		p.cmd = cairnProcess(t, env, "-r", repoDir, "backup", "-q", "--host", fmt.Sprintf("b%d", i), srcs[i])
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		procs[i] = p
	}
	t.Cleanup(func() { // on failure: no frozen or running children left behind
		for _, p := range procs {
			if !p.exited {
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Process.Signal(syscall.SIGCONT)
				<-p.done
			}
		}
	})

	// freeze each backup once it holds its lock and some backup has an
	// unindexed pack (its own upload pauses 1 s, so it cannot finish in
	// between)
	deadline := time.Now().Add(2 * time.Minute) // hang guard only
	for {
		pending := 0
		for _, p := range procs {
			if p.stopped || p.exited {
				continue
			}
			select {
			case err := <-p.done:
				p.exited = true
				t.Fatalf("backup %d ended before it could be frozen (%v): %s", p.cmd.Process.Pid, err, p.out.String())
			default:
			}
			pending++
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("backups did not reach their first pack upload")
		}
		locks, err := r.ListLocks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(unindexedPacks(t, r)) > 0 {
			for _, l := range locks {
				for _, p := range procs {
					if !p.stopped && l.Info.CairnOp == "backup" && l.Info.PID == p.cmd.Process.Pid {
						if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
							t.Fatal(err)
						}
						p.stopped = true
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	// every thread of the frozen backups must have stopped before their
	// state is looked at
	for _, p := range procs {
		for p.stopped && !rpStopped(p.cmd.Process.Pid) {
			if time.Now().After(deadline) {
				t.Fatal("a backup did not stop after SIGSTOP")
			}
			time.Sleep(time.Millisecond)
		}
	}
	unindexed := unindexedPacks(t, r)
	if len(unindexed) == 0 {
		t.Fatal("no unindexed packs while the backups are frozen")
	}

	// while check holds its lock (after listing the snapshots): its lock is
	// shared, and a new backup runs to completion
	var extraCode int
	var extraOut string
	var checkLock *repo.LockEntry
	testHookCheckListed = func() {
		locks, err := r.ListLocks(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		for _, l := range locks {
			if l.Info.CairnOp == "check" {
				checkLock = &l
			}
		}
		extraCode, extraOut = runProcess(t, nil, "-r", repoDir, "backup", "-q", "--host", "during-check", srcs[3])
	}
	res := cairn(t, "-r", repoDir, "check", "--json")
	testHookCheckListed = nil
	if res.code != 0 {
		t.Fatalf("check while backups run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if checkLock == nil || checkLock.Info.Exclusive {
		t.Fatalf("check's lock: %+v", checkLock)
	}
	if extraCode != 0 {
		t.Fatalf("backup while check holds its lock: exit %d\n%s", extraCode, extraOut)
	}
	sum := checkSummary(t, res.stdout)
	if sum.NumErrors != 0 || sum.Snapshots != 1 || sum.OrphanedPacks != len(unindexed) {
		t.Fatalf("summary %+v (%d unindexed packs)\n%s", sum, len(unindexed), res.stdout)
	}
	out := mustCairn(t, "-r", repoDir, "check")
	for _, w := range []string{fmt.Sprintf("%d additional files were found in the repo", len(unindexed)), "non-critical", "no errors were found"} {
		if !strings.Contains(out, w) {
			t.Fatalf("check output lacks %q:\n%s", w, out)
		}
	}

	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		err := <-p.done
		p.exited = true
		if err != nil {
			t.Fatalf("frozen backup failed after check: %v\n%s", err, p.out.String())
		}
	}
	if n := len(snapshotIDs(t, repoDir)); n != 5 {
		t.Fatalf("%d snapshots, want 5", n)
	}
	assertClean(t, repoDir, "--read-data")
}

// TestCheckUnindexedPackIsNotAnError: a backup killed after uploading a
// pack, before writing its index, leaves an unindexed pack and its lock;
// check (no unlock needed) exits 0 and reports additional files, also after
// a prune mark recorded the pack as pending deletion. A pack missing from
// the repository while the index lists it still fails the check.
func TestCheckUnindexedPackIsNotAnError(t *testing.T) {
	repoDir := newCheckRepo(t)
	src := makeSources(t, t.TempDir(), 1, 5)[0]
	if code, out := runProcess(t, []string{"CAIRN_FAILPOINTS=backup.after-pack-upload=kill"}, "-r", repoDir, "backup", src); code == 0 {
		t.Fatalf("backup was not killed: %s", out)
	}
	r := openTestRepo(t, repoDir)
	orphans := unindexedPacks(t, r)
	if len(orphans) == 0 {
		t.Fatal("the killed backup left no unindexed pack")
	}

	out := mustCairn(t, "-r", repoDir, "check", "--read-data")
	for _, w := range []string{
		"pack " + orphans[0].String() + " is not referenced in any index",
		fmt.Sprintf("%d additional files were found in the repo", len(orphans)),
		"This is non-critical, you can run `cairn prune` to correct this.",
		"no errors were found",
	} {
		if !strings.Contains(out, w) {
			t.Fatalf("check output lacks %q:\n%s", w, out)
		}
	}

	// the mark phase of prune (the sweep cannot run: the killed backup's
	// lock is still there) records the pack as pending deletion
	mustCairn(t, "-r", repoDir, "prune")
	if got := unindexedPacks(t, r); len(got) != len(orphans) {
		t.Fatalf("prune removed unindexed packs: %v -> %v", orphans, got)
	}
	out = mustCairn(t, "-r", repoDir, "check")
	for _, w := range []string{"pack " + orphans[0].String() + " is not referenced in any index and was marked for deletion", "additional files", "no errors were found"} {
		if !strings.Contains(out, w) {
			t.Fatalf("check output after prune lacks %q:\n%s", w, out)
		}
	}

	// a real error still fails the check
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	var victim core.ID
	for id := range r.Index().Packs() {
		victim = id
		break
	}
	if err := os.Remove(filepath.Join(repoDir, "data", victim.String()[:2], victim.String())); err != nil {
		t.Fatal(err)
	}
	assertErrors(t, repoDir, nil, "pack "+victim.String()+" does not exist", "additional files")
}
