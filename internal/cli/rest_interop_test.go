package cli

// cairn's REST client against REST servers: `cairn serve` (with TLS and
// htpasswd) and `rclone serve restic`, cross-checked with restic 0.14;
// connection reuse under many requests (hazard H29); and a benchmark of
// backups over REST against a local repository.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/server"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// restInteropSuite runs the core interop checks against a REST server whose
// base URL is base ("rest:http://host:port/", credentials included) and
// whose repositories are stored below dir:
//   - cairn init, backup of a generated tree, restore --verify identical;
//   - restic check --read-data clean on the repository cairn wrote;
//   - restic init + backup, then cairn lists, checks and restores it.
func restInteropSuite(t *testing.T, base, dir string, cairnGlobal, resticGlobal []string) {
	t.Helper()
	cairnEnv(t)
	t.Setenv("CAIRN_CACHE_DIR", t.TempDir())
	tmp := t.TempDir()
	with := func(global []string, args ...string) []string {
		return append(append([]string{}, global...), args...)
	}

	// cairn writes, cairn and restic read.
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 51})
	cairnRepo := base + "by-cairn/"
	mustCairn(t, with(cairnGlobal, "-r", cairnRepo, "init")...)
	if r := cairn(t, with(cairnGlobal, "-r", cairnRepo, "init")...); r.code == 0 {
		t.Fatal("cairn init over an existing repository succeeded")
	}
	mustCairn(t, with(cairnGlobal, "-r", cairnRepo, "backup", src)...)
	dst := filepath.Join(tmp, "dst-cairn")
	mustCairn(t, with(cairnGlobal, "-r", cairnRepo, "restore", "latest", "--target", dst, "--verify")...)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), restoreCompare())
	mustCairn(t, with(cairnGlobal, "-r", cairnRepo, "check", "--read-data")...)
	resticCheckClean(t, cairnRepo, resticGlobal...)
	checkServedRepo(t, filepath.Join(dir, "by-cairn"))

	// restic writes, cairn reads.
	src2 := filepath.Join(tmp, "src2")
	// restic 0.14 cannot represent non-UTF-8 symlink targets.
	testutil.GenerateTree(t, src2, testutil.GenOptions{Seed: 52, SkipNonUTF8LinkTargets: true})
	resticRepo := base + "by-restic/"
	testutil.RunRestic(t, resticRepo, testPassword, with(resticGlobal, "init")...)
	testutil.RunRestic(t, resticRepo, testPassword, with(resticGlobal, "backup", "--host", "h", src2)...)
	var snaps []snapshotJSON
	out := mustCairn(t, with(cairnGlobal, "-r", resticRepo, "snapshots", "--json")...)
	if err := json.Unmarshal([]byte(out), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("cairn snapshots --json of restic's repository: %v %s", err, out)
	}
	mustCairn(t, with(cairnGlobal, "-r", resticRepo, "check", "--read-data")...)
	dst2 := filepath.Join(tmp, "dst-restic")
	mustCairn(t, with(cairnGlobal, "-r", resticRepo, "restore", snaps[0].ID, "--target", dst2, "--verify")...)
	testutil.CompareTrees(t, src2, filepath.Join(dst2, src2), testutil.CompareOptions{IgnoreRoot: true})
	// cairn adds a snapshot to restic's repository; restic accepts it.
	mustCairn(t, with(cairnGlobal, "-r", resticRepo, "backup", src2)...)
	if n := len(resticSnapshots(t, resticRepo, resticGlobal...)); n != 2 {
		t.Fatalf("restic sees %d snapshots, want 2", n)
	}
	resticCheckClean(t, resticRepo, resticGlobal...)
	checkServedRepo(t, filepath.Join(dir, "by-restic"))
}

