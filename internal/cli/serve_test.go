package cli

// Tests of `cairn serve` run as a real process on loopback, driven by the
// reference client (restic 0.14) and by raw HTTP: the full restic
// workflow in plain HTTP and with TLS + htpasswd, append-only mode
// (hazard H25), and graceful shutdown with uploads in flight (H20, H23).

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// childStartTimeout bounds how long a server process may take to print its
// address; childStopTimeout how long it may take to exit after SIGTERM
// (cairn serve's own shutdown timeout is one minute).
const (
	childStartTimeout = 30 * time.Second
	childStopTimeout  = 75 * time.Second
)

// serveLogBuffer is a bytes.Buffer safe for concurrent writers and readers.
type serveLogBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *serveLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *serveLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// childServer is a server running as a child process of the test (cairn
// serve, rclone serve restic), stopped when the test ends.
type childServer struct {
	name string
	cmd  *exec.Cmd
	// URL is the server's base URL as it printed it, without a trailing
	// slash: "http://127.0.0.1:PORT".
	URL  string
	Addr string // "127.0.0.1:PORT"
	log  serveLogBuffer
	done chan struct{} // closed once the process has exited
	code int           // exit code (-1: killed by a signal); valid after done
}

// startChildServer starts cmd with its stdout and stderr captured, and
// waits until a line matches addrRE, whose first group is the base URL.
func startChildServer(t *testing.T, name string, cmd *exec.Cmd, addrRE *regexp.Regexp) *childServer {
	t.Helper()
	s := &childServer{name: name, cmd: cmd, done: make(chan struct{})}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	pw.Close()
	urlc := make(chan string, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			line := sc.Text()
			s.log.Write([]byte(line + "\n"))
			if m := addrRE.FindStringSubmatch(line); m != nil && !found {
				found = true
				urlc <- m[1]
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		<-readDone
		s.code = 0
		if err != nil {
			s.code = -1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				s.code = ee.ExitCode()
			}
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case u := <-urlc:
		s.URL = strings.TrimSuffix(u, "/")
		s.Addr = s.URL[strings.Index(s.URL, "://")+3:]
	case <-s.done:
		t.Fatalf("%s exited (code %d) before serving:\n%s", name, s.code, s.log.String())
	case <-time.After(childStartTimeout):
		t.Fatalf("%s printed no address within %v:\n%s", name, childStartTimeout, s.log.String())
	}
	return s
}

// serveAddrRE matches cairn serve's "serving DIR on URL" line.
var serveAddrRE = regexp.MustCompile(`^serving .* on (https?://\S+)$`)

// startServe runs `cairn serve --listen 127.0.0.1:0 args...` as a child
// process (the test binary acting as cairn).
func startServe(t *testing.T, args ...string) *childServer {
	t.Helper()
	cmd := cairnProcess(t, nil, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	return startChildServer(t, "cairn serve", cmd, serveAddrRE)
}

// stop sends SIGTERM and returns the exit code; the test fails if the
// process does not exit within childStopTimeout.
func (s *childServer) stop(t *testing.T) int {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal %s: %v", s.name, err)
	}
	return s.wait(t)
}

func (s *childServer) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(childStopTimeout):
		t.Fatalf("%s did not exit within %v of SIGTERM:\n%s", s.name, childStopTimeout, s.log.String())
		return -1
	}
}

// mustStop stops the server and fails the test unless it exits 0 (a race
// report in a -race child also makes it exit non-zero).
func (s *childServer) mustStop(t *testing.T) {
	t.Helper()
	if code := s.stop(t); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM:\n%s", s.name, code, s.log.String())
	}
}

