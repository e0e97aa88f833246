package repo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

// raceTiming never refreshes during a test and skips the recheck wait on
// list-consistent backends (mem, local disks), where the protocol does not
// need it; elsewhere it waits 1 ms.
var raceTiming = LockTiming{StaleAfter: time.Hour, Refresh: 10 * time.Minute, RecheckWait: time.Millisecond}

// holdMonitor records who holds a lock according to the acquirers: a
// holder enters after Lock returned and leaves before Unlock, so the
// monitor's holders are always a subset of the real ones and any overlap it
// sees is a real violation of mutual exclusion (I4).
type holdMonitor struct {
	mu         sync.Mutex // guards excl, shared, violations
	excl       int
	shared     int
	violations []string
}

func (m *holdMonitor) enter(exclusive bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if exclusive {
		m.excl++
	} else {
		m.shared++
	}
	if m.excl > 1 || (m.excl == 1 && m.shared > 0) {
		m.violations = append(m.violations, fmt.Sprintf("%d exclusive and %d shared holders at once", m.excl, m.shared))
	}
}

func (m *holdMonitor) leave(exclusive bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if exclusive {
		m.excl--
	} else {
		m.shared--
	}
}

// acquireRetrying takes a lock, retrying refusals (ErrLocked) with a tiny
// random pause; it gives up after maxAttempts refusals.
func acquireRetrying(ctx context.Context, r *Repository, exclusive bool, rnd *rand.Rand, maxAttempts int) (*Lock, int, error) {
	for attempt := 1; ; attempt++ {
		l, _, err := r.Lock(ctx, exclusive, LockOptions{Op: "race", Timing: &raceTiming})
		if err == nil {
			return l, attempt, nil
		}
		if !errors.Is(err, ErrLocked) || attempt >= maxAttempts {
			return nil, attempt, err
		}
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Microsecond)
	}
}

