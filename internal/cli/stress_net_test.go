package cli

// Network and resource stress tests: many clients against `cairn serve`,
// network faults injected by a proxy (faultproxy), the server killed at
// its upload crash points, full disks, and a fault-injecting backend under
// the archiver and restorer. Every test ends with verifyAll on the
// repository's local path. Short in CI; CAIRN_STRESS_LONG=1 runs longer.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/archiver"
	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/faulty"
	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/backend/rest"
	"github.com/cairn-backup/cairn/internal/backend/retry"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/restorer"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/testutil"
	"github.com/cairn-backup/cairn/internal/testutil/faultproxy"
)

// stressServer is `cairn serve --no-auth` running as a child process.
type stressServer struct {
	addr   string // host:port it listens on
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	state  *os.ProcessState
	stderr bytes.Buffer // read only after exited is closed
}

// startStressServer starts a server for the repositories below dir on listen
// (host:port; port 0 picks one) and waits until it listens.
func startStressServer(t *testing.T, dir, listen string, env ...string) *stressServer {
	t.Helper()
	s := &stressServer{exited: make(chan struct{})}
	s.cmd = cairnProcess(t, env, "serve", "--no-auth", "--path", dir, "--listen", listen)
	s.cmd.Stderr = &s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start cairn serve: %v", err)
	}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if !sent {
				first <- sc.Text()
				sent = true
			}
		}
		if !sent {
			close(first)
		}
		_ = s.cmd.Wait() // after the last read of stdout
		s.state = s.cmd.ProcessState
		close(s.exited)
	}()
	t.Cleanup(func() { s.kill() })
	select {
	case line, ok := <-first:
		_, url, found := strings.Cut(line, " on http://")
		if !ok || !found {
			s.kill()
			t.Fatalf("cairn serve did not start: %q %s", line, s.stderr.String())
		}
		s.addr = url
	case <-time.After(2 * time.Minute):
		s.kill()
		t.Fatal("cairn serve did not print its address")
	}
	return s
}

// url returns the rest: location of repository name.
func (s *stressServer) url(name string) string { return "rest:http://" + s.addr + "/" + name + "/" }

// kill sends SIGKILL (if still running) and waits for the exit.
func (s *stressServer) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// stop shuts the server down with SIGTERM; it must exit 0 (a race report
// in the child makes it exit 66).
func (s *stressServer) stop(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		t.Fatalf("cairn serve exited early: %v\n%s", s.state, s.stderr.String())
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(time.Minute):
		s.kill()
		t.Fatal("cairn serve did not stop on SIGTERM")
	}
	if !s.state.Success() {
		t.Errorf("cairn serve: %v\n%s", s.state, s.stderr.String())
	}
}

// requireAlive fails the test if the server has exited.
func (s *stressServer) requireAlive(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		t.Fatalf("cairn serve died: %v\n%s", s.state, s.stderr.String())
	default:
	}
}

// killedBySIGKILL reports whether the process ended by SIGKILL.
func (s *stressServer) killedBySIGKILL() bool {
	ws, ok := s.state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// runProcessSplit runs cairn as a child process and returns its exit code,
// stdout and stderr separately.
func runProcessSplit(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := cairnProcess(t, env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("run cairn %v: %v", args, err)
	return 0, "", ""
}

// requireCleanFailure accepts a failed command only if it exited with a
// code (not a signal), said why, and did not crash or race.
func requireCleanFailure(t *testing.T, what string, code int, out string) {
	t.Helper()
	switch {
	case code == 0:
		return
	case code < 0:
		t.Errorf("%s: killed by a signal: %s", what, out)
	case code == ExitInterrupted:
		t.Errorf("%s: reports an interruption although nothing interrupted it: %s", what, out)
	case strings.Contains(out, "panic:") || strings.Contains(out, "WARNING: DATA RACE") || strings.Contains(out, "goroutine "):
		t.Errorf("%s: crashed (exit %d):\n%s", what, code, out)
	case strings.TrimSpace(out) == "":
		t.Errorf("%s: exit %d without a message", what, code)
	}
}

// restList lists the files of type typ ("data", "index", ...) through the
// server's REST API (v2, names and sizes).
func restList(t *testing.T, addr, repoName, typ string) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/"+repoName+"/"+typ+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.x.restic.rest.v2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("list %s: %v", typ, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("list %s: %d %v %s", typ, resp.StatusCode, err, body)
	}
	var entries []struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	}
	if err := json.Unmarshal(body, &entries); err != nil {
		t.Fatalf("list %s: %v: %s", typ, err, body)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	return names
}

var repoFileTypes = []string{"data", "index", "keys", "locks", "snapshots"}

// checkListing lists every file type through the server and compares with
// the files on disk: temporary files must never be listed, and every
// listed name must be a stored file (nothing may be deleted meanwhile). It
// returns the number of stray temporary files on disk.
func checkListing(t *testing.T, addr, repoName, repoDir string) int {
	t.Helper()
	listed := map[string][]string{}
	for _, typ := range repoFileTypes {
		listed[typ] = restList(t, addr, repoName, typ)
	}
	// after the listing: uploads running meanwhile only add files
	onDisk, strays := checkRepoFiles(t, repoDir)
	for _, typ := range repoFileTypes {
		for _, n := range listed[typ] {
			if !core.IsValidName(n) {
				t.Errorf("server listed %s/%q, not a valid name (temporary file? H28)", typ, n)
				continue
			}
			if !onDisk[typ+"/"+n] && typ != "locks" { // locks come and go
				t.Errorf("server listed %s/%s, which is not a stored file", typ, n)
			}
		}
	}
	return strays
}