// testPKI is a throw-away CA and a server certificate for 127.0.0.1.
type testPKI struct {
	CAFile   string // CA certificate (PEM)
	CertFile string // server certificate (PEM)
	KeyFile  string // server key (PEM)
	CAPool   *x509.CertPool
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cairn test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		CAPool:   x509.NewCertPool(),
	}
	p.CAPool.AddCert(caCert)
	writePEM(t, p.CAFile, "CERTIFICATE", caDER)
	writePEM(t, p.CertFile, "CERTIFICATE", leafDER)
	writePEM(t, p.KeyFile, "PRIVATE KEY", keyDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeHtpasswd writes an htpasswd file with bcrypt entries.
func writeHtpasswd(t *testing.T, path string, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for user, pass := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", user, h)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

var objectNameRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkServedRepo inspects a repository directory as the server stored it:
// every file except config is named by the SHA-256 of its content (so no
// truncated or corrupted upload was published, H23), and there are no
// leftover temporary or stray files (H20, H28). It returns a manifest of
// the files (relative path → size), locks excluded.
func checkServedRepo(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	files := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "config" {
			files[rel] = -1
			return nil
		}
		if !d.Type().IsRegular() || !objectNameRE.MatchString(d.Name()) {
			t.Errorf("stray file in served repository: %s", rel)
			return nil
		}
		if sum := testutil.Sha256File(t, p); sum != d.Name() {
			t.Errorf("%s: content hashes to %s (truncated or corrupted upload stored)", rel, sum)
		}
		if strings.HasPrefix(rel, "locks"+string(filepath.Separator)) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[rel] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	if _, ok := files["config"]; !ok {
		t.Errorf("%s: no config", dir)
	}
	return files
}

func dirEntryNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

type resticSnapshot struct {
	ID    string   `json:"id"`
	Paths []string `json:"paths"`
}

func resticSnapshots(t *testing.T, repo string, global ...string) []resticSnapshot {
	t.Helper()
	out := testutil.RunRestic(t, repo, testPassword, append(global, "snapshots", "--json")...)
	var snaps []resticSnapshot
	if err := json.Unmarshal(out, &snaps); err != nil {
		t.Fatalf("restic snapshots --json: %v\n%s", err, out)
	}
	return snaps
}

func resticCheckClean(t *testing.T, repo string, global ...string) {
	t.Helper()
	out := testutil.RunRestic(t, repo, testPassword, append(global, "check", "--read-data")...)
	if !strings.Contains(string(out), "no errors were found") {
		t.Fatalf("restic check --read-data: %s", out)
	}
}

// resticServeWorkflow runs restic's whole life cycle against repo (a rest:
// URL served from repoDir): init, two backups, snapshots, check
// --read-data, forget --keep-last 1 --prune, check again and restore.
func resticServeWorkflow(t *testing.T, repo, repoDir string, global ...string) {
	t.Helper()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	// restic 0.14 cannot represent non-UTF-8 symlink targets.
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 41, SkipNonUTF8LinkTargets: true})
	restic := func(args ...string) []byte {
		t.Helper()
		return testutil.RunRestic(t, repo, testPassword, append(slices.Clone(global), args...)...)
	}
	restic("init")
	if _, err := testutil.RunResticErr(t, repo, testPassword, append(slices.Clone(global), "init")...); err == nil {
		t.Fatal("restic init over an existing served repository succeeded")
	}
	restic("backup", "--host", "h", src)
	if err := os.WriteFile(filepath.Join(src, "added-later"), []byte("second snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	restic("backup", "--host", "h", src)
	if snaps := resticSnapshots(t, repo, global...); len(snaps) != 2 {
		t.Fatalf("restic snapshots: %d, want 2", len(snaps))
	}
	if locks := dirEntryNames(t, filepath.Join(repoDir, "locks")); len(locks) != 0 {
		t.Errorf("locks left behind: %v", locks)
	}
	resticCheckClean(t, repo, global...)
	restic("forget", "--keep-last", "1", "--prune")
	if snaps := resticSnapshots(t, repo, global...); len(snaps) != 1 {
		t.Fatalf("restic snapshots after forget: %d, want 1", len(snaps))
	}
	resticCheckClean(t, repo, global...)
	dst := filepath.Join(tmp, "dst")
	restic("restore", "latest", "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), resticCompare())
	checkServedRepo(t, repoDir)
}

// TestServeResticPlain: restic 0.14 against `cairn serve --no-auth` over
// plain HTTP, the whole life cycle.
func TestServeResticPlain(t *testing.T) {
	t.Parallel()
	testutil.RequireRestic(t)
	dir := t.TempDir()
	srv := startServe(t, "--path", dir, "--no-auth")
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server URL %q", srv.URL)
	}
	resticServeWorkflow(t, "rest:"+srv.URL+"/repo/", filepath.Join(dir, "repo"))
	srv.mustStop(t)
}

// TestServeResticTLSAuth: the same over HTTPS (a CA made here, given to
// restic with --cacert) with htpasswd authentication (credentials in the
// URL). Requests without or with wrong credentials get 401, and the
// certificate is only trusted through the test CA.
func TestServeResticTLSAuth(t *testing.T) {
	t.Parallel()
	testutil.RequireRestic(t)
	dir := t.TempDir()
	pki := newTestPKI(t, t.TempDir())
	htp := filepath.Join(t.TempDir(), "htpasswd")
	writeHtpasswd(t, htp, map[string]string{"alice": "s3cret-pass", "bob": "other"})
	srv := startServe(t, "--path", dir, "--htpasswd-file", htp, "--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile)
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("TLS server URL %q", srv.URL)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.CAPool}}}
	defer client.CloseIdleConnections()
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"alice", "wrong", 401}, {"mallory", "s3cret-pass", 401}, {"alice", "s3cret-pass", 404}} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/repo/config", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET config as %q/%q: %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.want)
		}
	}
	// Without the test CA the certificate is not trusted.
	plain := &http.Client{Transport: &http.Transport{}}
	if resp, err := plain.Get(srv.URL + "/repo/config"); err == nil {
		resp.Body.Close()
		t.Fatal("server certificate trusted without the test CA")
	}
	plain.CloseIdleConnections()

	repo := "rest:" + strings.Replace(srv.URL, "https://", "https://alice:s3cret-pass@", 1) + "/repo/"
	resticServeWorkflow(t, repo, filepath.Join(dir, "repo"), "--cacert", pki.CAFile)
	srv.mustStop(t)
}