// TestConcurrentLockAcquires (H06, I4): in every round several handles on
// one repository start taking exclusive and shared locks at the same
// instant. An exclusive lock is never held together with any other lock,
// and every acquirer eventually gets its lock (someone always wins).
func TestConcurrentLockAcquires(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		rounds int
		newBE  func(t *testing.T) (backend.Backend, func() backend.Backend)
	}{
		{"mem", 60, func(t *testing.T) (backend.Backend, func() backend.Backend) {
			be := mem.New()
			return be, func() backend.Backend { return be }
		}},
		{"local", 20, func(t *testing.T) (backend.Backend, func() backend.Backend) {
			dir := t.TempDir()
			be, err := local.Create(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			return be, func() backend.Backend {
				// a separate backend per handle, as separate processes have
				b, err := local.Open(ctx, dir)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, another := tc.newBE(t)
			first, err := Init(ctx, be, "secret", 2, testParams, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			const workers = 6
			repos := []*Repository{first}
			for len(repos) < workers {
				r, err := Open(ctx, another(), "secret", Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				repos = append(repos, r)
			}
			var mon holdMonitor
			exclWins, sharedWins, maxTries := 0, 0, 0
			var mu sync.Mutex // guards exclWins, sharedWins, maxTries
			for round := 0; round < tc.rounds; round++ {
				start := make(chan struct{})
				var wg sync.WaitGroup
				for w, r := range repos {
					// round 0 and every 4th: all exclusive; else a mix
					exclusive := round%4 == 0 || (w+round)%3 == 0
					rnd := rand.New(rand.NewPCG(uint64(round), uint64(w)))
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						l, tries, err := acquireRetrying(ctx, r, exclusive, rnd, 2000)
						if err != nil {
							t.Errorf("round %d worker %d (exclusive=%v): no lock after %d attempts: %v", round, w, exclusive, tries, err)
							return
						}
						mon.enter(exclusive)
						for i := 0; i < 3; i++ {
							runtime.Gosched()
						}
						mon.leave(exclusive)
						if err := l.Unlock(ctx); err != nil {
							t.Errorf("unlock: %v", err)
						}
						mu.Lock()
						if exclusive {
							exclWins++
						} else {
							sharedWins++
						}
						maxTries = max(maxTries, tries)
						mu.Unlock()
					}()
				}
				close(start)
				wg.Wait()
				if t.Failed() {
					break
				}
			}
			if len(mon.violations) > 0 {
				t.Fatalf("mutual exclusion violated %d times, first: %s", len(mon.violations), mon.violations[0])
			}
			t.Logf("%d exclusive and %d shared acquisitions; at most %d attempts for one", exclWins, sharedWins, maxTries)
			if ids, err := first.ListIDs(ctx, core.LockFile); err != nil || len(ids) != 0 {
				t.Fatalf("lock files left behind: %v %v", ids, err)
			}
		})
	}
}

const lockRaceChildEnv = "CAIRN_TEST_LOCK_RACE_CHILD"

// TestConcurrentLockAcquiresProcesses (H06, I4) runs the race between real
// processes (this test binary re-executed) on a local repository. Each child
// appends "A" to a shared O_APPEND log after it got a lock and "R" before it
// releases it; a conflicting pair of open intervals in the log order is a
// real overlap of held locks.
func TestConcurrentLockAcquiresProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	be, err := local.Create(ctx, repoDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(ctx, be, "secret", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	logPath := filepath.Join(dir, "holds.log")
	const children, iterations = 3, 30
	var wg sync.WaitGroup
	for c := 0; c < children; c++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLockRaceChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), lockRaceChildEnv+"="+strings.Join([]string{repoDir, logPath, strconv.Itoa(c), strconv.Itoa(iterations)}, "|"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("child %d: %v\n%s", c, err, out)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type holder struct{ exclusive bool }
	open := map[string]holder{}
	acquired := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var ev, who, kind string
		var iter int
		if _, err := fmt.Sscanf(sc.Text(), "%s %s %d %s", &ev, &who, &iter, &kind); err != nil {
			t.Fatalf("log line %d %q: %v", n, sc.Text(), err)
		}
		exclusive := kind == "E"
		switch ev {
		case "A":
			for other, h := range open {
				if exclusive || h.exclusive {
					t.Fatalf("log line %d: %s took a lock (exclusive=%v) while %s held one (exclusive=%v)", n, who, exclusive, other, h.exclusive)
				}
			}
			open[who] = holder{exclusive}
			acquired[who]++
		case "R":
			delete(open, who)
		default:
			t.Fatalf("log line %d: %q", n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acquired) != children {
		t.Fatalf("acquisitions per child: %v", acquired)
	}
	for who, n := range acquired {
		if n != iterations {
			t.Fatalf("child %s got %d of %d locks", who, n, iterations)
		}
	}
	if ids, err := r.ListIDs(ctx, core.LockFile); err != nil || len(ids) != 0 {
		t.Fatalf("lock files left behind: %v %v", ids, err)
	}
}

// TestLockRaceChild is the child of TestConcurrentLockAcquiresProcesses;
// it does nothing unless started by it.
func TestLockRaceChild(t *testing.T) {
	spec := os.Getenv(lockRaceChildEnv)
	if spec == "" {
		t.Skip("only run as a child process")
	}
	parts := strings.Split(spec, "|")
	if len(parts) != 4 {
		t.Fatalf("bad %s %q", lockRaceChildEnv, spec)
	}
	repoDir, logPath := parts[0], parts[1]
	child, _ := strconv.Atoi(parts[2])
	iterations, _ := strconv.Atoi(parts[3])
	ctx := context.Background()
	be, err := local.Open(ctx, repoDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, be, "secret", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	who := fmt.Sprintf("child%d/pid%d", child, os.Getpid())
	logLine := func(ev string, i int, exclusive bool) {
		kind := "S"
		if exclusive {
			kind = "E"
		}
		// one write call per line: O_APPEND keeps lines whole and ordered
		if _, err := io.WriteString(logf, fmt.Sprintf("%s %s %d %s\n", ev, who, i, kind)); err != nil {
			t.Fatal(err)
		}
	}
	rnd := rand.New(rand.NewPCG(uint64(child), 7))
	for i := 0; i < iterations; i++ {
		exclusive := rnd.IntN(2) == 0
		l, tries, err := acquireRetrying(ctx, r, exclusive, rnd, 5000)
		if err != nil {
			t.Fatalf("iteration %d: no lock after %d attempts: %v", i, tries, err)
		}
		logLine("A", i, exclusive)
		time.Sleep(time.Duration(rnd.IntN(500)) * time.Microsecond)
		logLine("R", i, exclusive)
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// vanishingLockBackend removes one lock file right after the first listing
// that reported it, so that it is gone when the lister loads it (H06: the
// lock was released between list and load).
type vanishingLockBackend struct {
	backend.Backend

	mu     sync.Mutex // guards victim, gone
	victim string
	gone   bool
}

func (b *vanishingLockBackend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	listed := false
	err := b.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		b.mu.Lock()
		listed = listed || (t == core.LockFile && fi.Name == b.victim)
		b.mu.Unlock()
		return fn(fi)
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if listed && !b.gone {
		b.gone = true
		if rerr := b.Backend.Remove(ctx, backend.Handle{Type: core.LockFile, Name: b.victim}); rerr != nil {
			return rerr
		}
	}
	return err
}

// TestLockVanishesBetweenListAndLoad (H06): a foreign exclusive lock file
// that is listed but released before it is loaded is skipped, neither an
// error nor a conflict; while it exists it does block.
func TestLockVanishesBetweenListAndLoad(t *testing.T) {
	ctx := context.Background()
	owner, raw := newTestRepo(t, 2, Options{})
	foreign := newLockInfo(true, "prune", time.Now())
	foreign.Hostname, foreign.PID = "elsewhere", 4242
	id, err := owner.SaveJSONUnpacked(ctx, core.LockFile, foreign)
	if err != nil {
		t.Fatal(err)
	}

	// control: while the file stays, it blocks
	if l, _, err := owner.Lock(ctx, false, LockOptions{Timing: &raceTiming}); !errors.Is(err, ErrLocked) {
		if err == nil {
			l.Unlock(ctx)
		}
		t.Fatalf("foreign exclusive lock did not block: %v", err)
	}

	vb := &vanishingLockBackend{Backend: raw, victim: id.String()}
	r, err := Open(ctx, vb, "secret", Options{})
	if err != nil {
		t.Fatal(err)
	}
	locks, err := r.ListLocks(ctx)
	if err != nil {
		t.Fatalf("a lock vanishing between list and load is an error: %v", err)
	}
	if !vb.gone {
		t.Fatal("test backend did not remove the lock")
	}
	if len(locks) != 0 {
		t.Fatalf("vanished lock reported: %+v", locks)
	}

	// the same during acquisition: the exclusive lock was released
	if _, err := owner.SaveJSONUnpacked(ctx, core.LockFile, foreign); err != nil {
		t.Fatal(err)
	}
	ids, err := owner.ListIDs(ctx, core.LockFile)
	if err != nil || len(ids) != 1 {
		t.Fatalf("lock files %v %v", ids, err)
	}
	vb.mu.Lock()
	vb.victim, vb.gone = ids[0].String(), false
	vb.mu.Unlock()
	l, _, err := r.Lock(ctx, true, LockOptions{Timing: &raceTiming})
	if err != nil {
		t.Fatalf("exclusive lock refused although the other lock vanished before it was loaded: %v", err)
	}
	if !vb.gone {
		t.Fatal("test backend did not remove the lock")
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// corruptingBackend alters every lock file it saves.
type corruptingBackend struct {
	backend.Backend
	mode string // "flip", "truncate", "empty", "drop" or "" (pass through)
}

func (b *corruptingBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if h.Type != core.LockFile || b.mode == "" {
		return b.Backend.Save(ctx, h, rd)
	}
	buf, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	switch b.mode {
	case "flip":
		buf[len(buf)/2] ^= 0x40
	case "truncate":
		buf = buf[:len(buf)/2]
	case "empty":
		buf = nil
	case "drop":
		return nil // acknowledged, never stored
	}
	return b.Backend.Save(ctx, h, backend.NewByteReader(buf))
}

// TestOwnLockVerifiedAfterWrite (H07, §4.3 step 4): a lock file that does
// not read back as written (damaged, truncated, empty or never stored)
// fails the acquisition with a clear error and leaves no lock file behind.
func TestOwnLockVerifiedAfterWrite(t *testing.T) {
	ctx := context.Background()
	_, raw := newTestRepo(t, 2, Options{})
	cb := &corruptingBackend{Backend: raw}
	r, err := Open(ctx, cb, "secret", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"flip", "truncate", "empty", "drop"} {
		for _, exclusive := range []bool{false, true} {
			cb.mode = mode
			l, _, err := r.Lock(ctx, exclusive, LockOptions{Timing: &raceTiming})
			if err == nil {
				l.Unlock(ctx)
				t.Fatalf("%s (exclusive=%v): lock whose file does not read back was taken", mode, exclusive)
			}
			if !errors.Is(err, ErrLockLost) || errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "own lock file") {
				t.Fatalf("%s (exclusive=%v): unclear error: %v", mode, exclusive, err)
			}
			t.Logf("%s: %v", mode, err)
			if ids, err := r.ListIDs(ctx, core.LockFile); err != nil || len(ids) != 0 {
				t.Fatalf("%s: bad lock file left behind: %v %v", mode, ids, err)
			}
		}
	}
	cb.mode = ""
	l, _, err := r.Lock(ctx, true, LockOptions{Timing: &raceTiming})
	if err != nil {
		t.Fatalf("intact write: %v", err)
	}
	l.Unlock(ctx)
}

func TestSameLockInfo(t *testing.T) {
	now := time.Now() // carries a monotonic reading, unlike a decoded time
	a := newLockInfo(true, "backup", now)
	b := a
	b.Time = now.Round(0).In(time.UTC)
	if !sameLockInfo(a, b) {
		t.Fatal("same instant in another location differs")
	}
	for name, change := range map[string]func(*LockInfo){
		"time":      func(l *LockInfo) { l.Time = l.Time.Add(time.Nanosecond) },
		"exclusive": func(l *LockInfo) { l.Exclusive = false },
		"pid":       func(l *LockInfo) { l.PID++ },
		"op":        func(l *LockInfo) { l.CairnOp = "prune" },
		"host":      func(l *LockInfo) { l.Hostname += "x" },
	} {
		c := a
		change(&c)
		if sameLockInfo(a, c) {
			t.Errorf("%s change not noticed", name)
		}
	}
}

// TestPIDRuleNeedsCairnFields (H04, I9, §4.7 (b), F2): the PID of a lock is
// judged only for a lock that records the observer's host name, PID
// namespace and boot ID.
func TestPIDRuleNeedsCairnFields(t *testing.T) {
	const host, ns, boot = "h", uint64(4026531836), "b00t"
	base := LockInfo{Hostname: host, PID: 1, CairnPIDNS: ns, CairnBootID: boot, CairnInstance: "i"}
	if !base.pidCheckable(host, ns, boot) {
		t.Fatal("own cairn lock not checkable by PID")
	}
	for name, c := range map[string]struct {
		li          func(LockInfo) LockInfo
		host, boot  string
		observerNS  uint64
		wantCheckOK bool
	}{
		"other host":         {func(l LockInfo) LockInfo { l.Hostname = "x"; return l }, host, boot, ns, false},
		"other PID ns":       {func(l LockInfo) LockInfo { l.CairnPIDNS = ns + 1; return l }, host, boot, ns, false},
		"other boot":         {func(l LockInfo) LockInfo { l.CairnBootID = "other"; return l }, host, boot, ns, false},
		"no boot ID":         {func(l LockInfo) LockInfo { l.CairnBootID = ""; return l }, host, boot, ns, false},
		"no PID ns":          {func(l LockInfo) LockInfo { l.CairnPIDNS = 0; return l }, host, boot, ns, false},
		"restic 0.14 lock":   {func(LockInfo) LockInfo { return LockInfo{Hostname: host, PID: 1} }, host, boot, ns, false},
		"observer unknown":   {func(l LockInfo) LockInfo { return l }, host, "", 0, false},
		"observer no boot":   {func(l LockInfo) LockInfo { return l }, host, "", ns, false},
		"observer no PID ns": {func(l LockInfo) LockInfo { return l }, host, boot, 0, false},
	} {
		if got := c.li(base).pidCheckable(c.host, c.observerNS, c.boot); got != c.wantCheckOK {
			t.Errorf("%s: checkable=%v", name, got)
		}
	}
}

// deadPID is above every Linux pid_max, so no process has it.
const deadPID = 1 << 30

// TestStaleBootIDAndResticLocks (H04, I9): with this machine's host name and
// a dead PID, a cairn lock from another boot and a restic 0.14 lock are not
// stale by PID (only by age), and unlock keeps them; a cairn lock of this
// boot and PID namespace is stale.
func TestStaleBootIDAndResticLocks(t *testing.T) {
	if machineBootID() == "" || pidNamespace() == 0 {
		t.Skip("no boot ID or PID namespace on this system: the PID rule never applies")
	}
	ctx := context.Background()
	now := time.Now()
	r, be := newTestRepo(t, 2, Options{})

	otherBoot := newLockInfo(false, "backup", now)
	otherBoot.PID, otherBoot.CairnBootID = deadPID, "00000000-0000-4000-8000-000000000000"
	if otherBoot.Stale(now, 0, time.Hour) {
		t.Fatal("lock of another boot judged stale by PID")
	}

	// restic 0.14's lock JSON: no cairn fields
	resticJSON := fmt.Sprintf(`{"time":%q,"exclusive":false,"hostname":%q,"username":"root","pid":%d,"uid":0,"gid":0}`,
		now.Format(time.RFC3339Nano), hostname(), deadPID)
	resticID, err := r.SaveUnpacked(ctx, core.LockFile, []byte(resticJSON))
	if err != nil {
		t.Fatal(err)
	}
	otherBootID, err := r.SaveJSONUnpacked(ctx, core.LockFile, otherBoot)
	if err != nil {
		t.Fatal(err)
	}
	deadHere := newLockInfo(false, "backup", now)
	deadHere.PID = deadPID
	deadHereID, err := r.SaveJSONUnpacked(ctx, core.LockFile, deadHere)
	if err != nil {
		t.Fatal(err)
	}

	locks, err := r.ListLocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range locks {
		if l.Err != nil {
			t.Fatalf("lock %v: %v", l.ID.Str(), l.Err)
		}
		if l.ID == resticID {
			if l.Info.CairnPIDNS != 0 || l.Info.CairnBootID != "" || l.Info.CairnInstance != "" {
				t.Fatalf("restic lock decoded with cairn fields: %+v", l.Info)
			}
			if l.Info.Stale(now, 0, time.Hour) {
				t.Fatal("restic 0.14 lock judged stale by PID (H04, F2)")
			}
			if !l.Info.Stale(now.Add(2*time.Hour), 2*time.Hour, time.Hour) {
				t.Fatal("old restic lock not stale by age")
			}
		}
	}

	removed, err := removeLocks(ctx, r, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != deadHereID {
		t.Fatalf("unlock removed %v, want only %v (dead PID of this boot)", removed, deadHereID.Str())
	}
	for _, id := range []core.ID{resticID, otherBootID} {
		if _, err := be.Stat(ctx, backend.Handle{Type: core.LockFile, Name: id.String()}); err != nil {
			t.Fatalf("lock %v removed: %v", id.Str(), err)
		}
	}
}

// TestRefreshKeepsHolder (H05): a refresh rewrites the same content (the
// holder's PID, instance, namespace, boot ID, op) with only a new time.
func TestRefreshKeepsHolder(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, 2, Options{})
	l, _, err := r.Lock(ctx, true, LockOptions{Op: "backup", Timing: &raceTiming})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	before, err := r.LoadLock(ctx, l.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := r.LoadLock(ctx, l.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !after.Time.After(before.Time) {
		t.Fatalf("refresh did not advance the time: %v -> %v", before.Time, after.Time)
	}
	if after.PID != os.Getpid() || after.CairnInstance != InstanceID() {
		t.Fatalf("refreshed lock names another holder: %+v", after)
	}
	after.Time = before.Time
	if !sameLockInfo(before, after) {
		t.Fatalf("refresh changed the content:\n%+v\n%+v", before, after)
	}
	if ids, err := r.ListIDs(ctx, core.LockFile); err != nil || len(ids) != 1 {
		t.Fatalf("lock files after refresh: %v %v", ids, err)
	}
}

// TestUnreadableLockBlocks (H07, §4.2): a foreign lock file that cannot be
// read may be anybody's exclusive lock: it blocks shared and exclusive
// locks, is named in the error, and only `unlock --remove-all` removes it.
func TestUnreadableLockBlocks(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, 2, Options{})
	junk := []byte("not an encrypted lock")
	id := core.Hash(junk)
	if err := be.Save(ctx, backend.Handle{Type: core.LockFile, Name: id.String()}, backend.NewByteReader(junk)); err != nil {
		t.Fatal(err)
	}
	for _, exclusive := range []bool{false, true} {
		l, _, err := r.Lock(ctx, exclusive, LockOptions{Timing: &raceTiming})
		if err == nil {
			l.Unlock(ctx)
			t.Fatalf("exclusive=%v: lock taken beside an unreadable lock file", exclusive)
		}
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), id.Str()) || !strings.Contains(err.Error(), "could not be read") {
			t.Fatalf("exclusive=%v: unclear error: %v", exclusive, err)
		}
	}
	if removed, err := removeLocks(ctx, r, false); err != nil || len(removed) != 0 {
		t.Fatalf("unlock without --remove-all removed %v (%v)", removed, err)
	}
	if removed, err := removeLocks(ctx, r, true); err != nil || len(removed) != 1 || removed[0] != id {
		t.Fatalf("unlock --remove-all removed %v (%v)", removed, err)
	}
	l, _, err := r.Lock(ctx, true, LockOptions{Timing: &raceTiming})
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock(ctx)
}