// checkRepoFiles walks a repository directory: every file under its final
// name must hash to its name (no partial or corrupt file is ever
// published, H20/H23). It returns the set of stored files ("type/name")
// and the number of temporary files.
func checkRepoFiles(t *testing.T, repoDir string) (map[string]bool, int) {
	t.Helper()
	stored := map[string]bool{}
	strays := 0
	for _, typ := range repoFileTypes {
		err := filepath.WalkDir(filepath.Join(repoDir, typ), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // a lock removed meanwhile
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			name := d.Name()
			if strings.Contains(name, "-tmp-") {
				strays++
				return nil
			}
			if !core.IsValidName(name) {
				t.Errorf("unexpected file %s", p)
				return nil
			}
			buf, err := os.ReadFile(p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && typ == "locks" {
					return nil
				}
				return err
			}
			if sum := sha256.Sum256(buf); hex.EncodeToString(sum[:]) != name {
				t.Errorf("%s is stored under its final name but its content does not match (partial or corrupt, %d bytes)", p, len(buf))
			}
			stored[typ+"/"+name] = true
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", repoDir, err)
		}
	}
	return stored, strays
}

// requireSnapshotsListed runs `snapshots --json` (through faults): if it
// succeeds, it must list every acknowledged snapshot not forgotten — a
// listing error must never look like an empty or partial list (H24).
func requireSnapshotsListed(t *testing.T, l *ledger, location string) bool {
	t.Helper()
	code, out, errOut := runProcessSplit(t, nil, "-r", location, "snapshots", "--json")
	if code != 0 {
		requireCleanFailure(t, "snapshots", code, errOut)
		return false
	}
	var snaps []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		t.Errorf("snapshots --json: %v\n%s", err, out)
		return false
	}
	have := map[string]bool{}
	for _, s := range snaps {
		have[s.ID] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.acked {
		if !l.forgot[id] && !have[id] {
			t.Errorf("snapshots exited 0 but does not list acknowledged snapshot %s (H24)", id[:8])
		}
	}
	return true
}

// restoreProcess restores snapshot id of src through location as a child
// process: success must be byte-identical, failure must be clean.
func restoreProcess(t *testing.T, location, id, src, scratch string) bool {
	t.Helper()
	dst := filepath.Join(scratch, "r-"+id[:8]+fmt.Sprint(rand.IntN(1e9)))
	defer os.RemoveAll(dst)
	code, out := runProcess(t, nil, "-r", location, "restore", id, "--target", dst)
	if code != 0 {
		requireCleanFailure(t, "restore "+id[:8], code, out)
		return false
	}
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true, IgnoreDirMtime: true})
	return true
}

// pick picks an acknowledged, not forgotten snapshot.
func (l *ledger) pick(rnd *rand.Rand) (id, src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for id := range l.acked {
		if !l.forgot[id] {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", ""
	}
	// map order is random; sort for the seeded pick
	slices.Sort(ids)
	id = ids[rnd.IntN(len(ids))]
	return id, l.acked[id]
}

func (l *ledger) addFaults(n int) {
	l.mu.Lock()
	l.faults += n
	l.mu.Unlock()
}

func (l *ledger) addKill() {
	l.mu.Lock()
	l.kills++
	l.mu.Unlock()
}

// TestStressRESTConcurrentBackups: 8 backup processes at once into one
// repository served by `cairn serve`, repeated, while forget and prune run
// through the same server.
func TestStressRESTConcurrentBackups(t *testing.T) {
	cairnEnv(t)
	start := time.Now()
	tmp := t.TempDir()
	srvDir := filepath.Join(tmp, "srv")
	srv := startStressServer(t, srvDir, "127.0.0.1:0")
	url := srv.url("repo")
	mustCairn(t, "-r", url, "init")
	srcs := makeSources(t, tmp, 8, 21)
	l := newLedger()
	rnd := rand.New(rand.NewPCG(21, 21))
	env := []string{"CAIRN_LOCK_REFRESH=1s", "CAIRN_LOCK_STALE_AFTER=20s"}
	prunes := 0
	for round := 0; round < stressRounds(2, 10); round++ {
		var wg sync.WaitGroup
		for k, src := range srcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, out := backupProcess(t, l, url, src, fmt.Sprintf("h%d", k), env...); code != 0 {
					t.Errorf("backup %d over REST: exit %d: %s", k, code, out)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rnd.IntN(1500)) * time.Millisecond) // land inside the backups
			if id, _ := l.pick(rnd); id != "" && round > 0 {
				l.mu.Lock()
				l.forgot[id] = true
				l.mu.Unlock()
				if code, out := runProcess(t, env, "-r", url, "forget", id); code != 0 {
					t.Errorf("forget over REST: exit %d: %s", code, out)
				}
			}
			code, out := runProcess(t, env, "-r", url, "prune", "--keep-delete", "0", "--max-unused", "0%")
			if code != 0 && code != ExitLocked {
				t.Errorf("prune over REST during backups: exit %d: %s", code, out)
			}
			if code == 0 {
				prunes++
			}
		}()
		wg.Wait()
	}
	mustCairn(t, "-r", url, "prune", "--keep-delete", "0", "--max-unused", "0%")
	requireSnapshotsListed(t, l, url)
	checkListing(t, srv.addr, "repo", filepath.Join(srvDir, "repo"))
	srv.stop(t)
	verifyAll(t, l, filepath.Join(srvDir, "repo"), tmp)
	t.Logf("%d backups, %d prunes completed during backups, %v", l.backups, prunes, time.Since(start).Round(time.Second))
}