// TestServeAppendOnlyRestic: against `cairn serve --append-only`, restic
// backups work (including deleting their own locks), but forget --prune is
// refused with 403 and afterwards nothing was lost: the same files, every
// snapshot, and restic check --read-data clean. cairn's own forget --prune
// fails too, without changing anything.
func TestServeAppendOnlyRestic(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	t.Setenv("CAIRN_CACHE_DIR", t.TempDir())
	dir := t.TempDir()
	srv := startServe(t, "--path", dir, "--no-auth", "--append-only")
	repo := "rest:" + srv.URL + "/repo/"
	repoDir := filepath.Join(dir, "repo")
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 42, SkipNonUTF8LinkTargets: true, SkipSparse: true})

	testutil.RunRestic(t, repo, testPassword, "init")
	testutil.RunRestic(t, repo, testPassword, "backup", "--host", "h", src)
	if err := os.WriteFile(filepath.Join(src, "added-later"), []byte("second snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.RunRestic(t, repo, testPassword, "backup", "--host", "h", src)
	if locks := dirEntryNames(t, filepath.Join(repoDir, "locks")); len(locks) != 0 {
		t.Fatalf("append-only: restic could not remove its locks: %v", locks)
	}
	before := checkServedRepo(t, repoDir)
	snapsBefore := resticSnapshots(t, repo)
	if len(snapsBefore) != 2 {
		t.Fatalf("snapshots: %d, want 2", len(snapsBefore))
	}

	// restic 0.14 retries a refused DELETE about ten times (~45 s) before
	// giving up. Once the 403 has been seen, restic is interrupted (it then
	// removes its lock, which append-only mode allows); it must not have
	// succeeded by then.
	sawForbidden := resticUntil(t, repo, "403 Forbidden", 60*time.Second, "forget", "--keep-last", "1", "--prune")
	if !sawForbidden {
		t.Fatal("restic forget --prune never got a 403 from the append-only server")
	}
	// If the interrupt raced restic's lock removal, a stale lock may remain
	// (its PID is gone); unlock removes only such stale locks.
	testutil.RunRestic(t, repo, testPassword, "unlock")

	// cairn's client treats 403 as permanent and fails quickly.
	if r := cairn(t, "-r", repo, "forget", "--keep-last", "1", "--prune"); r.code == 0 {
		t.Fatalf("cairn forget --prune against an append-only server exited 0:\n%s%s", r.stdout, r.stderr)
	}
	if locks := dirEntryNames(t, filepath.Join(repoDir, "locks")); len(locks) != 0 {
		t.Errorf("locks left after the refused forgets: %v", locks)
	}

	after := checkServedRepo(t, repoDir)
	for f, size := range before {
		if got, ok := after[f]; !ok || got != size {
			t.Errorf("append-only server lost or changed %s (size %d → %d, present %v)", f, size, got, ok)
		}
	}
	snapsAfter := resticSnapshots(t, repo)
	if len(snapsAfter) != len(snapsBefore) {
		t.Fatalf("snapshots after refused forget: %d, want %d", len(snapsAfter), len(snapsBefore))
	}
	resticCheckClean(t, repo)
	// Adding is still allowed.
	testutil.RunRestic(t, repo, testPassword, "backup", "--host", "h", src)
	if n := len(resticSnapshots(t, repo)); n != 3 {
		t.Fatalf("snapshots after a third backup: %d, want 3", n)
	}
	srv.mustStop(t)
}

// resticUntil runs restic until a line of its stderr contains want (then
// interrupts it with SIGINT) or it exits on its own. It fails the test if
// restic exits 0, and reports whether want was seen.
func resticUntil(t *testing.T, repo, want string, limit time.Duration, args ...string) bool {
	t.Helper()
	cmd := testutil.ResticCommand(t, repo, testPassword, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var log serveLogBuffer
	cmd.Stdout = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			log.Write([]byte(sc.Text() + "\n"))
			if !once && strings.Contains(sc.Text(), want) {
				once = true
				close(seen)
			}
		}
	}()
	found := false
	select {
	case <-seen:
		found = true
		_ = cmd.Process.Signal(os.Interrupt)
	case <-scanned:
	case <-time.After(limit):
		_ = cmd.Process.Signal(os.Interrupt)
	}
	<-scanned
	err = cmd.Wait()
	if err == nil {
		t.Fatalf("restic %v succeeded against an append-only server:\n%s", args, log.String())
	}
	select {
	case <-seen:
		found = true
	default:
	}
	if !found {
		t.Logf("restic %v output:\n%s", args, log.String())
	}
	return found
}