// TestRESTInteropCairnServe: cairn's REST client against `cairn serve`
// (a separate process) over HTTPS with htpasswd authentication.
func TestRESTInteropCairnServe(t *testing.T) {
	testutil.RequireRestic(t)
	dir := t.TempDir()
	pki := newTestPKI(t, t.TempDir())
	htp := filepath.Join(t.TempDir(), "htpasswd")
	writeHtpasswd(t, htp, map[string]string{"carol": "pw-carol"})
	srv := startServe(t, "--path", dir, "--htpasswd-file", htp, "--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile)
	base := "rest:" + strings.Replace(srv.URL, "https://", "https://carol:pw-carol@", 1) + "/"

	// Wrong credentials and a missing CA fail, without creating anything.
	cairnEnv(t)
	t.Setenv("CAIRN_CACHE_DIR", t.TempDir())
	bad := "rest:" + strings.Replace(srv.URL, "https://", "https://carol:wrong@", 1) + "/nope/"
	if r := cairn(t, "--cacert", pki.CAFile, "-r", bad, "init"); r.code == 0 {
		t.Fatal("cairn init with a wrong password succeeded")
	}
	if r := cairn(t, "-r", base+"nope/", "init"); r.code == 0 {
		t.Fatal("cairn init trusted the server without --cacert")
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("a refused init created the repository")
	}

	restInteropSuite(t, base, dir, []string{"--cacert", pki.CAFile}, []string{"--cacert", pki.CAFile})
	srv.mustStop(t)
}

// rcloneAddrRE matches rclone's "Serving restic REST API on URL" line.
var rcloneAddrRE = regexp.MustCompile(`Serving restic REST API on \[?(https?://[^\s\]]+)`)

// TestRESTInteropRclone: cairn's REST client against `rclone serve
// restic` (the other widespread REST server).
func TestRESTInteropRclone(t *testing.T) {
	testutil.RequireRestic(t)
	rclone := testutil.RequireTool(t, "rclone")
	dir := t.TempDir()
	cmd := exec.Command(rclone, "serve", "restic", "--config", filepath.Join(t.TempDir(), "rclone.conf"),
		"--addr", "127.0.0.1:0", dir)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RCLONE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	srv := startChildServer(t, "rclone serve restic", cmd, rcloneAddrRE)
	restInteropSuite(t, "rest:"+srv.URL+"/", dir, nil, nil)
}

// TestRESTInteropCredentialsNotPrinted: the password in a rest: URL never
// appears in cairn's output or error messages (restic prints such URLs
// with the password replaced), whether the command succeeds or the server
// refuses the credentials.
func TestRESTInteropCredentialsNotPrinted(t *testing.T) {
	cairnEnv(t)
	t.Setenv("CAIRN_CACHE_DIR", t.TempDir())
	const secret = "Secr3t-in-URL"
	tmp := t.TempDir()
	htp := filepath.Join(tmp, "htpasswd")
	writeHtpasswd(t, htp, map[string]string{"dave": secret})
	srv := startInProcServerConfig(t, filepath.Join(tmp, "served"), server.Config{HtpasswdFile: htp})
	repo := "rest:" + strings.Replace(srv.URL, "http://", "http://dave:"+secret+"@", 1) + "/repo/"
	badRepo := "rest:" + strings.Replace(srv.URL, "http://", "http://dave:Wr0ng-"+secret+"@", 1) + "/repo/"
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ok   bool
		args []string
	}{
		{false, []string{"-r", badRepo, "init"}},
		{true, []string{"-r", repo, "init"}},
		{false, []string{"-r", repo, "init"}},
		{false, []string{"-r", badRepo, "snapshots"}},
		{true, []string{"-r", repo, "-v", "backup", src}},
		{true, []string{"-r", repo, "--json", "backup", src}},
		{true, []string{"-r", repo, "snapshots"}},
		{true, []string{"-r", repo, "-v", "check"}},
		{true, []string{"-r", repo, "-v", "restore", "latest", "--target", filepath.Join(tmp, "dst")}},
	} {
		r := cairn(t, c.args...)
		if (r.code == 0) != c.ok {
			t.Errorf("cairn %v: exit %d, want success %v\n%s%s", c.args[2:], r.code, c.ok, r.stdout, r.stderr)
		}
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("cairn %v prints the REST password:\n%s%s", c.args[2:], r.stdout, r.stderr)
		}
	}
	t.Setenv("CAIRN_REPOSITORY", strings.TrimSuffix(repo, "repo/")+"repo2/")
	r := cairn(t, "--json", "init", "--repository-version", "2")
	if r.code != 0 {
		t.Errorf("cairn --json init: exit %d", r.code)
	}
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Errorf("cairn --json init prints the REST password:\n%s%s", r.stdout, r.stderr)
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// inProcServer is `cairn serve`'s handler on a loopback port in this
// process, counting accepted connections and requests.
type inProcServer struct {
	URL      string // "http://127.0.0.1:PORT"
	Port     int
	accepted atomic.Int64
	requests atomic.Int64
}