// TestStressProxyFaults: backups, listings and restores through a proxy
// that cuts, truncates, loses, stalls and delays requests in front of
// `cairn serve`. Each command succeeds (retrying) or fails with a message;
// no partial file is ever stored and no snapshot is acknowledged that is
// not fully stored.
func TestStressProxyFaults(t *testing.T) {
	cairnEnv(t)
	start := time.Now()
	tmp := t.TempDir()
	srvDir := filepath.Join(tmp, "srv")
	repoDir := filepath.Join(srvDir, "repo")
	srv := startStressServer(t, srvDir, "127.0.0.1:0")
	mustCairn(t, "-r", srv.url("repo"), "init")
	srcs := makeSources(t, tmp, 4, 31)
	l := newLedger()
	rnd := rand.New(rand.NewPCG(31, 31))
	configs := []faultproxy.Config{
		{Mode: faultproxy.PerRequest, Cut: 0.04, LoseResponse: 0.04, Truncate: 0.04, Stall: 0.03, Delay: 0.1,
			StallFor: 300 * time.Millisecond, MaxDelay: 50 * time.Millisecond, RST: true},
		{Mode: faultproxy.PerConnection, Cut: 0.3, LoseResponse: 0.15, Truncate: 0.2, Stall: 0.1, Delay: 0.1,
			StallFor: 300 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxOffset: 512 << 10, RST: true},
	}
	failed, restored := 0, 0
	var stats []faultproxy.Stats
	for round := 0; round < stressRounds(1, 6); round++ {
		for ci, cfg := range configs {
			cfg.Seed = uint64(100*round + ci)
			p, err := faultproxy.New(srv.addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			url := "rest:http://" + p.Addr() + "/repo/"
			var wg sync.WaitGroup
			var mu sync.Mutex // guards failed
			for k, src := range srcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, out := backupProcess(t, l, url, src, fmt.Sprintf("p%d", k))
					requireCleanFailure(t, "backup through faults", code, out)
					if code != 0 {
						mu.Lock()
						failed++
						mu.Unlock()
						t.Logf("backup through faults failed (acceptable): exit %d: %s", code, lastLine(out))
					}
				}()
			}
			wg.Wait()
			srv.requireAlive(t)
			requireSnapshotsListed(t, l, url)
			for i := 0; i < 2; i++ {
				if id, src := l.pick(rnd); id != "" && restoreProcess(t, url, id, src, tmp) {
					restored++
				}
			}
			st := p.Stats()
			stats = append(stats, st)
			l.addFaults(st.Injected())
			if err := p.Close(); err != nil {
				t.Error(err)
			}
			// nothing partial is ever stored, whatever the network did
			srv.requireAlive(t)
			checkListing(t, srv.addr, "repo", repoDir)
		}
	}
	// H30: stalls longer than the client's stall timeout are cut off and
	// retried, in-process with a short timeout.
	p, err := faultproxy.New(srv.addr, faultproxy.Config{Mode: faultproxy.PerRequest, Seed: 7, Stall: 0.25, Delay: 0.1,
		StallFor: 3 * time.Second, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stallSrc := srcs[rnd.IntN(len(srcs))]
	if err := backupRestoreInProcess(t, l, "rest:http://"+p.Addr()+"/repo/", time.Second, stallSrc, tmp); err != nil {
		t.Errorf("backup and restore through stalls with a 1s stall timeout: %v", err)
	}
	st := p.Stats()
	stats = append(stats, st)
	l.addFaults(st.Injected())
	if st.Stalls == 0 {
		t.Errorf("no stall was injected: %v", st)
	}
	p.Close()

	if l.backups == 0 {
		t.Fatal("no backup succeeded through the proxy")
	}
	checkListing(t, srv.addr, "repo", repoDir)
	srv.stop(t)
	verifyAll(t, l, repoDir, tmp)
	for _, s := range stats {
		t.Logf("proxy: %v", s)
	}
	t.Logf("%d backups acknowledged, %d failed cleanly, %d restores through faults, %d faults, %v",
		l.backups, failed, restored, l.faults, time.Since(start).Round(time.Second))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// backupRestoreInProcess backs src up through a REST location with the
// given stall timeout (and retries), then restores it and compares.
func backupRestoreInProcess(t *testing.T, l *ledger, location string, stall time.Duration, src, scratch string) error {
	ctx := context.Background()
	cfg, err := rest.ParseConfig(location)
	if err != nil {
		return err
	}
	cfg.StallTimeout = stall
	rb, err := rest.Open(ctx, cfg)
	if err != nil {
		return err
	}
	var retries int
	var rmu sync.Mutex // guards retries
	be := retry.New(rb, retry.Options{InitialDelay: 50 * time.Millisecond, MaxDelay: time.Second,
		OnRetry: func(string, backend.Handle, int, error, time.Duration) { rmu.Lock(); retries++; rmu.Unlock() }})
	r, err := repo.Open(ctx, be, testPassword, repo.Options{})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer r.Close()
	id, err := backupInProcess(ctx, r, src, "stall")
	if err != nil {
		return err
	}
	l.ack(id.String(), src)
	sn, err := r.LoadSnapshot(ctx, id)
	if err != nil {
		return fmt.Errorf("load snapshot: %w", err)
	}
	dst := filepath.Join(scratch, "stall-restore")
	defer os.RemoveAll(dst)
	res, err := restorer.Restore(ctx, r, *sn.Tree, restorer.Options{Target: dst})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("restore: %v", errors.Join(res.Errors...))
	}
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true, IgnoreDirMtime: true})
	t.Logf("in-process backup and restore through stalls: %d retries", retries)
	return nil
}