// TestServeGracefulShutdown: SIGTERM while two large uploads are in
// flight. The server stops accepting connections at once, the upload that
// the client completes is stored in full (200), the upload whose client
// goes away is not stored at all, no temporary file remains, and the
// process exits 0.
func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServe(t, "--path", dir, "--no-auth")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	ctx := t.Context()

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/r/?create=true", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create repository: %s", resp.Status)
	}
	repoDir := filepath.Join(dir, "r")

	type upload struct {
		data []byte
		name string
		pw   *io.PipeWriter
		resp chan error // result of the request: nil for 200
	}
	start := func(size int, seed uint64) *upload {
		u := &upload{data: make([]byte, size), resp: make(chan error, 1)}
		mrand.NewChaCha8([32]byte{byte(seed)}).Read(u.data)
		sum := sha256.Sum256(u.data)
		u.name = hex.EncodeToString(sum[:])
		pr, pw := io.Pipe()
		u.pw = pw
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/r/data/"+u.name, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(size)
		req.Header.Set("Content-Type", "application/octet-stream")
		go func() {
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			u.resp <- err
		}()
		return u
	}
	// tempOf waits until the server has created the upload's temporary
	// file, i.e. the request is being handled.
	tempOf := func(u *upload) {
		t.Helper()
		sub := filepath.Join(repoDir, "data", u.name[:2])
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			entries, _ := os.ReadDir(sub)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), u.name) && e.Name() != u.name {
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no temporary file for upload %s appeared:\n%s", u.name[:12], srv.log.String())
	}
	write := func(u *upload, from, to int) {
		t.Helper()
		if _, err := u.pw.Write(u.data[from:to]); err != nil {
			t.Fatalf("write upload body: %v", err)
		}
	}

	const size = 32 << 20
	a := start(size, 1)
	b := start(size, 2)
	write(a, 0, size/4)
	write(b, 0, size/4)
	tempOf(a)
	tempOf(b)

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The listener closes at once: wait until new connections are refused.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", srv.Addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still accepts connections 30 s after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-srv.done:
		t.Fatalf("server exited (code %d) with uploads in flight:\n%s", srv.code, srv.log.String())
	default:
	}

	// b's client goes away mid-body; a's client finishes its upload.
	b.pw.CloseWithError(errors.New("client gave up"))
	write(a, size/4, size)
	a.pw.Close()
	if err := <-a.resp; err != nil {
		t.Fatalf("upload in flight during shutdown: %v\n%s", err, srv.log.String())
	}
	if err := <-b.resp; err == nil {
		t.Fatal("abandoned upload reported success")
	}
	if code := srv.wait(t); code != 0 {
		t.Fatalf("server exited %d after SIGTERM:\n%s", code, srv.log.String())
	}

	got, err := os.ReadFile(filepath.Join(repoDir, "data", a.name[:2], a.name))
	if err != nil || !bytes.Equal(got, a.data) {
		t.Fatalf("completed upload not stored intact: %v (%d of %d bytes)", err, len(got), len(a.data))
	}
	if _, err := os.Stat(filepath.Join(repoDir, "data", b.name[:2], b.name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("abandoned upload stored: %v", err)
	}
	var stray []string
	filepath.WalkDir(repoDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !objectNameRE.MatchString(d.Name()) {
			stray = append(stray, p)
		}
		return nil
	})
	if len(stray) != 0 {
		t.Fatalf("files left after shutdown: %v", stray)
	}
}