func startInProcServer(tb testing.TB, dir string) *inProcServer {
	tb.Helper()
	return startInProcServerConfig(tb, dir, server.Config{NoAuth: true})
}

func startInProcServerConfig(tb testing.TB, dir string, cfg server.Config) *inProcServer {
	tb.Helper()
	store := server.NewDirStore(dir)
	h, err := server.New(context.Background(), store, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &inProcServer{Port: ln.Addr().(*net.TCPAddr).Port}
	s.URL = "http://" + ln.Addr().String()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h.ServeHTTP(w, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, countingListener{ln, &s.accepted}, counted, server.ServeConfig{}) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
		h.Close()
		store.Close()
	})
	return s
}

// timeWaitTo counts the sockets in TIME_WAIT (state 06) with port as the
// local or remote port, from /proc/net/tcp and /proc/net/tcp6.
func timeWaitTo(t *testing.T, port int) int {
	t.Helper()
	n := 0
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(name)
		if err != nil {
			if name == "/proc/net/tcp6" && os.IsNotExist(err) {
				continue
			}
			t.Fatalf("read %s: %v", name, err)
		}
		lines := strings.Split(string(data), "\n")
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "06" {
				continue
			}
			if procPort(f[1]) == port || procPort(f[2]) == port {
				n++
			}
		}
	}
	return n
}

// procPort parses the port of a /proc/net/tcp address "0100007F:1F90".
func procPort(addr string) int {
	_, hexPort, ok := strings.Cut(addr, ":")
	if !ok {
		return -1
	}
	p, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return -1
	}
	return int(p)
}

// builtWithRace reports whether the test binary was built with -race.
func builtWithRace() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// writeManySmallFiles writes n small files with distinct content into
// n/100 directories below dir.
func writeManySmallFiles(t *testing.T, dir string, n int) {
	t.Helper()
	rng := mrand.NewChaCha8([32]byte{29})
	buf := make([]byte, 256)
	for i := range n {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		size := 16 + int(rng.Uint64()%200)
		rng.Read(buf[:size])
		content := append([]byte(fmt.Sprintf("file %d\n", i)), buf[:size]...)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d", i)), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// shmTempDir returns a new directory on /dev/shm (tmpfs) if there is one,
// else t.TempDir(): tens of thousands of small files are created and
// compared much faster there, and this test is about the network.
func shmTempDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "cairn-cli-test-"); err == nil {
			t.Cleanup(func() {
				if err := os.RemoveAll(dir); err != nil {
					t.Errorf("remove %s: %v", dir, err)
				}
			})
			return dir
		}
	}
	return t.TempDir()
}

