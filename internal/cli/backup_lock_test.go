package cli

import (
	"bytes"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
)

// repoNames returns the valid file names (64 hex digits: no temp files)
// anywhere under the directory sub of a local repository.
func repoNames(t *testing.T, repoDir, sub string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(repoDir, sub), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && core.IsValidName(d.Name()) {
			out = append(out, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBackupLockLostBeforeSnapshot (docs/concurrency.md I5, "backup stops
// before its snapshot"): a backup whose lock file is removed (as another
// host's stale-lock removal would) commits nothing more:
//
//   - "snapshot": removed after its last index file was written (during
//     backup.after-index-upload=sleep(3s), i.e. after that write's own lock
//     check and before the snapshot's): the snapshot's pre-commit check
//     (commitSnapshot, internal/cli/backup.go) fails with "backup not
//     committed: lock lost"; no snapshot, no lock left, and the repository
//     checks clean (the packs are indexed, merely unreferenced).
//   - "index": removed after its first pack was stored, before any index
//     file (during backup.after-pack-upload=sleep(3s)@1; the final index
//     write waits for that upload): the saver's check before the index
//     write (docs/concurrency.md F11 (3)) fails; no index file and no
//     snapshot; check is clean (the packs are unindexed additional files).
//   - "control": the "snapshot" run with its lock left alone writes its
//     snapshot, exits 0, and restores.
//
// How it can fail: if commitSnapshot did not call lock.Check, or Check did
// not stat the lock file (trusting its in-memory state until the next
// refresh, 5 min away), the "snapshot" backup would save its snapshot and
// exit 0 (shown by moving its sleep to backup.before-snapshot, which fires
// after the check: the test then fails with "exited 0"). If the removal
// landed before the final index write instead (failpoint at the wrong
// step), its message would be the saver's, not "backup not committed". If
// the saver wrote index files unchecked, the "index" backup would write an
// index file and then fail only at the snapshot, and the test fails on the
// index count and the message. The control fails if the failpoint's sleep
// itself broke the backup.
//
// The three run at once. The test removes a lock as soon as it sees the
// backup's index file (or pack), polling every 5 ms, well inside the 3 s
// sleep; no duration is asserted.
func TestBackupLockLostBeforeSnapshot(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(5, 5))
	for i, name := range []string{"a", "b", "sub/c"} {
		buf := make([]byte, 40<<10+i*9000)
		for j := range buf {
			buf[j] = byte(rnd.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, name), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	type run struct {
		name     string
		failpt   string
		removeAt string // lock removed once this directory holds a file; "": never
		want     []string
		indexed  bool // index files expected afterwards

		repoDir  string
		cmd      *exec.Cmd
		out      bytes.Buffer
		done     chan error
		exited   bool
		lockName string
	}
	runs := []*run{
		{name: "snapshot", failpt: "backup.after-index-upload=sleep(3s)", removeAt: "index", indexed: true,
			want: []string{"backup not committed", "lock lost", "was removed by another process"}},
		{name: "index", failpt: "backup.after-pack-upload=sleep(3s)@1", removeAt: "data",
			want: []string{"no snapshot saved", "write index", "lock lost", "was removed by another process"}},
		{name: "control", failpt: "backup.after-index-upload=sleep(3s)", indexed: true},
	}
	for _, r := range runs {
		r.repoDir = filepath.Join(tmp, r.name)
		mustCairn(t, "-r", r.repoDir, "init")
		if n := len(repoNames(t, r.repoDir, "index")) + len(repoNames(t, r.repoDir, "data")) + len(repoNames(t, r.repoDir, "snapshots")); n != 0 {
			t.Fatalf("%s: fresh repository has %d index, data or snapshot files", r.name, n)
		}
	}
	for _, r := range runs {
		r.done = make(chan error, 1)
		r.cmd = cairnProcess(t, []string{"CAIRN_FAILPOINTS=" + r.failpt}, "-r", r.repoDir, "backup", "--host", "h", src)
		r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { r.done <- r.cmd.Wait() }()
	}
	t.Cleanup(func() { // on failure: no child left behind
		for _, r := range runs {
			if !r.exited {
				_ = r.cmd.Process.Kill()
				<-r.done
			}
		}
	})

	// For each backup to be broken: wait for its lock file, then for the
	// first file in removeAt (its index file or pack, stored after the
	// lock was taken; the process now sleeps in its failpoint), then remove
	// the lock file.
	deadline := time.Now().Add(time.Minute) // hang guard only
	for {
		pending := 0
		for _, r := range runs {
			if r.removeAt == "" || r.lockName != "" {
				continue
			}
			pending++
			select {
			case err := <-r.done:
				r.exited = true
				t.Fatalf("%s: backup ended (%v) before its lock could be removed:\n%s", r.name, err, r.out.String())
			default:
			}
			locks := repoNames(t, r.repoDir, "locks")
			if len(locks) > 1 {
				t.Fatalf("%s: %d lock files, want only the backup's", r.name, len(locks))
			}
			if len(locks) == 1 && len(repoNames(t, r.repoDir, r.removeAt)) > 0 {
				if err := os.Remove(filepath.Join(r.repoDir, "locks", locks[0])); err != nil {
					t.Fatal(err)
				}
				r.lockName = locks[0]
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("backups did not reach their failpoints") // output: racy to read while they run
		}
		time.Sleep(5 * time.Millisecond)
	}

	for _, r := range runs {
		err := <-r.done
		r.exited = true
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: wait: %v", r.name, err)
		}
		out := r.out.String()
		snaps := snapshotIDs(t, r.repoDir)
		if r.removeAt == "" {
			if code != 0 || len(snaps) != 1 {
				t.Fatalf("%s: exit %d, snapshots %v (want 0 and one):\n%s", r.name, code, snaps, out)
			}
		} else {
			if code == 0 {
				t.Fatalf("%s: backup whose lock was removed exited 0:\n%s", r.name, out)
			}
			for _, w := range append(r.want, r.lockName[:8]) {
				if !strings.Contains(out, w) {
					t.Fatalf("%s: backup output lacks %q (exit %d):\n%s", r.name, w, code, out)
				}
			}
			if len(snaps) != 0 {
				t.Fatalf("%s: backup with a lost lock wrote snapshots %v:\n%s", r.name, snaps, out)
			}
		}
		if n := len(repoNames(t, r.repoDir, "snapshots")); n != len(snaps) {
			t.Fatalf("%s: %d files in snapshots/, %d snapshots listed", r.name, n, len(snaps))
		}
		// a lost lock is not re-created (F3), and a released one is gone
		if locks := repoNames(t, r.repoDir, "locks"); len(locks) != 0 {
			t.Fatalf("%s: lock files left: %v", r.name, locks)
		}
		if n := len(repoNames(t, r.repoDir, "index")); (n > 0) != r.indexed {
			t.Fatalf("%s: %d index files, want some: %v\n%s", r.name, n, r.indexed, out)
		}
		if len(repoNames(t, r.repoDir, "data")) == 0 {
			t.Fatalf("%s: no pack stored", r.name)
		}
		// what a stopped backup leaves is at worst unreferenced: no error
		assertClean(t, r.repoDir, "--read-data")
	}

	// the control restores what was backed up
	ctl := runs[2]
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", ctl.repoDir, "restore", "latest", "--target", dst, "--verify")
	for _, name := range []string{"a", "b", "sub/c"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(dst, src, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("restored %s differs (%v)", name, err)
		}
	}
}
