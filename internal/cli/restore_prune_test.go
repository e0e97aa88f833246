package cli

// Hazard H42 (readers during prune), invariant I3 of docs/concurrency.md: a
// restore holds a non-exclusive lock from before it loads the index until it
// has read its last pack, so no sweep (cairn's exclusive phase 2, `prune
// --exclusive`, restic's prune) can delete a pack it still needs; and a
// restore started while a sweep holds its exclusive lock is refused (or waits
// with --retry-lock) instead of reading a half-deleted repository.
//
// The restore is held at a deterministic point without a failpoint: its
// standard output is a pipe the test has filled to the brim, so the restore
// blocks in write(2) on its first line ("restoring ... to ..."), which it
// prints after it has taken its lock and loaded the index and before it reads
// any tree or data pack. Its lock refresher keeps running, as in a restore
// whose terminal is paused; draining the pipe lets it continue.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// rpHangGuard bounds every wait of these tests; it only turns a hang into a
// failure and is never reached when things work.
const rpHangGuard = 2 * time.Minute

// rpRepo is a repository with three snapshots of one changing directory. Only
// the last one (snap) survives `forget --keep-last 1`, and it shares keep1
// and sub/keep2 with the forgotten ones: before a prune the only copies of
// those files are in packs that also hold forgotten data (gone1, gone2), so
// prune with --max-unused 0% repacks them and wants to delete the old packs
// (needed), which a restore of snap loading the index before the prune reads.
type rpRepo struct {
	dir    string
	src    string // holds exactly the content of snap
	snap   string // ID of the kept snapshot
	needed map[string]bool
}

func newRestorePruneRepo(t *testing.T) rpRepo {
	t.Helper()
	cairnEnv(t)
	tmp := t.TempDir()
	rr := rpRepo{dir: filepath.Join(tmp, "repo"), src: filepath.Join(tmp, "src"), needed: map[string]bool{}}
	if err := os.MkdirAll(filepath.Join(rr.src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(42, 4242))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(rr.src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(name string) {
		if err := os.Remove(filepath.Join(rr.src, name)); err != nil {
			t.Fatal(err)
		}
	}
	backup := func() string {
		out := mustCairn(t, "-r", rr.dir, "backup", "--json", "--host", "h", rr.src)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var s backupSummaryJSON
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil || s.SnapshotID == "" {
			t.Fatalf("no backup summary: %v\n%s", err, out)
		}
		return s.SnapshotID
	}
	mustCairn(t, "-r", rr.dir, "init")
	// keep1 and keep2 are below the chunker's minimum chunk size: one blob
	// each, whose ID is the SHA-256 of the content
	keep1, keep2 := random(300<<10), random(300<<10)
	write("keep1", keep1)
	write("gone1", random(1500<<10))
	backup()
	remove("gone1")
	write("sub/keep2", keep2)
	write("gone2", random(1500<<10))
	backup()
	remove("gone2")
	write("keep3", random(200<<10))
	write("sub/note", []byte("third snapshot\n"))
	rr.snap = backup()

	r := openTestRepo(t, rr.dir)
	for _, c := range [][]byte{keep1, keep2} {
		loc, ok := r.Index().Lookup(core.BlobHandle{ID: core.Hash(c), Type: core.DataBlob})
		if !ok {
			t.Fatal("a file below the minimum chunk size is not stored as one blob")
		}
		rr.needed[loc.Pack.String()] = true
	}
	if len(rr.needed) != 2 {
		t.Fatalf("keep1 and keep2 share a pack (%v): the setup needs one pack per backup", rr.needed)
	}
	return rr
}

// rpPacks returns the names of the pack files in the local repository dir.
func rpPacks(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, p := range repoFiles(t, dir, core.PackFile) {
		out[filepath.Base(p)] = true
	}
	return out
}

// rpGone returns the members of before that are not in now.
func rpGone(before, now map[string]bool) []string {
	var gone []string
	for p := range before {
		if !now[p] {
			gone = append(gone, p)
		}
	}
	return gone
}

// rpChild is a cairn child process.
type rpChild struct {
	cmd    *exec.Cmd
	stdout *os.File     // read end of the stdout pipe (heldRestore only)
	out    bytes.Buffer // stderr (heldRestore) or combined output
	done   chan error
	exited bool
}

// rpStart starts cairn as a child process whose output is collected.
func rpStart(t *testing.T, env []string, args ...string) *rpChild {
	t.Helper()
	c := &rpChild{cmd: cairnProcess(t, env, args...), done: make(chan error, 1)}
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	c.start(t)
	return c
}

func (c *rpChild) start(t *testing.T) {
	t.Helper()
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() { // on failure: no frozen, held or running child left behind
		if !c.exited {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Process.Signal(syscall.SIGCONT)
			<-c.done
		}
		if c.stdout != nil {
			c.stdout.Close()
		}
	})
}

// exitedNow reports (without waiting) whether the child has exited.
func (c *rpChild) exitedNow() bool {
	if c.exited {
		return true
	}
	select {
	case err := <-c.done:
		c.exited = true
		c.done <- err // for wait
		return true
	default:
		return false
	}
}

// wait waits for the child's exit and returns its exit code.
func (c *rpChild) wait(t *testing.T, what string) int {
	t.Helper()
	select {
	case err := <-c.done:
		c.exited = true
		if err == nil {
			return 0
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		t.Fatalf("%s: %v", what, err)
	case <-time.After(rpHangGuard):
		t.Fatalf("%s did not exit within %v:\n%s", what, rpHangGuard, c.out.String())
	}
	return -1
}

// heldRestore starts `cairn args...` (a restore) with its standard output
// connected to a pipe that is already full, so that the child blocks on its
// first write to standard output until release is called.
func heldRestore(t *testing.T, args ...string) *rpChild {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// fill the pipe: a large write up to the deadline, then single bytes
	// until none fits, so that no partly filled page is left that the
	// child's short line could be merged into
	if err := w.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte{'.'}, 4<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("filling the pipe: %v", err)
	}
	for {
		if err := w.SetWriteDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte{'.'}); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
	}
	c := &rpChild{cmd: cairnProcess(t, nil, args...), stdout: r, done: make(chan error, 1)}
	// exec hands the write end over in blocking mode: the child's write
	// blocks in the kernel (observable in /proc) rather than failing
	c.cmd.Stdout, c.cmd.Stderr = w, &c.out
	c.start(t)
	w.Close()
	return c
}

