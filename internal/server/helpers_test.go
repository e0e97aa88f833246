package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// logCapture is a slog.Handler that keeps access-log records for tests.
type logCapture struct {
	mu   sync.Mutex // guards recs
	recs []map[string]any
	ch   chan map[string]any
}

func newLogCapture() *logCapture { return &logCapture{ch: make(chan map[string]any, 10_000)} }

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCapture) WithGroup(string) slog.Handler            { return l }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, m)
	l.mu.Unlock()
	select {
	case l.ch <- m:
	default:
	}
	return nil
}

// wait returns the next record (in arrival order) for which pred holds.
func (l *logCapture) wait(t *testing.T, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-l.ch:
			if pred(m) {
				return m
			}
		case <-timeout:
			t.Fatal("log record did not appear")
		}
	}
}

// isRequest matches the access-log record of a request.
func isRequest(method, path string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return strings.HasPrefix(msg, "request") && m["method"] == method && m["path"] == path
	}
}

type testEnv struct {
	t      *testing.T
	parent string // temporary directory holding root (and nothing else)
	root   string
	store  *DirStore
	h      *Handler
	srv    *httptest.Server
	logs   *logCapture
	user   string
	pass   string
}

// fastTempDir returns a fresh directory on a tmpfs (/dev/shm) when there
// is one, else t.TempDir(). These tests are about the protocol; the cost
// of fsync on a real disk (the local backend's concern, tested there)
// would only make them slow.
func fastTempDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "cairn-server-test-"); err == nil {
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

// newEnv starts a handler on a DirStore over a fresh directory, served by
// an httptest server on a loopback TCP listener.
func newEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	parent := fastTempDir(t)
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, parent: parent, root: root, store: NewDirStore(root), logs: newLogCapture()}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(e.logs)
	}
	if !cfg.NoAuth && cfg.HtpasswdFile == "" {
		cfg.NoAuth = true
	}
	h, err := New(context.Background(), e.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.Close()
		_ = h.Close()
		_ = e.store.Close()
	})
	return e
}

type result struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request through the standard client.
func (e *testEnv) do(method, path string, body []byte, hdr ...string) result {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if e.user != "" {
		req.SetBasicAuth(e.user, e.pass)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

// expect sends a request and checks its status.
func (e *testEnv) expect(want int, method, path string, body []byte, hdr ...string) result {
	e.t.Helper()
	r := e.do(method, path, body, hdr...)
	if r.status != want {
		e.t.Errorf("%s %s: status %d, want %d (body %q)", method, path, r.status, want, truncate(r.body))
	}
	return r
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// raw sends request bytes as they are over a new TCP connection and
// returns the response status (0 if the server closed without one).
func (e *testEnv) raw(req string) int {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func rawRequest(method, target string, body []byte, headers ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != nil {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.String()
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// treeFiles lists every path below dir (relative, slash separated).
func treeFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// regularFiles lists the regular files below dir.
func regularFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	for _, p := range treeFiles(t, dir) {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(p)))
		if err == nil && fi.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out
}