// TestServeShutdownDuringResticBackup: SIGTERM while restic (uploads
// throttled so that a pack upload is surely in flight) backs up. The
// server exits 0, the pack being uploaded at the signal is stored in full,
// nothing partial is stored, and after a restart restic finds the
// repository clean (packs without an index are harmless leftovers).
func TestServeShutdownDuringResticBackup(t *testing.T) {
	t.Parallel()
	testutil.RequireRestic(t)
	dir := t.TempDir()
	srv := startServe(t, "--path", dir, "--no-auth")
	repo := "rest:" + srv.URL + "/repo/"
	repoDir := filepath.Join(dir, "repo")
	testutil.RunRestic(t, repo, testPassword, "init")

	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 24<<20)
	mrand.NewChaCha8([32]byte{7}).Read(data)
	if err := os.WriteFile(filepath.Join(src, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := testutil.ResticCommand(t, repo, testPassword, "backup", "--pack-size", "4", "--limit-upload", "4096", src)
	var rlog serveLogBuffer
	cmd.Stdout, cmd.Stderr = &rlog, &rlog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	resticDone := make(chan struct{})
	go func() {
		cmd.Wait()
		close(resticDone)
	}()
	defer func() {
		_ = cmd.Process.Kill()
		<-resticDone
	}()

	// Wait for a pack upload in flight: a temporary file under data/.
	var inflight string
	deadline := time.Now().Add(60 * time.Second)
	for inflight == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no pack upload seen within 60 s; restic:\n%s", rlog.String())
		}
		select {
		case <-resticDone:
			t.Fatalf("restic finished before an upload was seen:\n%s", rlog.String())
		default:
		}
		filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && len(d.Name()) > 64 && objectNameRE.MatchString(d.Name()[:64]) {
				inflight = d.Name()[:64]
				return fs.SkipAll
			}
			return nil
		})
		if inflight == "" {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if code := srv.stop(t); code != 0 {
		t.Fatalf("server exited %d after SIGTERM:\n%s", code, srv.log.String())
	}
	// restic now retries against a closed port; stop it (its lock stays).
	_ = cmd.Process.Kill()
	<-resticDone

	if _, err := os.Stat(filepath.Join(repoDir, "data", inflight[:2], inflight)); err != nil {
		t.Errorf("the pack in flight at SIGTERM was not completed: %v\nserver:\n%s", err, srv.log.String())
	}
	checkServedRepo(t, repoDir)

	srv2 := startServe(t, "--path", dir, "--no-auth")
	repo2 := "rest:" + srv2.URL + "/repo/"
	testutil.RunRestic(t, repo2, testPassword, "unlock")
	resticCheckClean(t, repo2)
	srv2.mustStop(t)
}