// backupInProcess runs one backup of src with the archiver under a
// repository lock, as `cairn backup` does, and returns the snapshot ID.
func backupInProcess(ctx context.Context, r *repo.Repository, src, host string) (core.ID, error) {
	lock, lctx, err := r.Lock(ctx, false, repo.LockOptions{Op: "backup"})
	if err != nil {
		return core.ID{}, fmt.Errorf("lock: %w", err)
	}
	defer lock.Unlock(context.Background())
	if err := r.LoadIndex(lctx); err != nil {
		return core.ID{}, fmt.Errorf("load index: %w", err)
	}
	sn, err := snapshot.New([]string{src}, nil, host, time.Now())
	if err != nil {
		return core.ID{}, err
	}
	res, err := archiver.New(r, archiver.Options{}).Run(lctx, []string{src})
	if err != nil {
		return core.ID{}, fmt.Errorf("backup: %w", err)
	}
	if len(res.Errors) > 0 {
		return core.ID{}, fmt.Errorf("backup: unreadable files: %v", errors.Join(res.Errors...))
	}
	sn.Tree, sn.Summary = &res.Tree, &res.Summary
	if err := lock.Check(lctx); err != nil {
		return core.ID{}, fmt.Errorf("backup not committed: %w", err)
	}
	id, err := r.SaveSnapshot(lctx, sn)
	if err != nil {
		return core.ID{}, fmt.Errorf("save snapshot: %w", err)
	}
	return id, nil
}

// TestStressServerKill kills the server with SIGKILL at each of its upload
// crash points while backups run through it, restarts it on the same
// address and directory, and lets the backups carry on (retrying). Stray
// temporary files are never listed.
func TestStressServerKill(t *testing.T) {
	cairnEnv(t)
	start := time.Now()
	tmp := t.TempDir()
	srvDir := filepath.Join(tmp, "srv")
	repoDir := filepath.Join(srvDir, "repo")
	srv := startStressServer(t, srvDir, "127.0.0.1:0")
	addr := srv.addr // restarts listen here again
	url := srv.url("repo")
	mustCairn(t, "-r", url, "init")
	srv.stop(t)
	srcs := makeSources(t, tmp, 4, 41)
	l := newLedger()
	rnd := rand.New(rand.NewPCG(41, 41))
	// "" kills the server at a random moment (mid-request, mostly)
	points := []string{"upload.after-temp-write", "upload.before-rename", "upload.after-rename", ""}
	maxStrays, notReached := 0, 0
	for round := 0; round < stressRounds(1, 5); round++ {
		for _, point := range points {
			n := 1 + rnd.IntN(6)
			var env []string
			if point != "" {
				env = append(env, fmt.Sprintf("CAIRN_FAILPOINTS=%s=kill@%d", point, n))
			}
			srv = startStressServer(t, srvDir, addr, env...)
			if point == "" {
				go func(s *stressServer, d time.Duration) {
					time.Sleep(d)
					s.kill()
				}(srv, time.Duration(200+rnd.IntN(1500))*time.Millisecond)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				var wg sync.WaitGroup
				for k := 0; k < 2; k++ {
					src := srcs[(round*len(points)+k)%len(srcs)]
					wg.Add(1)
					go func() {
						defer wg.Done()
						code, out := backupProcess(t, l, url, src, fmt.Sprintf("k%d", k))
						if code != 0 {
							t.Errorf("backup across a server kill at %s@%d failed: exit %d: %s", point, n, code, out)
						}
					}()
				}
				wg.Wait()
			}()
			select {
			case <-srv.exited:
				if !srv.killedBySIGKILL() {
					t.Fatalf("server exited without being killed: %v\n%s", srv.state, srv.stderr.String())
				}
				l.addKill()
				time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
				srv = startStressServer(t, srvDir, addr)
				strays := checkListing(t, srv.addr, "repo", repoDir)
				maxStrays = max(maxStrays, strays)
				<-done
			case <-done:
				if point == "" { // the backups beat the killer: let it strike
					<-srv.exited
					l.addKill()
					continue
				}
				select {
				case <-srv.exited: // killed by the very last upload
					if !srv.killedBySIGKILL() {
						t.Fatalf("server exited without being killed: %v\n%s", srv.state, srv.stderr.String())
					}
					l.addKill()
					continue
				default:
				}
				notReached++
			}
			srv.stop(t)
		}
	}
	// a final round on a healthy server, then every listing once more
	srv = startStressServer(t, srvDir, addr)
	for k, src := range srcs {
		if code, out := backupProcess(t, l, url, src, fmt.Sprintf("final%d", k)); code != 0 {
			t.Fatalf("backup after server kills: %s", out)
		}
	}
	strays := checkListing(t, srv.addr, "repo", repoDir)
	requireSnapshotsListed(t, l, url)
	srv.stop(t)
	verifyAll(t, l, repoDir, tmp)
	t.Logf("%d server kills (%d runs did not reach the point), up to %d stray temporary files on disk (%d at the end), none listed; %v",
		l.kills, notReached, maxStrays, strays, time.Since(start).Round(time.Second))
}

