package cli

// The stress suite runs many cairn (and restic) processes against one
// repository at once, with kills and faults, and then verifies everything:
// cairn check --read-data and restic check --read-data are clean, and every
// snapshot a command acknowledged (and no one forgot on purpose) restores
// byte-identically. Short in CI; CAIRN_STRESS_LONG=1 (make stress) runs
// longer.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testutil"
)

func stressRounds(short, long int) int {
	if os.Getenv("CAIRN_STRESS_LONG") != "" {
		return long
	}
	return short
}

// ledger records acknowledged snapshots and the source each one saved.
type ledger struct {
	mu      sync.Mutex        // guards acked, forgotten
	acked   map[string]string // snapshot ID -> source dir
	forgot  map[string]bool
	backups int
	kills   int
	faults  int
}

func newLedger() *ledger { return &ledger{acked: map[string]string{}, forgot: map[string]bool{}} }

func (l *ledger) ack(id, src string) {
	l.mu.Lock()
	l.acked[id] = src
	l.backups++
	l.mu.Unlock()
}

// makeSources creates n immutable source trees sharing much of their data.
func makeSources(t *testing.T, dir string, n int, seed uint64) []string {
	rnd := rand.New(rand.NewPCG(seed, 99))
	shared := make([][]byte, 6)
	for i := range shared {
		shared[i] = make([]byte, 100<<10+rnd.IntN(1<<20))
		for j := range shared[i] {
			shared[i][j] = byte(rnd.Uint32())
		}
	}
	var out []string
	for k := 0; k < n; k++ {
		src := filepath.Join(dir, fmt.Sprintf("src%d", k))
		os.MkdirAll(filepath.Join(src, "sub"), 0o755)
		for i, s := range shared {
			if (i+k)%2 == 0 {
				os.WriteFile(filepath.Join(src, fmt.Sprintf("shared%d", i)), s, 0o644)
			}
		}
		own := make([]byte, 50<<10+rnd.IntN(300<<10))
		for j := range own {
			own[j] = byte(rnd.Uint32())
		}
		os.WriteFile(filepath.Join(src, "sub", "own"), own, 0o644)
		os.WriteFile(filepath.Join(src, "small"), []byte(fmt.Sprintf("source %d\n", k)), 0o644)
		out = append(out, src)
	}
	return out
}

// backupProcess runs one cairn backup as a process and records the
// snapshot in the ledger when it reports one.
func backupProcess(t *testing.T, l *ledger, repo, src, host string, env ...string) (int, string) {
	return backupProcessFlags(t, l, repo, src, host, nil, env...)
}

// backupProcessFlags is backupProcess with extra global flags.
func backupProcessFlags(t *testing.T, l *ledger, repo, src, host string, flags []string, env ...string) (int, string) {
	args := append(append([]string{"-r", repo}, flags...), "backup", "--json", "--host", host, src)
	code, out := runProcess(t, env, args...)
	for _, line := range strings.Split(out, "\n") {
		var s backupSummaryJSON
		if json.Unmarshal([]byte(line), &s) == nil && s.MessageType == "summary" && s.SnapshotID != "" {
			if code != 0 {
				t.Errorf("backup printed a summary but exited %d: %s", code, out)
			}
			l.ack(s.SnapshotID, src)
		}
	}
	return code, out
}

// verifyAll checks the repository with cairn and restic and restores every
// acknowledged snapshot that was not forgotten on purpose.
func verifyAll(t *testing.T, l *ledger, repo, scratch string) {
	t.Helper()
	mustCairn(t, "-r", repo, "unlock")
	if r := cairn(t, "-r", repo, "check", "--read-data"); r.code != 0 {
		t.Fatalf("cairn check --read-data: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if _, err := exec.LookPath("restic"); err == nil || testutil.InCI() {
		if out := testutil.RunRestic(t, repo, testPassword, "check", "--read-data"); !strings.Contains(string(out), "no errors were found") {
			t.Fatalf("restic check: %s", out)
		}
	}
	all := snapshotIDs(t, repo)
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, src := range l.acked {
		if l.forgot[id] {
			continue
		}
		found := false // restic acknowledges with a short ID
		for _, full := range all {
			found = found || strings.HasPrefix(full, id)
		}
		if !found {
			t.Fatalf("acknowledged snapshot %s is gone (data loss)", id[:8])
		}
		dst := filepath.Join(scratch, "verify-"+id[:8])
		mustCairn(t, "-r", repo, "restore", id, "--target", dst)
		testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true, IgnoreDirMtime: true})
		os.RemoveAll(dst)
	}
	t.Logf("verified %d acknowledged snapshots (%d backups, %d kills, %d faults)", len(l.acked)-len(l.forgot), l.backups, l.kills, l.faults)
}