// TestServeStrayFilesRestic (H28): files that are not objects in a served
// repository (leftover temporary files of a killed server, rest-server's
// temp names, editor droppings, files directly under data/, an unknown
// directory) are not listed, so restic and cairn still find the
// repository clean.
func TestServeStrayFilesRestic(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	t.Setenv("CAIRN_CACHE_DIR", t.TempDir())
	dir := t.TempDir()
	srv := startServe(t, "--path", dir, "--no-auth")
	repo := "rest:" + srv.URL + "/repo/"
	repoDir := filepath.Join(dir, "repo")
	src := filepath.Join(t.TempDir(), "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 43, SkipNonUTF8LinkTargets: true, SkipSparse: true})
	testutil.RunRestic(t, repo, testPassword, "init")
	testutil.RunRestic(t, repo, testPassword, "backup", "--host", "h", src)

	var pack string
	filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && pack == "" {
			pack = d.Name()
		}
		return nil
	})
	if pack == "" {
		t.Fatal("no pack stored")
	}
	stray := map[string]string{
		filepath.Join("data", pack[:2], pack+"-tmp-123456"):                  "half a pack",
		filepath.Join("data", pack[:2], pack+".rest-server-temp987"):         "half a pack",
		filepath.Join("data", pack[:2], strings.ToUpper(pack)):               "upper-case name",
		filepath.Join("data", "README"):                                      "not in a subdirectory",
		filepath.Join("data", pack):                                          "pack name, but not below data/xx/",
		filepath.Join("data", "zz", "notes.txt"):                             "unknown subdirectory",
		filepath.Join("index", ".nfs000000001"):                              "NFS silly rename",
		filepath.Join("snapshots", strings.Repeat("a", 63)):                  "short name",
		filepath.Join("keys", strings.Repeat("b", 64)+"~"):                   "editor backup",
		filepath.Join("locks", strings.Repeat("c", 64)+"-tmp-"+"abcdef0123"): "half a lock",
	}
	for rel, content := range stray {
		p := filepath.Join(repoDir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(resticSnapshots(t, repo)); n != 1 {
		t.Fatalf("restic snapshots with stray files: %d, want 1", n)
	}
	resticCheckClean(t, repo)
	mustCairn(t, "-r", repo, "check", "--read-data")
	testutil.RunRestic(t, repo, testPassword, "backup", "--host", "h", src)
	dst := filepath.Join(t.TempDir(), "dst")
	mustCairn(t, "-r", repo, "restore", "latest", "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), resticCompare())
	srv.mustStop(t)
}

// TestServeStalledUpload (H30, H22): with --read-timeout, an upload whose
// body stops arriving is aborted by the server. Meanwhile the client's
// retry of the same object completes; the stalled first attempt's cleanup
// must not remove it (rest-server#142). Afterwards the object is stored
// intact, no temporary file remains, and a further upload is refused.
func TestServeStalledUpload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServe(t, "--path", dir, "--no-auth", "--read-timeout", "3s")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	post := func(url string, body []byte) (int, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := post(srv.URL+"/r/?create=true", nil); err != nil || code != http.StatusOK {
		t.Fatalf("create repository: %d %v", code, err)
	}
	data := make([]byte, 8<<20)
	mrand.NewChaCha8([32]byte{9}).Read(data)
	sum := sha256.Sum256(data)
	name := hex.EncodeToString(sum[:])
	sub := filepath.Join(dir, "r", "data", name[:2])
	final := filepath.Join(sub, name)

	// The first attempt, on a raw connection (net/http's client would wait
	// for its stalled body writer forever): half the body, then silence.
	conn, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /r/data/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		name, srv.Addr, len(data))
	if _, err := conn.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(sub)
		if len(entries) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first attempt never reached the server's storage")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The retry, while the first attempt still hangs (usually: should the
	// stall timeout win the race, this is a plain second upload and the
	// checks below hold all the same).
	if code, err := post(srv.URL+"/r/data/"+name, data); err != nil || code != http.StatusOK {
		t.Fatalf("retried upload: %d %v", code, err)
	}

	// The server must give up on the first attempt on its own, answering
	// with an error or closing the connection.
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	switch {
	case err == nil && resp.StatusCode == http.StatusOK:
		t.Fatal("stalled upload answered 200")
	case err == nil:
		t.Logf("stalled upload answered %s", resp.Status)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("server did not abort an upload stalled for 60 s (--read-timeout 3s):\n%s", srv.log.String())
	default:
		t.Logf("stalled upload: connection ended: %v", err)
	}
	conn.Close()

	// The first attempt's cleanup may still be running: wait until only
	// the object is left (and fail if it goes missing).
	deadline = time.Now().Add(30 * time.Second)
	for {
		var names []string
		entries, err := os.ReadDir(sub)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(names) == 1 && names[0] == name {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a stalled upload and its retry, %s holds %v, want only the object", sub, names)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, err := os.ReadFile(final); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object not intact after the stalled attempt ended: %v (%d bytes)", err, len(got))
	}
	if code, err := post(srv.URL+"/r/data/"+name, data); err != nil || code != http.StatusForbidden {
		t.Fatalf("upload over an existing object: %d %v, want 403", code, err)
	}
	srv.mustStop(t)
}