// mountTmpfs mounts a tmpfs of the given size on dir (created) and
// unmounts it in t.Cleanup. Without permission it skips, except in CI.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): %v: %s", err, out)
		if testutil.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// something still has it open: detach it lazily
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				t.Errorf("umount %s: %v %s; %v %s", dir, err, out, err2, out2)
			}
		}
	})
}

func remountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v %s", dir, err, out)
	}
}

// writeRandomFile writes n incompressible bytes.
func writeRandomFile(t *testing.T, p string, n int, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 5))
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fillFileSystem writes a file into dir that leaves about leave bytes free
// and returns its name.
func fillFileSystem(t *testing.T, dir string, leave int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	p := filepath.Join(dir, "filler")
	if free > leave {
		if err := os.WriteFile(p, make([]byte, free-leave), 0o600); err != nil {
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
	return p
}

func mentionsNoSpace(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "no space") || strings.Contains(s, "insufficient storage")
}

// TestStressDiskFull backs up more than fits on a small tmpfs, locally and
// through the server: the backup fails with a "no space" message and
// leaves no partial file; prune on the full disk does no harm; after the
// file system grows, backups work and everything verifies. A full TMPDIR
// does not matter to cairn.
func TestStressDiskFull(t *testing.T) {
	cairnEnv(t)
	start := time.Now()
	tmp := t.TempDir()
	small := filepath.Join(tmp, "small")
	writeRandomFile(t, filepath.Join(small, "a"), 1<<20, 1)
	writeRandomFile(t, filepath.Join(small, "u"), 600<<10, 2)
	os.WriteFile(filepath.Join(small, "b"), []byte("small file\n"), 0o644)
	big := filepath.Join(tmp, "big")
	for i := 0; i < 3; i++ {
		writeRandomFile(t, filepath.Join(big, fmt.Sprint("f", i)), 4<<20, uint64(10+i))
	}
	l := newLedger()

	t.Run("local", func(t *testing.T) {
		mnt := filepath.Join(tmp, "mnt")
		mountTmpfs(t, mnt, "8m")
		repoDir := filepath.Join(mnt, "repo")
		mustCairn(t, "-r", repoDir, "init")
		// small2 shares small's big file: forgetting small later leaves a
		// pack half used, which prune must repack
		small2 := filepath.Join(tmp, "small2")
		os.MkdirAll(small2, 0o755)
		a, _ := os.ReadFile(filepath.Join(small, "a"))
		os.WriteFile(filepath.Join(small2, "a"), a, 0o644)
		os.WriteFile(filepath.Join(small2, "c"), []byte("another small file\n"), 0o644)
		for _, src := range []string{small, small2} {
			if code, out := backupProcess(t, l, repoDir, src, "small"); code != 0 {
				t.Fatalf("small backup: %s", out)
			}
		}
		code, out := backupProcess(t, l, repoDir, big, "big")
		if code == 0 {
			t.Fatal("a 12 MiB backup fit on an 8 MiB file system")
		}
		requireCleanFailure(t, "backup on a full disk", code, out)
		if !mentionsNoSpace(out) {
			t.Errorf("backup on a full disk: no \"no space\" message:\n%s", out)
		}
		t.Logf("backup on the full disk: exit %d: %s", code, lastLine(out))
		if _, strays := checkRepoFiles(t, repoDir); strays != 0 {
			t.Errorf("%d temporary files left behind on the full disk", strays)
		}
		// prune on the full file system (the failed backup's packs are
		// orphans): it may fail, but cleanly
		code, pout := runProcess(t, nil, "-r", repoDir, "prune", "--keep-delete", "0")
		requireCleanFailure(t, "prune on a full disk", code, pout)
		t.Logf("prune on the full disk: exit %d: %s", code, lastLine(pout))
		mustCairn(t, "-r", repoDir, "unlock")
		// a prune that must repack with almost no space left (H31)
		l.mu.Lock()
		for id, src := range l.acked {
			if src == small {
				l.forgot[id] = true
				mustCairn(t, "-r", repoDir, "forget", id)
			}
		}
		l.mu.Unlock()
		filler := fillFileSystem(t, mnt, 64<<10)
		code, pout = runProcess(t, nil, "-r", repoDir, "prune", "--keep-delete", "0", "--max-unused", "0%")
		requireCleanFailure(t, "repacking prune on a full disk", code, pout)
		t.Logf("repacking prune with 64 KiB free: exit %d: %s", code, lastLine(pout))
		if code != 0 && !mentionsNoSpace(pout) {
			t.Errorf("prune on a full disk failed without a \"no space\" message:\n%s", pout)
		}
		if _, strays := checkRepoFiles(t, repoDir); strays != 0 {
			t.Errorf("%d temporary files left behind by prune on the full disk", strays)
		}
		os.Remove(filler)
		mustCairn(t, "-r", repoDir, "unlock")
		if r := cairn(t, "-r", repoDir, "check"); r.code != 0 {
			t.Fatalf("check after disk full: %s %s", r.stdout, r.stderr)
		}
		remountTmpfs(t, mnt, "64m")
		mustCairn(t, "-r", repoDir, "prune", "--keep-delete", "0", "--max-unused", "0%")
		if code, out := backupProcess(t, l, repoDir, big, "big"); code != 0 {
			t.Fatalf("backup after the file system grew: %s", out)
		}
		verifyAll(t, l, repoDir, tmp)
	})

	t.Run("server", func(t *testing.T) {
		ls := newLedger()
		mnt := filepath.Join(tmp, "srvmnt")
		mountTmpfs(t, mnt, "8m")
		srv := startStressServer(t, mnt, "127.0.0.1:0")
		url := srv.url("repo")
		mustCairn(t, "-r", url, "init")
		if code, out := backupProcess(t, ls, url, small, "small"); code != 0 {
			t.Fatalf("small backup over REST: %s", out)
		}
		code, out := backupProcess(t, ls, url, big, "big")
		if code == 0 {
			t.Fatal("a 12 MiB backup fit on an 8 MiB server")
		}
		requireCleanFailure(t, "backup to a full server", code, out)
		if !mentionsNoSpace(out) {
			t.Errorf("backup to a full server: no \"no space\" message:\n%s", out)
		}
		t.Logf("backup to the full server: exit %d: %s", code, lastLine(out))
		if _, strays := checkRepoFiles(t, filepath.Join(mnt, "repo")); strays != 0 {
			t.Errorf("%d temporary files left behind on the full server", strays)
		}
		checkListing(t, srv.addr, "repo", filepath.Join(mnt, "repo"))
		remountTmpfs(t, mnt, "64m")
		if code, out := backupProcess(t, ls, url, big, "big"); code != 0 {
			t.Fatalf("backup over REST after the file system grew: %s", out)
		}
		srv.stop(t)
		verifyAll(t, ls, filepath.Join(mnt, "repo"), tmp)
	})

	t.Run("tmpdir", func(t *testing.T) {
		lt := newLedger()
		tmpd := filepath.Join(tmp, "tinytmp")
		mountTmpfs(t, tmpd, "64k")
		// fill it up completely
		f, err := os.Create(filepath.Join(tmpd, "fill"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(make([]byte, 1<<20)); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling the tmpfs: %v", err)
		}
		f.Close()
		repoDir := filepath.Join(tmp, "repo-tmpdir")
		mustCairn(t, "-r", repoDir, "init")
		env := []string{"TMPDIR=" + tmpd}
		for _, src := range []string{small, big} {
			if code, out := backupProcess(t, lt, repoDir, src, "tmpdir", env...); code != 0 {
				t.Fatalf("backup with a full TMPDIR: %s", out)
			}
		}
		id, src := lt.pick(rand.New(rand.NewPCG(1, 1)))
		dst := filepath.Join(tmp, "tmpdir-restore")
		if code, out := runProcess(t, env, "-r", repoDir, "restore", id, "--target", dst); code != 0 {
			t.Fatalf("restore with a full TMPDIR: %s", out)
		}
		testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true, IgnoreDirMtime: true})
		os.RemoveAll(dst)
		verifyAll(t, lt, repoDir, tmp)
	})
	t.Logf("%v", time.Since(start).Round(time.Second))
}