// TestStressConcurrentBackupsAndPrune: 8 backups at once into one
// repository, repeated, while forget and two-phase prune run.
func TestStressConcurrentBackupsAndPrune(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repo, "init")
	srcs := makeSources(t, tmp, 8, 1)
	l := newLedger()
	rounds := stressRounds(2, 10)
	rnd := rand.New(rand.NewPCG(7, 7))
	env := []string{"CAIRN_LOCK_REFRESH=1s", "CAIRN_LOCK_STALE_AFTER=20s"}
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		for k, src := range srcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// a backup that starts after the prune took its sweep's
				// exclusive lock waits for it, as a user's would with
				// --retry-lock (without, it is refused: ExitLocked)
				flags := []string{"--retry-lock", "2m"}
				if code, out := backupProcessFlags(t, l, repo, src, fmt.Sprintf("h%d", k), flags, env...); code != 0 {
					t.Errorf("backup %d: exit %d: %s", k, code, out)
				}
			}()
		}
		// forget a random acknowledged snapshot and prune while backups run
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.mu.Lock()
			var victim string
			for id := range l.acked {
				if !l.forgot[id] && rnd.IntN(3) == 0 {
					victim = id
					break
				}
			}
			if victim != "" {
				l.forgot[victim] = true
			}
			l.mu.Unlock()
			if victim != "" {
				if code, out := runProcess(t, env, "-r", repo, "forget", victim); code != 0 {
					t.Errorf("forget: exit %d: %s", code, out)
				}
			}
			code, out := runProcess(t, env, "-r", repo, "prune", "--keep-delete", "0", "--max-unused", "0%")
			if code != 0 && code != ExitLocked {
				t.Errorf("prune during backups: exit %d: %s", code, out)
			}
		}()
		wg.Wait()
	}
	// a final prune with nothing running sweeps everything marked
	mustCairn(t, "-r", repo, "prune", "--keep-delete", "0", "--max-unused", "0%")
	verifyAll(t, l, repo, tmp)
}

// TestStressTwoPrunes: two prunes at once never corrupt the repository.
func TestStressTwoPrunes(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repo, "init")
	srcs := makeSources(t, tmp, 4, 2)
	l := newLedger()
	for k, src := range srcs {
		backupProcess(t, l, repo, src, fmt.Sprintf("h%d", k))
	}
	for id := range l.acked {
		l.forgot[id] = true
		mustCairn(t, "-r", repo, "forget", id)
		break
	}
	for i := 0; i < stressRounds(2, 10); i++ {
		var wg sync.WaitGroup
		for p := 0; p < 2; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				args := []string{"-r", repo, "prune", "--keep-delete", "0", "--max-unused", "0%"}
				if p == 1 && i%2 == 1 {
					args = append(args, "--exclusive")
				}
				if code, out := runProcess(t, nil, args...); code != 0 && code != ExitLocked {
					t.Errorf("prune: exit %d: %s", code, out)
				}
			}()
		}
		wg.Wait()
	}
	verifyAll(t, l, repo, tmp)
}