// TestRESTConnectionReuse (H29): with --connections 5 the client keeps to
// at most 5 pooled connections (+3 slack) through a backup of many small
// files, an incremental backup without cache (hundreds of tree reads) and
// a restore without cache, and leaves few TIME_WAIT sockets behind. The
// size is 20,000 files, or 5,000 under -race or -short (the CI run uses
// -race, so CI backs up 5,000 files in 50 directories).
func TestRESTConnectionReuse(t *testing.T) {
	const maxConns = 5 + 3
	nfiles := 20000
	if builtWithRace() || testing.Short() {
		nfiles = 5000
	}
	cairnEnv(t)
	t.Setenv("CAIRN_CACHE_DIR", t.TempDir())
	tmp := shmTempDir(t)
	src := filepath.Join(tmp, "src")
	start := time.Now()
	writeManySmallFiles(t, src, nfiles)
	t.Logf("wrote %d files in %v", nfiles, time.Since(start).Round(time.Millisecond))
	srv := startInProcServer(t, filepath.Join(tmp, "served"))
	repo := "rest:" + srv.URL + "/repo/"
	baseTW := timeWaitTo(t, srv.Port)

	// phase runs one cairn command and checks the connections it opened;
	// minRequests > 0 also requires that the command made that many
	// requests, so that the bound on connections means something.
	phase := func(name string, minRequests int64, args ...string) {
		t.Helper()
		a0, r0 := srv.accepted.Load(), srv.requests.Load()
		start := time.Now()
		mustCairn(t, append([]string{"-r", repo, "--connections", "5"}, args...)...)
		a, r := srv.accepted.Load()-a0, srv.requests.Load()-r0
		t.Logf("%-30s %5d requests over %d connections, %2d TIME_WAIT in all, %v", name, r, a,
			timeWaitTo(t, srv.Port)-baseTW, time.Since(start).Round(time.Millisecond))
		if a > maxConns {
			t.Errorf("%s: %d connections accepted for %d requests, want <= %d (connections not reused)", name, a, r, maxConns)
		}
		if r < minRequests {
			t.Errorf("%s: only %d requests, want >= %d to show connection reuse", name, r, minRequests)
		}
	}
	phase("init", 0, "init")
	phase(fmt.Sprintf("backup of %d files", nfiles), 0, "backup", "-q", src)
	for i := 0; i < nfiles; i += nfiles / 50 {
		p := filepath.Join(src, fmt.Sprintf("d%03d", i/100), fmt.Sprintf("f%05d", i))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("changed %d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Without a cache the trees of hundreds (CI: 50) of directories are
	// read from the server: many requests, which must share a few
	// connections.
	const minRequests = 4 * maxConns
	phase("incremental backup, no cache", minRequests, "--no-cache", "backup", "-q", src)
	dst := filepath.Join(tmp, "dst")
	phase("restore, no cache", minRequests, "--no-cache", "restore", "latest", "--target", dst)
	start = time.Now()
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true})
	t.Logf("compared in %v", time.Since(start).Round(time.Millisecond))
	if tw := timeWaitTo(t, srv.Port) - baseTW; tw > 20 {
		t.Errorf("%d sockets in TIME_WAIT to port %d, want <= 20", tw, srv.Port)
	}
}

// benchBytes is the amount of data the backup benchmarks back up.
const benchBytes = 200 << 20

// benchSource writes benchBytes of incompressible data in 4 MiB files
// (plus some small ones) below dir.
func benchSource(b *testing.B, dir string) int64 {
	b.Helper()
	rng := mrand.NewChaCha8([32]byte{99})
	var total int64
	buf := make([]byte, 4<<20)
	for i := 0; total < benchBytes; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%8))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		size := len(buf)
		if i%5 == 4 {
			size = 1 + int(rng.Uint64()%(64<<10)) // a small file now and then
		}
		rng.Read(buf[:size])
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d", i)), buf[:size], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(size)
	}
	return total
}

func benchCairn(b *testing.B, args ...string) {
	b.Helper()
	var out, errb bytes.Buffer
	if code := run(args, strings.NewReader(""), &out, &errb); code != 0 {
		b.Fatalf("cairn %v: exit %d\n%s%s", args, code, out.String(), errb.String())
	}
}

func benchBackup(b *testing.B, overREST bool) {
	b.Setenv("CAIRN_KDF_PARAMS", "1024,1,1")
	b.Setenv("CAIRN_PASSWORD", testPassword)
	b.Setenv("CAIRN_REPOSITORY", "")
	b.Setenv("CAIRN_CACHE_DIR", b.TempDir())
	tmp := b.TempDir()
	src := filepath.Join(tmp, "src")
	b.SetBytes(benchSource(b, src))
	var srv *inProcServer
	if overREST {
		srv = startInProcServer(b, filepath.Join(tmp, "served"))
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		repo := filepath.Join(tmp, fmt.Sprintf("repo%d", i))
		if overREST {
			repo = fmt.Sprintf("rest:%s/repo%d/", srv.URL, i)
		}
		benchCairn(b, "-r", repo, "init")
		b.StartTimer()
		benchCairn(b, "-r", repo, "backup", "-q", src)
	}
}

// BenchmarkBackupLocal: a first backup of ~200 MiB into a local repository.
func BenchmarkBackupLocal(b *testing.B) { benchBackup(b, false) }

// BenchmarkBackupREST: the same through cairn's REST client and `cairn
// serve`'s handler on loopback, storing on the same disk.
func BenchmarkBackupREST(b *testing.B) { benchBackup(b, true) }