// blockedOnStdout reports whether a thread of process pid is in a write(2)
// to file descriptor 1 (with a full pipe there, it is blocked in it).
func blockedOnStdout(t *testing.T, pid int) bool {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false // exited (the caller notices)
	}
	want := strconv.Itoa(int(unix.SYS_WRITE)) + " 0x1 "
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
		if errors.Is(err, os.ErrPermission) {
			t.Fatalf("cannot observe the child's system calls: %v", err)
		}
		if err == nil && strings.HasPrefix(string(b), want) {
			return true
		}
	}
	return false
}

// waitHeld waits until the held restore c blocks on its first line, which it
// writes after taking its lock and loading the index. With locked, c must
// then hold one non-exclusive "restore" lock; without, none.
func waitHeld(t *testing.T, c *rpChild, repoDir string, locked bool) {
	t.Helper()
	r := openTestRepo(t, repoDir)
	pid := c.cmd.Process.Pid
	deadline := time.Now().Add(rpHangGuard)
	for {
		if c.exitedNow() {
			t.Fatalf("the restore exited before it was held (exit %d):\n%s", c.wait(t, "restore"), c.out.String())
		}
		if blockedOnStdout(t, pid) {
			locks, err := r.ListLocks(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var own []string
			for _, l := range locks {
				if l.Info.PID == pid && l.Info.CairnOp == "restore" && !l.Info.Exclusive {
					own = append(own, l.ID.Str())
				}
			}
			if locked != (len(own) == 1) {
				t.Fatalf("held restore (locked=%v) has locks %v; all locks: %+v", locked, own, locks)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restore did not reach its first output line:\n%s", c.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// release drains the held restore's standard output, lets it finish and
// returns its exit code and its output (without the filler).
func (c *rpChild) release(t *testing.T) (int, string) {
	t.Helper()
	outc := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c.stdout) // EOF once the child has exited
		outc <- strings.TrimLeft(string(b), ".")
	}()
	code := c.wait(t, "restore")
	select {
	case out := <-outc:
		return code, out + c.out.String()
	case <-time.After(rpHangGuard):
		t.Fatal("the restore's standard output did not reach EOF")
	}
	return code, ""
}

var (
	rpMarkRE  = regexp.MustCompile(`mark: (\d+) packs marked for deletion, (\d+) repacked`)
	rpSweepRE = regexp.MustCompile(`sweep: (\d+) packs deleted`)
)

// rpCount returns the first number matched by re in out (-1 if none).
func rpCount(re *regexp.Regexp, out string, group int) int {
	m := re.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[group])
	return n
}

func rpHasRestic() bool {
	_, err := exec.LookPath("restic")
	return err == nil || testutil.InCI()
}

// TestRestoreDuringPrune: a restore of the kept snapshot is held after it
// has taken its lock and loaded the index, before it has read a pack. While
// it is held, forget --keep-last 1 --prune --keep-delete 0 and a plain prune
// mark (repack the packs holding keep1 and keep2, mark the old packs pending)
// but defer the sweep ("repository is in use", exit 0); prune --exclusive and
// restic prune are refused; no pack is deleted. The restore then completes
// byte-identically. Once it has finished, a prune sweeps the very packs the
// restore read, and the repository checks clean (cairn and restic) and
// restores again.
//
// This fails if the protocol is broken: a restore without a lock, a sweep
// under a non-exclusive lock, or a sweep that ignored non-exclusive locks
// would delete the old packs while the restore's index still points at them
// (TestRestoreNoLockDuringPrune shows that this breaks the restore).
func TestRestoreDuringPrune(t *testing.T) {
	rr := newRestorePruneRepo(t)
	dst := filepath.Join(t.TempDir(), "dst")
	restore := heldRestore(t, "-r", rr.dir, "restore", rr.snap, "--target", dst)
	waitHeld(t, restore, rr.dir, true)
	before := rpPacks(t, rr.dir)

	code, out := runProcess(t, nil, "-r", rr.dir, "forget", "--keep-last", "1", "--prune", "--keep-delete", "0", "--max-unused", "0%")
	if code != 0 {
		t.Fatalf("forget --prune during a restore: exit %d\n%s", code, out)
	}
	t.Logf("forget --prune while the restore is held:\n%s", out)
	if !strings.Contains(out, "sweep deferred: the repository is in use") || rpSweepRE.MatchString(out) {
		t.Fatalf("the sweep was not deferred:\n%s", out)
	}
	if marked, repacked := rpCount(rpMarkRE, out, 1), rpCount(rpMarkRE, out, 2); marked < len(rr.needed) || repacked < len(rr.needed) {
		t.Fatalf("mark did not repack the packs of keep1 and keep2 (marked %d, repacked %d):\n%s", marked, repacked, out)
	}
	if ids := snapshotIDs(t, rr.dir); len(ids) != 1 || ids[0] != rr.snap {
		t.Fatalf("snapshots after forget --keep-last 1: %v, want [%s]", ids, rr.snap)
	}
	assertNoneGone := func(what string) {
		t.Helper()
		if gone := rpGone(before, rpPacks(t, rr.dir)); len(gone) > 0 {
			t.Fatalf("%s deleted packs %v while a restore held its lock", what, gone)
		}
	}
	assertNoneGone("forget --prune")

	// a second two-phase prune: the same
	code, out = runProcess(t, nil, "-r", rr.dir, "prune", "--keep-delete", "0", "--max-unused", "0%")
	if code != 0 || !strings.Contains(out, "sweep deferred") || rpSweepRE.MatchString(out) {
		t.Fatalf("prune during a restore: exit %d\n%s", code, out)
	}
	assertNoneGone("prune")

	// a one-phase prune needs the exclusive lock from the start
	code, out = runProcess(t, nil, "-r", rr.dir, "prune", "--exclusive", "--max-unused", "0%")
	if code != ExitLocked || !strings.Contains(out, "repository is already locked") || !strings.Contains(out, "lock (restore)") {
		t.Fatalf("prune --exclusive during a restore: exit %d, want %d (locked by the restore)\n%s", code, ExitLocked, out)
	}
	assertNoneGone("prune --exclusive")

	// restic honours cairn's lock
	if rpHasRestic() {
		rout, err := testutil.RunResticErr(t, rr.dir, testPassword, "prune")
		var re *testutil.ResticError
		if !errors.As(err, &re) || !strings.Contains(string(re.Stderr), "locked") {
			t.Fatalf("restic prune during a cairn restore: %v\n%s", err, rout)
		}
		t.Logf("restic prune: %s", bytes.TrimSpace(re.Stderr))
		assertNoneGone("restic prune")
	}
	waitHeld(t, restore, rr.dir, true) // still held, lock still there

	code, out = restore.release(t)
	if code != 0 {
		t.Fatalf("restore during prune: exit %d\n%s", code, out)
	}
	testutil.CompareTrees(t, rr.src, filepath.Join(dst, rr.src), restoreCompare())

	// the restore's lock is gone: the sweep runs now, and deletes the packs
	// the restore read (so the prunes above did want them gone)
	r := openTestRepo(t, rr.dir)
	if locks, err := r.ListLocks(t.Context()); err != nil || len(locks) != 0 {
		t.Fatalf("locks after the restore: %+v %v", locks, err)
	}
	out = mustCairn(t, "-r", rr.dir, "prune", "--keep-delete", "0", "--max-unused", "0%")
	if n := rpCount(rpSweepRE, out, 1); n < len(rr.needed) {
		t.Fatalf("prune after the restore swept %d packs:\n%s", n, out)
	}
	after := rpPacks(t, rr.dir)
	for p := range rr.needed {
		if after[p] {
			t.Fatalf("pack %s of a forgotten snapshot, read by the restore, was not swept:\n%s", p[:8], out)
		}
	}
	assertClean(t, rr.dir, "--read-data")
	dst2 := filepath.Join(t.TempDir(), "dst2")
	mustCairn(t, "-r", rr.dir, "restore", rr.snap, "--target", dst2)
	testutil.CompareTrees(t, rr.src, filepath.Join(dst2, rr.src), restoreCompare())
	if rpHasRestic() {
		if rout := testutil.RunRestic(t, rr.dir, testPassword, "check", "--read-data"); !strings.Contains(string(rout), "no errors were found") {
			t.Fatalf("restic check --read-data: %s", rout)
		}
	}
}

// TestRestoreNoLockDuringPrune is the control for TestRestoreDuringPrune:
// the same restore with --no-lock (no lock, so nothing protects it) is held
// at the same point, the same forget --prune now sweeps at once and deletes
// the packs the restore's index points to, and the restore fails. It shows
// that the lock, not the timing or a cache, is what keeps the restore in
// TestRestoreDuringPrune working.
func TestRestoreNoLockDuringPrune(t *testing.T) {
	rr := newRestorePruneRepo(t)
	dst := filepath.Join(t.TempDir(), "dst")
	restore := heldRestore(t, "-r", rr.dir, "--no-lock", "restore", rr.snap, "--target", dst)
	waitHeld(t, restore, rr.dir, false)

	code, out := runProcess(t, nil, "-r", rr.dir, "forget", "--keep-last", "1", "--prune", "--keep-delete", "0", "--max-unused", "0%")
	if code != 0 || rpCount(rpSweepRE, out, 1) < len(rr.needed) {
		t.Fatalf("forget --prune beside an unlocked restore: exit %d\n%s", code, out)
	}
	now := rpPacks(t, rr.dir)
	for p := range rr.needed {
		if now[p] {
			t.Fatalf("pack %s was not swept:\n%s", p[:8], out)
		}
	}

	code, out = restore.release(t)
	if code == 0 {
		t.Fatalf("a restore without a lock survived the deletion of the packs it needs:\n%s", out)
	}
	if !strings.Contains(out, "could not be restored") {
		t.Fatalf("restore exit %d without naming the files it could not restore:\n%s", code, out)
	}
	t.Logf("unlocked restore after the sweep: exit %d\n%s", code, out)
	// the repository itself is fine
	assertClean(t, rr.dir, "--read-data")
}

// TestPruneSweepLocksOutRestore: a sweep is frozen (SIGSTOP during a sleep
// failpoint before its second pack deletion) holding its exclusive lock, with
// part of the packs deleted. A restore started meanwhile fails at once with
// ExitLocked, naming the sweep's lock, and restores nothing; a restore with
// --retry-lock does not finish while the sweep is frozen, and once the sweep
// has completed it restores the kept snapshot byte-identically from the new
// index.
func TestPruneSweepLocksOutRestore(t *testing.T) {
	rr := newRestorePruneRepo(t)
	mustCairn(t, "-r", rr.dir, "forget", "--keep-last", "1")
	before := rpPacks(t, rr.dir)
	sweep := rpStart(t, []string{"CAIRN_FAILPOINTS=prune.pack-delete=sleep(3s)@2"},
		"-r", rr.dir, "prune", "--keep-delete", "0", "--max-unused", "0%")

	// freeze it once its first pack deletion is done (the sleep before the
	// second one gives the poll its window)
	r := openTestRepo(t, rr.dir)
	pid := sweep.cmd.Process.Pid
	deadline := time.Now().Add(rpHangGuard)
	for {
		if sweep.exitedNow() {
			t.Fatalf("the prune ended before it could be frozen mid-sweep:\n%s", sweep.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the prune did not reach its sweep:\n%s", sweep.out.String())
		}
		if len(rpGone(before, rpPacks(t, rr.dir))) > 0 {
			if err := sweep.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for !rpStopped(pid) {
		if time.Now().After(deadline) {
			t.Fatal("the prune did not stop")
		}
		time.Sleep(time.Millisecond)
	}
	midGone := rpGone(before, rpPacks(t, rr.dir))
	locks, err := r.ListLocks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 1 || !locks[0].Info.Exclusive || locks[0].Info.CairnOp != "prune-sweep" || locks[0].Info.PID != pid {
		t.Fatalf("locks during the sweep: %+v", locks)
	}

	dst := filepath.Join(t.TempDir(), "dst")
	code, out := runProcess(t, nil, "-r", rr.dir, "restore", rr.snap, "--target", dst)
	if code != ExitLocked || !strings.Contains(out, "repository is already locked") || !strings.Contains(out, "exclusive lock (prune-sweep)") {
		t.Fatalf("restore during a sweep: exit %d, want %d (locked by the sweep)\n%s", code, ExitLocked, out)
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused restore touched its target: %v", err)
	}

	// --retry-lock: the restore waits (first retry after 5 s); it must not
	// finish, successfully or not, while the sweep is frozen
	dstRetry := filepath.Join(t.TempDir(), "dst-retry")
	waiting := rpStart(t, nil, "-r", rr.dir, "--retry-lock", "1m", "restore", rr.snap, "--target", dstRetry)
	for range 50 { // gives a broken lock check the chance to show
		if waiting.exitedNow() {
			t.Fatalf("restore --retry-lock finished while the sweep held its lock:\n%s", waiting.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := sweep.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if code := sweep.wait(t, "prune"); code != 0 {
		t.Fatalf("prune after SIGCONT: exit %d\n%s", code, sweep.out.String())
	}
	finalGone := rpGone(before, rpPacks(t, rr.dir))
	if n := rpCount(rpSweepRE, sweep.out.String(), 1); n != len(finalGone) || len(midGone) >= len(finalGone) {
		t.Fatalf("sweep reported %d deletions, %d packs gone at the freeze, %d in the end:\n%s", n, len(midGone), len(finalGone), sweep.out.String())
	}
	t.Logf("sweep: %d packs gone at the freeze, %d in the end", len(midGone), len(finalGone))
	if code := waiting.wait(t, "restore --retry-lock"); code != 0 {
		t.Fatalf("restore --retry-lock after the sweep: exit %d\n%s", code, waiting.out.String())
	}
	testutil.CompareTrees(t, rr.src, filepath.Join(dstRetry, rr.src), restoreCompare())
	assertClean(t, rr.dir, "--read-data")
}

// rpStopped reports whether process pid is stopped by a signal.
func rpStopped(pid int) bool {
	// SIGSTOP stops the threads one by one: the process is frozen once
	// every thread is, not when the first one (its leader) is.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || s[i+2] != 'T' {
			return false
		}
	}
	return true
}