// TestStressKillBackups kills backups with SIGKILL at every backup crash
// point and at random moments; nothing acknowledged is lost and the
// repository stays clean.
func TestStressKillBackups(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repo, "init", "--repository-version", "2")
	srcs := makeSources(t, tmp, 4, 3)
	l := newLedger()
	points := []string{"backup.before-pack-upload", "backup.after-pack-upload", "backup.after-index-upload", "backup.before-snapshot", "backup.after-snapshot", "lock.before-refresh"}
	rnd := rand.New(rand.NewPCG(11, 3))
	for i := 0; i < stressRounds(1, 5); i++ {
		for _, p := range points {
			src := srcs[rnd.IntN(len(srcs))]
			code, _ := backupProcess(t, l, repo, src, "killed", "CAIRN_FAILPOINTS="+p+"=kill", "CAIRN_LOCK_REFRESH=100ms")
			if code != 0 {
				l.mu.Lock()
				l.kills++
				l.mu.Unlock()
			}
		}
		// random-time kills
		for j := 0; j < 3; j++ {
			cmd := cairnProcess(t, nil, "-r", repo, "backup", "-q", "--host", "rk", srcs[j%len(srcs)])
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rnd.IntN(400)) * time.Millisecond)
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			l.kills++
		}
		mustCairn(t, "-r", repo, "unlock")
		// backups after kills still work and dedup against what is there
		for k, src := range srcs {
			if code, out := backupProcess(t, l, repo, src, fmt.Sprintf("ok%d", k)); code != 0 {
				t.Fatalf("backup after kills: %s", out)
			}
		}
	}
	mustCairn(t, "-r", repo, "prune", "--keep-delete", "0")
	verifyAll(t, l, repo, tmp)
}

// TestStressResticAndCairnTogether: a real restic backup runs while cairn
// prunes, and a cairn backup runs while restic prunes; restic never deletes
// a running cairn backup's data (cairn writes restic-format locks).
func TestStressResticAndCairnTogether(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repo, "init")
	srcs := makeSources(t, tmp, 4, 4)
	l := newLedger()
	for k, src := range srcs[:2] {
		backupProcess(t, l, repo, src, fmt.Sprintf("h%d", k))
	}
	for id := range l.acked {
		l.forgot[id] = true
		mustCairn(t, "-r", repo, "forget", id)
		break
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // restic backup during cairn prune
		defer wg.Done()
		out, err := testutil.RunResticErr(t, repo, testPassword, "backup", "--json", "--host", "restic", srcs[2])
		if err != nil {
			t.Errorf("restic backup: %v", err)
			return
		}
		for _, line := range strings.Split(string(out), "\n") {
			var s struct {
				MessageType string `json:"message_type"`
				SnapshotID  string `json:"snapshot_id"`
			}
			if json.Unmarshal([]byte(line), &s) == nil && s.MessageType == "summary" {
				l.ack(s.SnapshotID, srcs[2])
			}
		}
	}()
	go func() {
		defer wg.Done()
		code, out := runProcess(t, nil, "-r", repo, "prune", "--keep-delete", "0", "--max-unused", "0%")
		if code != 0 && code != ExitLocked {
			t.Errorf("cairn prune: exit %d: %s", code, out)
		}
	}()
	wg.Wait()
	// cairn backup (slowed at a failpoint) while restic prune tries to run
	cmd := cairnProcess(t, []string{"CAIRN_FAILPOINTS=backup.before-snapshot=sleep(3s)"}, "-r", repo, "backup", "--json", "--host", "slow", srcs[3])
	var outBuf strings.Builder
	cmd.Stdout = &outBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// wait until the backup holds its lock, then restic prune must refuse
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ents, _ := os.ReadDir(filepath.Join(repo, "locks")); len(ents) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cairn backup never locked the repository")
		}
	}
	if _, perr := testutil.RunResticErr(t, repo, testPassword, "prune"); perr == nil {
		t.Error("restic prune ran while a cairn backup held its lock (H15)")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("cairn backup during restic prune: %v", err)
	}
	for _, line := range strings.Split(outBuf.String(), "\n") {
		var s backupSummaryJSON
		if json.Unmarshal([]byte(line), &s) == nil && s.MessageType == "summary" {
			l.ack(s.SnapshotID, srcs[3])
		}
	}
	verifyAll(t, l, repo, tmp)
}