// TestStressFaultyBackend runs backups and restores in-process over a
// backend that fails before and after operations, delays them, truncates
// uploads and downloads and flips bits on load, under the retry layer.
// Backups either succeed or fail cleanly; a restore either matches or
// names every damaged file; bit flips are never restored silently.
func TestStressFaultyBackend(t *testing.T) {
	cairnEnv(t)
	start := time.Now()
	ctx := context.Background()
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init", "--repository-version", "2")
	srcs := makeSources(t, tmp, 4, 51)
	l := newLedger()
	rnd := rand.New(rand.NewPCG(51, 51))
	cfg := faulty.Config{
		Save:         faulty.OpFaults{ErrBefore: 0.05, ErrAfter: 0.05, Delay: 0.2},
		Load:         faulty.OpFaults{ErrBefore: 0.05, ErrAfter: 0.05, Delay: 0.2},
		Stat:         faulty.OpFaults{ErrBefore: 0.05, ErrAfter: 0.05},
		List:         faulty.OpFaults{ErrBefore: 0.05, ErrAfter: 0.02},
		Remove:       faulty.OpFaults{ErrBefore: 0.05, ErrAfter: 0.05},
		SaveTruncate: 0.05,
		LoadTruncate: 0.05,
		LoadBitFlip:  0.05,
		MaxDelay:     2 * time.Millisecond,
	}
	retryOpts := retry.Options{MaxTries: 8, InitialDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	var backupsFailed, restoresOK, restoresReported, restoresFailed int
	var all []map[faulty.Fault]int
	for round := 0; round < stressRounds(3, 20); round++ {
		lb, err := local.Open(ctx, repoDir)
		if err != nil {
			t.Fatal(err)
		}
		fb := faulty.New(lb, cfg, int64(round+1))
		be := retry.New(fb, retryOpts)
		// two backups at once, each with its own repository handle
		var wg sync.WaitGroup
		var mu sync.Mutex // guards backupsFailed
		for k := 0; k < 2; k++ {
			src := srcs[(2*round+k)%len(srcs)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := repo.Open(ctx, be, testPassword, repo.Options{PackSize: 1 << 20})
				if err == nil {
					var id core.ID
					id, err = backupInProcess(ctx, r, src, fmt.Sprintf("f%d", k))
					if err == nil {
						l.ack(id.String(), src)
					}
					r.Close()
				}
				if err != nil {
					if err.Error() == "" {
						t.Error("backup failed without a message")
					}
					t.Logf("backup over the faulty backend failed (acceptable): %v", err)
					mu.Lock()
					backupsFailed++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		// restores through the same faults
		for i := 0; i < 2; i++ {
			id, src := l.pick(rnd)
			if id == "" {
				continue
			}
			switch faultyRestore(t, ctx, be, repoDir, id, src, filepath.Join(tmp, fmt.Sprintf("restore-%d-%d", round, i)), false) {
			case restoreIdentical:
				restoresOK++
			case restoreReported:
				restoresReported++
			case restoreFailed:
				restoresFailed++
			}
		}
		all = append(all, fb.Stats())
	}
	faults := 0
	for _, st := range all {
		for f, n := range st {
			if !strings.HasSuffix(string(f), ".calls") {
				faults += n
			}
		}
	}
	l.addFaults(faults)
	if l.backups == 0 {
		t.Fatal("no backup succeeded over the faulty backend")
	}

	// every data blob load flipped: nothing may be restored silently
	id, src := l.pick(rnd)
	if got := faultyRestore(t, ctx, nil, repoDir, id, src, filepath.Join(tmp, "restore-flipped"), true); got != restoreReported && got != restoreFailed {
		t.Errorf("restore with every data pack load bit-flipped: %v", got)
	}

	verifyAll(t, l, repoDir, tmp)
	t.Logf("%d backups, %d failed cleanly; restores: %d identical, %d with damaged files named, %d failed; %d faults injected (%v); %v",
		l.backups, backupsFailed, restoresOK, restoresReported, restoresFailed, faults, all[len(all)-1], time.Since(start).Round(time.Second))
}

type restoreOutcome int

const (
	restoreIdentical restoreOutcome = iota
	restoreReported                 // some files named as damaged, all others identical
	restoreFailed                   // the restore as a whole failed with an error
)

func (o restoreOutcome) String() string {
	return [...]string{"identical", "damaged files reported", "failed"}[o]
}

// faultyRestore restores snapshot id (of src) into dst over be (nil: the
// local repository at repoDir) and checks that every file is either
// identical or named, itself or a directory above it, in the restore's
// errors. With flipData, every load of a data pack gets bits flipped.
func faultyRestore(t *testing.T, ctx context.Context, be backend.Backend, repoDir, id, src, dst string, flipData bool) restoreOutcome {
	t.Helper()
	defer os.RemoveAll(dst)
	if be == nil {
		lb, err := local.Open(ctx, repoDir)
		if err != nil {
			t.Fatal(err)
		}
		be = lb
	}
	r, err := repo.Open(ctx, be, testPassword, repo.Options{})
	if err != nil {
		return restoreFailed
	}
	defer r.Close()
	if err := r.LoadIndex(ctx); err != nil {
		return restoreFailed
	}
	snID, err := core.ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := r.LoadSnapshot(ctx, snID)
	if err != nil {
		return restoreFailed
	}
	if flipData {
		dataPacks := map[string]bool{}
		r.Index().Each(func(loc index.Location) {
			if loc.Type == core.DataBlob {
				dataPacks[loc.Pack.String()] = true
			}
		})
		r.WrapBackend(func(b backend.Backend) backend.Backend { return &flipLoads{Backend: b, packs: dataPacks} })
	}
	res, err := restorer.Restore(ctx, r, *sn.Tree, restorer.Options{Target: dst})
	if err != nil {
		if err.Error() == "" {
			t.Error("restore failed without a message")
		}
		return restoreFailed
	}
	var msgs []string
	for _, e := range res.Errors {
		msgs = append(msgs, e.Error())
	}
	reported := func(p string) bool {
		for q := p; len(q) >= len(dst); q = filepath.Dir(q) {
			for _, m := range msgs {
				if strings.Contains(m, q+":") {
					return true
				}
			}
		}
		return false
	}
	outcome := restoreIdentical
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		target := filepath.Join(dst, p)
		if reported(target) {
			outcome = restoreReported
			return nil
		}
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, gerr := os.ReadFile(target)
		if gerr != nil || !bytes.Equal(got, want) {
			t.Errorf("%s restored wrong (%d bytes, %v) and not reported as damaged; errors: %v", target, len(got), gerr, msgs)
		}
		if flipData && len(want) > 0 && gerr == nil && bytes.Equal(got, want) {
			t.Errorf("%s restored identical although every data load was corrupted", target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if outcome == restoreReported {
		t.Logf("restore named damaged files: %v", msgs)
	}
	if outcome == restoreIdentical && len(res.Errors) > 0 {
		t.Errorf("restore reported errors naming no file: %v", msgs)
	}
	return outcome
}

// flipLoads flips a bit every 32 bytes in every load of the given packs:
// every sealed blob (at least 32 bytes) is hit.
type flipLoads struct {
	backend.Backend
	packs map[string]bool
}

func (f *flipLoads) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if h.Type != core.PackFile || !f.packs[h.Name] {
		return f.Backend.Load(ctx, h, length, offset, fn)
	}
	return f.Backend.Load(ctx, h, length, offset, func(rd io.Reader) error {
		buf, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		for i := 0; i < len(buf); i += 32 {
			buf[i] ^= 0x10
		}
		return fn(bytes.NewReader(buf))
	})
}

// runWithDeadline runs cairn as a child process; if it has not finished
// after d it is taken for hung: its goroutines are dumped (SIGQUIT) and
// hung is true.
func runWithDeadline(t *testing.T, d time.Duration, env []string, args ...string) (code int, out string, hung bool) {
	t.Helper()
	cmd := cairnProcess(t, env, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(d):
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		<-done
		return -1, stackSummary(buf.String()), true
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, buf.String(), false
	case errors.As(err, &ee):
		return ee.ExitCode(), buf.String(), false
	}
	t.Fatalf("run cairn %v: %v", args, err)
	return 0, "", false
}

// stackSummary keeps the first cairn frames of a goroutine dump.
func stackSummary(dump string) string {
	var b strings.Builder
	n := 0
	for _, line := range strings.Split(dump, "\n") {
		if n < 60 && (strings.HasPrefix(line, "goroutine ") || strings.Contains(line, "cairn/internal/") && !strings.HasPrefix(line, "\t")) {
			b.WriteString(line + "\n")
			n++
		}
	}
	return b.String()
}

// damagePacks flips a byte every 4 KiB of every data pack of at least
// minSize bytes (sparing the header at the end) and returns how many packs
// it damaged.
func damagePacks(t *testing.T, repoDir string, minSize int) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		buf, err := os.ReadFile(p)
		if err != nil || len(buf) < minSize {
			return err
		}
		for i := 0; i+8192 < len(buf); i += 4096 {
			buf[i] ^= 0x40
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return err
		}
		n++
		return os.WriteFile(p, buf, 0o400)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStressBoundedConnectionsNoDeadlock: with few connection slots, no
// command waits for a slot that its own callback holds (H30). A locking
// command with --connections 1 lists the locks and loads each one; a
// restore of damaged packs retries the damaged blobs from other copies;
// neither may call the backend from inside a List or Load callback.
func TestStressBoundedConnectionsNoDeadlock(t *testing.T) {
	cairnEnv(t)
	start := time.Now()
	tmp := t.TempDir()
	const deadline = time.Minute // a hang detector, not a speed limit
	src := filepath.Join(tmp, "src")
	writeRandomFile(t, filepath.Join(src, "a"), 3<<20, 61)
	os.WriteFile(filepath.Join(src, "small"), []byte("small\n"), 0o644)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "-q", src)
	for _, args := range [][]string{
		{"-r", repoDir, "--connections", "1", "snapshots"},
		{"-r", repoDir, "--connections", "1", "backup", "-q", src},
	} {
		if code, out, hung := runWithDeadline(t, deadline, nil, args...); hung {
			t.Errorf("cairn %v hung:\n%s", args[1:], out)
		} else if code != 0 {
			t.Errorf("cairn %v: exit %d: %s", args[1:], code, out)
		}
	}
	mustCairn(t, "-r", repoDir, "unlock")
	if n := damagePacks(t, repoDir, 1<<20); n == 0 {
		t.Fatal("no data pack to damage")
	}
	dst := filepath.Join(tmp, "dst")
	code, out, hung := runWithDeadline(t, deadline, nil, "-r", repoDir, "--connections", "1", "restore", "latest", "--target", dst)
	switch {
	case hung:
		t.Errorf("restore of a damaged pack with --connections 1 hung:\n%s", out)
	case code == 0 || !strings.Contains(out, filepath.Join(dst, src, "a")):
		t.Errorf("restore of a damaged pack: exit %d, damaged file not named:\n%s", code, out)
	}

	// over REST, with every connection slot held by a damaged pack's download
	srv := startStressServer(t, filepath.Join(tmp, "srv"), "127.0.0.1:0")
	url := srv.url("repo")
	mustCairn(t, "-r", url, "init")
	big := filepath.Join(tmp, "big")
	for i := 0; i < 6; i++ {
		writeRandomFile(t, filepath.Join(big, fmt.Sprint("f", i)), 9<<19, uint64(70+i))
	}
	if code, out := runProcess(t, nil, "-r", url, "--pack-size", "4", "backup", "-q", big); code != 0 {
		t.Fatalf("backup: %s", out)
	}
	damaged := damagePacks(t, filepath.Join(tmp, "srv", "repo"), 1<<20)
	dst = filepath.Join(tmp, "dst-rest")
	code, out, hung = runWithDeadline(t, deadline, nil, "-r", url, "--connections", "2", "restore", "latest", "--target", dst)
	switch {
	case hung:
		t.Errorf("restore over REST of %d damaged packs hung:\n%s", damaged, out)
	case code == 0 || !strings.Contains(out, "not restored completely"):
		t.Errorf("restore over REST of %d damaged packs: exit %d, no damaged file named:\n%s", damaged, code, out)
	}
	srv.stop(t)
	t.Logf("%d damaged packs over REST; %v", damaged, time.Since(start).Round(time.Second))
}
