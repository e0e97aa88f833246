package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

func TestRepoCreate(t *testing.T) {
	e := newEnv(t, Config{})
	e.expect(400, "POST", "/", nil)
	e.expect(400, "POST", "/?create=yes", nil)
	e.expect(405, "GET", "/", nil)
	r := e.expect(405, "DELETE", "/", nil)
	if r.header.Get("Allow") != "POST" {
		t.Errorf("Allow = %q", r.header.Get("Allow"))
	}
	e.expect(404, "HEAD", "/config", nil)
	e.expect(404, "GET", "/keys/", nil)
	e.expect(200, "POST", "/?create=true", nil)
	e.expect(200, "POST", "/?create=true", nil) // idempotent
	for _, d := range backend.Dirs() {
		fi, err := os.Stat(filepath.Join(e.root, filepath.FromSlash(d)))
		if err != nil || !fi.IsDir() {
			t.Errorf("layout dir %s: %v", d, err)
		}
	}
	e.expect(200, "POST", "/alice/?create=true", nil)
	e.expect(200, "POST", "/alice/work/?create=true", nil)
	e.expect(404, "POST", "/alice/work/x/?create=true", nil)
	if _, err := os.Stat(filepath.Join(e.root, "alice", "work", "keys")); err != nil {
		t.Error(err)
	}
	r = e.expect(200, "GET", "/alice/work/keys/", nil)
	if string(r.body) != "[]" {
		t.Errorf("empty listing %q, want []", r.body)
	}
	// A folder that is only a parent of a repository is not one.
	e.expect(200, "POST", "/bob/laptop/?create=true", nil)
	e.expect(404, "GET", "/bob/keys/", nil)
	e.expect(404, "HEAD", "/bob/config", nil)
	e.expect(404, "POST", "/bob/keys/"+testID, []byte("x"))
}

func TestConfigRoutes(t *testing.T) {
	for _, prefix := range []string{"/", "/alice/", "/alice/work/"} {
		t.Run(prefix, func(t *testing.T) {
			e := newEnv(t, Config{})
			e.expect(200, "POST", prefix+"?create=true", nil)
			cfg := []byte("encrypted config stand-in")
			e.expect(404, "HEAD", prefix+"config", nil)
			e.expect(404, "GET", prefix+"config", nil)
			e.expect(200, "POST", prefix+"config", cfg)
			e.expect(403, "POST", prefix+"config", []byte("another"))
			r := e.expect(200, "HEAD", prefix+"config", nil)
			if r.header.Get("Content-Length") != strconv.Itoa(len(cfg)) {
				t.Errorf("HEAD config Content-Length %q", r.header.Get("Content-Length"))
			}
			r = e.expect(200, "GET", prefix+"config", nil)
			if !bytes.Equal(r.body, cfg) {
				t.Errorf("GET config = %q", r.body)
			}
			r = e.expect(206, "GET", prefix+"config", nil, "Range", "bytes=10-15")
			if string(r.body) != string(cfg[10:16]) {
				t.Errorf("ranged config = %q", r.body)
			}
			r = e.expect(405, "PUT", prefix+"config", cfg)
			if r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			e.expect(200, "DELETE", prefix+"config", nil)
			e.expect(200, "DELETE", prefix+"config", nil)
			e.expect(404, "HEAD", prefix+"config", nil)
		})
	}
}

func TestObjectRoutes(t *testing.T) {
	e := newEnv(t, Config{})
	e.expect(200, "POST", "/?create=true", nil)
	for _, ft := range core.AllFileTypes {
		data := randomBytes(t, 5000)
		name := hashName(data)
		p := "/" + ft.String() + "/" + name
		e.expect(404, "HEAD", p, nil)
		e.expect(404, "GET", p, nil)
		e.expect(400, "POST", p, append([]byte{data[0] ^ 1}, data[1:]...)) // hash mismatch
		e.expect(404, "HEAD", p, nil)
		e.expect(200, "POST", p, data)
		e.expect(403, "POST", p, data)
		r := e.expect(200, "HEAD", p, nil)
		if r.header.Get("Content-Length") != "5000" {
			t.Errorf("HEAD %s Content-Length %q", p, r.header.Get("Content-Length"))
		}
		r = e.expect(200, "GET", p, nil)
		if !bytes.Equal(r.body, data) {
			t.Errorf("GET %s: wrong body", p)
		}
		r = e.expect(206, "GET", p, nil, "Range", "bytes=100-199")
		if !bytes.Equal(r.body, data[100:200]) || r.header.Get("Content-Range") != "bytes 100-199/5000" {
			t.Errorf("GET %s range: %d bytes, Content-Range %q", p, len(r.body), r.header.Get("Content-Range"))
		}
		r = e.expect(206, "GET", p, nil, "Range", "bytes=4990-")
		if !bytes.Equal(r.body, data[4990:]) {
			t.Errorf("GET %s open range: wrong body", p)
		}
		r = e.expect(206, "GET", p, nil, "Range", "bytes=4990-9999")
		if !bytes.Equal(r.body, data[4990:]) {
			t.Errorf("GET %s clamped range: wrong body", p)
		}
		r = e.expect(416, "GET", p, nil, "Range", "bytes=5000-")
		if r.header.Get("Content-Range") != "bytes */5000" {
			t.Errorf("416 Content-Range %q", r.header.Get("Content-Range"))
		}
		e.expect(405, "PUT", p, data)
		e.expect(405, "HEAD", "/"+ft.String()+"/", nil)
		e.expect(405, "POST", "/"+ft.String()+"/", data)
		e.expect(200, "DELETE", p, nil)
		e.expect(200, "DELETE", p, nil)
		e.expect(404, "GET", p, nil)
		// Malformed names.
		e.expect(404, "GET", "/"+ft.String()+"/"+strings.ToUpper(name), nil)
		e.expect(404, "POST", "/"+ft.String()+"/"+name[:63], data)
		e.expect(404, "GET", "/"+ft.String(), nil)
	}
	// Packs are stored in data/xx and nowhere else.
	data := randomBytes(t, 100)
	name := hashName(data)
	e.expect(200, "POST", "/data/"+name, data)
	if _, err := os.Stat(filepath.Join(e.root, "data", name[:2], name)); err != nil {
		t.Errorf("pack not in data/xx: %v", err)
	}
	e.expect(404, "GET", "/data/"+name[:2]+"/"+name, nil)
	// Missing repository.
	e.expect(404, "GET", "/nope/data/"+name, nil)
	e.expect(404, "POST", "/nope/data/"+name, data)
	e.expect(404, "DELETE", "/nope/data/"+name, nil)
	if _, err := os.Stat(filepath.Join(e.root, "nope")); !os.IsNotExist(err) {
		t.Errorf("request to a missing repository created it: %v", err)
	}
}

func TestEmptyObject(t *testing.T) {
	e := newEnv(t, Config{})
	e.expect(200, "POST", "/?create=true", nil)
	name := hashName(nil)
	e.expect(200, "POST", "/locks/"+name, []byte{})
	r := e.expect(200, "GET", "/locks/"+name, nil, "Range", "bytes=0-")
	if len(r.body) != 0 {
		t.Errorf("empty object body %q", r.body)
	}
	e.expect(416, "GET", "/locks/"+name, nil, "Range", "bytes=0-0")
}

func TestLengthRequired(t *testing.T) {
	e := newEnv(t, Config{})
	e.expect(200, "POST", "/?create=true", nil)
	data := []byte("chunked upload")
	name := hashName(data)
	chunked := "POST /keys/" + name + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(data), data)
	if got := e.raw(chunked); got != 411 {
		t.Errorf("chunked upload: status %d, want 411", got)
	}
	if got := e.raw(rawRequest("POST", "/keys/"+name, nil, "Content-Length: abc")); got != 400 {
		t.Errorf("bad Content-Length: status %d, want 400", got)
	}
	e.expect(404, "HEAD", "/keys/"+name, nil)
}

type listEntry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

func TestListing(t *testing.T) {
	e := newEnv(t, Config{})
	e.expect(200, "POST", "/?create=true", nil)
	want := map[string]int64{}
	for i := 0; i < 40; i++ {
		data := randomBytes(t, 10+i)
		name := hashName(data)
		e.expect(200, "POST", "/data/"+name, data)
		want[name] = int64(len(data))
	}
	// Stray files: temporary files, junk, files directly under data/, a
	// directory with an ID name.
	some := slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	})[0]
	writeFile(t, filepath.Join(e.root, "data", some[:2], some+"-tmp-0123"), "partial")
	writeFile(t, filepath.Join(e.root, "data", some[:2], "junk"), "x")
	writeFile(t, filepath.Join(e.root, "data", testID), "misplaced")
	if err := os.Mkdir(filepath.Join(e.root, "data", "zz"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.root, "data", "zz", testID), "bad subdir")

	r := e.expect(200, "GET", "/data/", nil)
	if ct := r.header.Get("Content-Type"); ct != ContentTypeV1 {
		t.Errorf("v1 Content-Type %q", ct)
	}
	var names []string
	if err := json.Unmarshal(r.body, &names); err != nil {
		t.Fatalf("v1 listing %q: %v", truncate(r.body), err)
	}
	if len(names) != len(want) {
		t.Errorf("v1 listing has %d names, want %d", len(names), len(want))
	}
	for _, n := range names {
		if _, ok := want[n]; !ok {
			t.Errorf("v1 listing has unexpected %q", n)
		}
	}

	for _, accept := range []string{ContentTypeV2, "application/json, " + ContentTypeV2 + "; q=1"} {
		r = e.expect(200, "GET", "/data/", nil, "Accept", accept)
		if ct := r.header.Get("Content-Type"); ct != ContentTypeV2 {
			t.Errorf("v2 Content-Type %q", ct)
		}
		var entries []listEntry
		if err := json.Unmarshal(r.body, &entries); err != nil {
			t.Fatalf("v2 listing: %v", err)
		}
		got := map[string]int64{}
		for _, en := range entries {
			got[en.Name] = en.Size
		}
		if len(got) != len(want) || len(entries) != len(want) {
			t.Errorf("v2 listing has %d entries, want %d", len(entries), len(want))
		}
		for n, s := range want {
			if got[n] != s {
				t.Errorf("v2 listing: %s size %d, want %d", n[:8], got[n], s)
			}
		}
	}
	r = e.expect(200, "GET", "/snapshots/", nil, "Accept", ContentTypeV2)
	if string(r.body) != "[]" {
		t.Errorf("empty v2 listing %q", r.body)
	}
}

// TestListingError: a listing that fails part way must not look complete.
func TestListingError(t *testing.T) {
	store := newMemStore()
	store.repos[""] = &failingListBackend{Backend: mem.New(), after: 3}
	h, err := New(context.Background(), store, Config{NoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, after := range []int{0, 3} {
		store.repos[""].(*failingListBackend).after = after
		resp, err := http.Get(srv.URL + "/index/")
		if err != nil {
			if after == 0 {
				t.Fatalf("after %d: %v", after, err)
			}
			continue // the aborted response never arrived: fine
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if after == 0 {
			if resp.StatusCode != 500 {
				t.Errorf("listing failing at once: status %d", resp.StatusCode)
			}
			continue
		}
		var names []string
		if rerr == nil && json.Unmarshal(body, &names) == nil {
			t.Errorf("listing failing after %d entries parsed as complete: %q", after, body)
		}
	}
}

type failingListBackend struct {
	*mem.Backend
	after int
}

func (b *failingListBackend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	for i := 0; i < b.after; i++ {
		if err := fn(backend.FileInfo{Name: fmt.Sprintf("%064x", i), Size: 1}); err != nil {
			return err
		}
	}
	return fmt.Errorf("list %v: disk on fire", t)
}

// memStore is a Store of in-memory repositories.
type memStore struct {
	mu    sync.Mutex // guards repos
	repos map[string]backend.Backend
}

func newMemStore() *memStore { return &memStore{repos: make(map[string]backend.Backend)} }

func (s *memStore) Open(ctx context.Context, p string) (backend.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if be, ok := s.repos[p]; ok {
		return be, nil
	}
	return nil, fmt.Errorf("open %q: %w", p, backend.ErrNotExist)
}

func (s *memStore) Create(ctx context.Context, p string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.repos[p]; !ok {
		s.repos[p] = mem.New()
	}
	return nil
}

func (s *memStore) Exists(ctx context.Context, p string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.repos[p]
	return ok, nil
}

func TestMemStore(t *testing.T) {
	store := newMemStore()
	h, err := New(context.Background(), store, Config{NoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &testEnv{t: t, srv: srv}
	e.expect(200, "POST", "/a/?create=true", nil)
	data := []byte("in memory")
	e.expect(200, "POST", "/a/snapshots/"+hashName(data), data)
	r := e.expect(200, "GET", "/a/snapshots/", nil, "Accept", ContentTypeV2)
	if !strings.Contains(string(r.body), hashName(data)) {
		t.Errorf("listing %q", r.body)
	}
	if _, err := New(context.Background(), store, Config{NoAuth: true, MaxSize: 10}); err == nil {
		t.Error("quota accepted on a store that cannot measure usage")
	}
}

func TestAppendOnly(t *testing.T) {
	e := newEnv(t, Config{AppendOnly: true})
	e.expect(200, "POST", "/?create=true", nil)
	e.expect(200, "POST", "/config", []byte("cfg"))
	e.expect(403, "POST", "/config", []byte("overwrite"))
	e.expect(403, "DELETE", "/config", nil)
	for _, ft := range core.AllFileTypes {
		data := randomBytes(t, 100)
		p := "/" + ft.String() + "/" + hashName(data)
		e.expect(200, "POST", p, data)
		e.expect(403, "POST", p, data)
		if ft == core.LockFile {
			e.expect(200, "DELETE", p, nil)
			e.expect(404, "HEAD", p, nil)
		} else {
			e.expect(403, "DELETE", p, nil)
			e.expect(200, "HEAD", p, nil)
		}
	}
	e.expect(200, "HEAD", "/config", nil)
}

func TestAuth(t *testing.T) {
	dir := t.TempDir()
	htp := filepath.Join(dir, "htpasswd")
	writeFile(t, htp, "alice:"+bcryptHash(t, "alicepw")+"\nbob:"+shaHash("bobpw")+"\ncarol:$apr1$xyz$abc\ndave:davepw\n")
	e := newEnv(t, Config{HtpasswdFile: htp, HtpasswdCheckInterval: time.Nanosecond})

	check := func(user, pass string, want int) {
		t.Helper()
		e.user, e.pass = user, pass
		r := e.expect(want, "POST", "/?create=true", nil)
		if want == 401 {
			if strings.TrimSpace(string(r.body)) != "Unauthorized" {
				t.Errorf("401 body %q", r.body)
			}
			if r.header.Get("WWW-Authenticate") != "" {
				t.Errorf("401 with WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		}
	}
	check("", "", 401)
	check("alice", "wrong", 401)
	check("alice", "", 401)
	check("nobody", "alicepw", 401)
	check("carol", "xyz", 401)
	check("dave", "davepw", 401)
	check("alice", "alicepw", 200)
	check("alice", "alicepw", 200) // cached
	check("bob", "bobpw", 200)
	check("bob", "bobpw2", 401)
	// 401 also for paths that do not exist.
	e.user = ""
	e.expect(401, "GET", "/no/such/thing", nil)

	// The file is reloaded when it changes.
	writeFile(t, htp, "erin:"+shaHash("erinpw")+"\n")
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(htp, future, future); err != nil {
		t.Fatal(err)
	}
	check("erin", "erinpw", 200)
	check("bob", "bobpw", 401)
	check("alice", "alicepw", 401) // the credential cache is dropped on reload

	// ReloadHtpasswd (SIGHUP) reads the file at once.
	writeFile(t, htp, "frank:"+shaHash("frankpw")+"\n")
	if err := e.h.ReloadHtpasswd(); err != nil {
		t.Fatal(err)
	}
	check("frank", "frankpw", 200)

	// A missing htpasswd file refuses to start.
	if _, err := New(context.Background(), e.store, Config{HtpasswdFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("started without an htpasswd file")
	}
	if _, err := New(context.Background(), e.store, Config{}); err == nil {
		t.Error("started with neither auth nor NoAuth")
	}
}

func TestPrivateRepos(t *testing.T) {
	dir := t.TempDir()
	htp := filepath.Join(dir, "htpasswd")
	writeFile(t, htp, "alice:"+shaHash("a")+"\nbob:"+shaHash("b")+"\nmetrics:"+shaHash("m")+"\n")
	e := newEnv(t, Config{HtpasswdFile: htp, PrivateRepos: true, Prometheus: true})
	e.user, e.pass = "alice", "a"
	e.expect(200, "POST", "/alice/?create=true", nil)
	e.expect(200, "POST", "/alice/work/?create=true", nil)
	e.expect(401, "POST", "/bob/?create=true", nil)
	e.expect(401, "POST", "/?create=true", nil)
	data := []byte("x")
	e.expect(200, "POST", "/alice/keys/"+hashName(data), data)
	e.expect(200, "GET", "/alice/keys/", nil)
	e.user, e.pass = "bob", "b"
	e.expect(401, "GET", "/alice/keys/", nil)
	e.expect(401, "GET", "/alice/keys/"+hashName(data), nil)
	e.expect(401, "DELETE", "/alice/keys/"+hashName(data), nil)
	e.expect(401, "GET", "/alice/work/config", nil)
	e.expect(401, "GET", "/metrics", nil)
	e.user, e.pass = "metrics", "m"
	e.expect(200, "GET", "/metrics", nil)
	e.user, e.pass = "alice", "a"
	e.expect(200, "HEAD", "/alice/keys/"+hashName(data), nil)
}

func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	htp := filepath.Join(dir, "htpasswd")
	writeFile(t, htp, "alice:"+shaHash("a")+"\n")
	e := newEnv(t, Config{HtpasswdFile: htp, Prometheus: true})
	e.user, e.pass = "alice", "a"
	e.expect(200, "POST", "/repo/?create=true", nil)
	data := randomBytes(t, 1234)
	p := "/repo/data/" + hashName(data)
	e.expect(200, "POST", p, data)
	e.expect(200, "GET", p, nil)
	e.expect(206, "GET", p, nil, "Range", "bytes=0-99")
	e.expect(200, "DELETE", p, nil)
	e.expect(200, "POST", "/repo/config", []byte("cfg")) // not counted
	r := e.expect(200, "GET", "/metrics", nil)
	labels := `{repo="repo",type="data",user="alice"}`
	for _, line := range []string{
		"rest_server_blob_write_total" + labels + " 1",
		"rest_server_blob_write_bytes_total" + labels + " 1234",
		"rest_server_blob_read_total" + labels + " 2",
		"rest_server_blob_read_bytes_total" + labels + " 1334",
		"rest_server_blob_delete_total" + labels + " 1",
		"rest_server_blob_delete_bytes_total" + labels + " 1234",
	} {
		if !strings.Contains(string(r.body), line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
	if strings.Contains(string(r.body), `type="config"`) {
		t.Error("config requests counted")
	}
	if !strings.Contains(string(r.body), "go_goroutines") {
		t.Error("Go collector missing")
	}
	e.user = ""
	e.expect(401, "GET", "/metrics", nil)

	e2 := newEnv(t, Config{HtpasswdFile: htp, Prometheus: true, PrometheusNoAuth: true})
	e2.expect(200, "GET", "/metrics", nil)
	e2.expect(401, "GET", "/config", nil)
	// Without --prometheus, /metrics is just a missing route.
	e3 := newEnv(t, Config{})
	e3.expect(404, "GET", "/metrics", nil)
}

func TestQuota(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	// Existing content counts at startup.
	if err := os.MkdirAll(filepath.Join(root, "old"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "old", "file"), strings.Repeat("x", 1000))
	store := NewDirStore(root)
	h, err := New(context.Background(), store, Config{NoAuth: true, MaxSize: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	if h.quota.usage() != 1000 {
		t.Fatalf("startup usage %d, want 1000", h.quota.usage())
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &testEnv{t: t, srv: srv}
	e.expect(200, "POST", "/?create=true", nil)

	a := randomBytes(t, 6000)
	e.expect(200, "POST", "/data/"+hashName(a), a)
	if h.quota.usage() != 7000 {
		t.Errorf("usage %d, want 7000", h.quota.usage())
	}
	before := treeFiles(t, root)
	b := randomBytes(t, 3001)
	e.expect(507, "POST", "/data/"+hashName(b), b)
	e.expect(404, "HEAD", "/data/"+hashName(b), nil)
	if got := treeFiles(t, root); !slices.Equal(got, before) {
		t.Errorf("over-quota upload left files: %v", diff(got, before))
	}
	// A failed upload (hash mismatch) gives its reservation back.
	c := randomBytes(t, 2000)
	e.expect(400, "POST", "/data/"+hashName(c), append([]byte{^c[0]}, c[1:]...))
	if h.quota.usage() != 7000 {
		t.Errorf("usage after failed upload %d, want 7000", h.quota.usage())
	}
	// Exactly filling the quota works; one byte more does not.
	d := randomBytes(t, 3000)
	e.expect(200, "POST", "/keys/"+hashName(d), d)
	one := []byte{1}
	e.expect(507, "POST", "/locks/"+hashName(one), one)
	// Deleting frees space; deleting twice frees it once.
	e.expect(200, "DELETE", "/data/"+hashName(a), nil)
	e.expect(200, "DELETE", "/data/"+hashName(a), nil)
	if h.quota.usage() != 4000 {
		t.Errorf("usage after delete %d, want 4000", h.quota.usage())
	}
	e.expect(200, "POST", "/data/"+hashName(b), b)
	// The config counts too.
	e.expect(507, "POST", "/config", make([]byte, 4000))
	e.expect(200, "POST", "/config", make([]byte, 100))
	if h.quota.usage() != 7101 {
		t.Errorf("usage %d, want 7101", h.quota.usage())
	}
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, "+"+x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, "-"+x)
		}
	}
	return out
}

func TestRuntimeLock(t *testing.T) {
	run := t.TempDir()
	root := t.TempDir()
	h1, err := New(context.Background(), NewDirStore(root), Config{NoAuth: true, RuntimeDir: run})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), NewDirStore(root), Config{NoAuth: true, RuntimeDir: run}); err == nil {
		t.Fatal("two servers on one root")
	}
	// Another root is fine.
	h3, err := New(context.Background(), NewDirStore(t.TempDir()), Config{NoAuth: true, RuntimeDir: run})
	if err != nil {
		t.Fatal(err)
	}
	defer h3.Close()
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	h2, err := New(context.Background(), NewDirStore(root), Config{NoAuth: true, RuntimeDir: run})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	h2.Close()
	// Nothing is written into the served root, and the runtime dir may
	// not be inside it.
	if got := treeFiles(t, root); len(got) != 0 {
		t.Errorf("runtime state written into the root: %v", got)
	}
	for _, bad := range []string{root, filepath.Join(root, "alice", "run")} {
		if _, err := New(context.Background(), NewDirStore(root), Config{NoAuth: true, RuntimeDir: bad}); err == nil {
			t.Errorf("runtime dir %s inside the root accepted", bad)
		}
	}
	if got := treeFiles(t, root); len(got) != 0 {
		t.Errorf("refused runtime dir created: %v", got)
	}
}

// TestTraversal sends hostile paths as raw bytes (so no client cleans
// them) and checks that none succeeds and nothing appears outside root.
func TestTraversal(t *testing.T) {
	e := newEnv(t, Config{})
	e.expect(200, "POST", "/?create=true", nil)
	e.expect(200, "POST", "/a/?create=true", nil)
	writeFile(t, filepath.Join(e.parent, "secret"), "do not serve")
	e.expect(200, "POST", "/config", []byte("cfg"))
	before := treeFiles(t, e.parent)

	data := []byte("payload")
	id := hashName(data)
	targets := []string{
		"/../config", "/../secret", "/..", "/../", "/../?create=true",
		"/%2e%2e/config", "/%2E%2E/?create=true", "/%2e%2e%2fsecret", "/..%2fsecret", "/..%2F..%2Fsecret",
		"/a/../config", "/a/%2e%2e/config", "/a/..%2f..%2fsecret", "/a%2f..%2f..%2fx/?create=true",
		"/%2Fetc/config", "/%2f/config", "//config", "//?create=true", "/a//config", "///keys/",
		"/./config", "/a/./config", "/%2e/config", "/.%2e/config", "/a/.hidden/?create=true",
		"/a%00/config", "/a%00b/?create=true", "/%00/config",
		"/a%5C..%5C..%5Cx/?create=true", "/..%5Csecret",
		"/data/../../secret", "/data/..%2f..%2fsecret", "/keys/" + id + "/../../secret",
		"/keys/%2e%2e%2f%2e%2e%2fsecret", "/data/" + id[:2] + "/" + id,
		"/a/b/c/?create=true", "/a/b/c/config", "/x/y/z/keys/" + id,
		"/.htpasswd/config", "/..;/config", "/%252e%252e/config",
		"http://evil/../config", "/a/.%2e/.%2e/secret",
	}
	for _, target := range targets {
		for _, method := range []string{"GET", "HEAD", "POST", "DELETE"} {
			body := []byte(nil)
			if method == "POST" {
				body = data
			}
			status := e.raw(rawRequest(method, target, body))
			if status >= 200 && status < 300 {
				t.Errorf("%s %s: status %d", method, target, status)
			}
		}
	}
	// A raw NUL byte in the request line is refused by the HTTP parser.
	if s := e.raw("GET /a\x00/config HTTP/1.1\r\nHost: x\r\n\r\n"); s >= 200 && s < 300 {
		t.Errorf("raw NUL: status %d", s)
	}
	if got := treeFiles(t, e.parent); !slices.Equal(got, before) {
		t.Errorf("hostile requests changed the tree: %v", diff(got, before))
	}
}

// TestTruncatedUpload: a client that sends part of the body and closes
// the connection leaves nothing visible and no temporary file.
func TestTruncatedUpload(t *testing.T) {
	for _, cut := range []int{0, 1, 50_000, 99_999} {
		e := newEnv(t, Config{})
		e.expect(200, "POST", "/?create=true", nil)
		data := randomBytes(t, 100_000)
		name := hashName(data)
		for _, p := range []string{"/data/" + name, "/config"} {
			conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			hdr := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", p, len(data))
			if _, err := conn.Write(append([]byte(hdr), data[:cut]...)); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			rec := e.logs.wait(t, isRequest("POST", p))
			if rec["status"] == int64(200) {
				t.Errorf("cut at %d: truncated upload of %s logged as %v", cut, p, rec["status"])
			}
			e.expect(404, "HEAD", p, nil)
		}
		for _, f := range regularFiles(t, e.root) {
			t.Errorf("cut at %d: file left behind: %s", cut, f)
		}
	}
}

// TestStallTimeout: a client that stops sending mid-body is cut off.
func TestStallTimeout(t *testing.T) {
	e := newEnv(t, Config{StallTimeout: 100 * time.Millisecond})
	e.expect(200, "POST", "/?create=true", nil)
	data := randomBytes(t, 10_000)
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hdr := fmt.Sprintf("POST /data/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", hashName(data), len(data))
	if _, err := conn.Write(append([]byte(hdr), data[:5000]...)); err != nil {
		t.Fatal(err)
	}
	// The connection stays open but silent; the server must give up.
	rec := e.logs.wait(t, isRequest("POST", "/data/"+hashName(data)))
	if rec["status"] == int64(200) {
		t.Fatalf("stalled upload logged as %v", rec["status"])
	}
	e.expect(404, "HEAD", "/data/"+hashName(data), nil)
	if files := regularFiles(t, e.root); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}

func TestConcurrentSameObject(t *testing.T) {
	e := newEnv(t, Config{})
	e.expect(200, "POST", "/?create=true", nil)
	data := randomBytes(t, 300_000)
	name := hashName(data)
	const n = 8
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Post(e.srv.URL+"/data/"+name, "application/octet-stream", bytes.NewReader(data))
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}(i)
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 403:
		default:
			t.Errorf("status %d", s)
		}
	}
	if ok != 1 {
		t.Errorf("%d uploads succeeded, want 1 (%v)", ok, statuses)
	}
	r := e.expect(200, "GET", "/data/"+name, nil)
	if !bytes.Equal(r.body, data) {
		t.Error("stored content differs")
	}
	files := regularFiles(t, e.root)
	if len(files) != 1 {
		t.Errorf("files: %v", files)
	}
}

func TestAccessLog(t *testing.T) {
	e := newEnv(t, Config{})
	e.expect(200, "POST", "/?create=true", nil)
	rec := e.logs.wait(t, isRequest("POST", "/"))
	for _, k := range []string{"method", "path", "status", "bytes_out", "bytes_in", "duration", "user", "remote"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("access log lacks %q: %v", k, rec)
		}
	}
	if rec["path"] != "/" || rec["status"] != int64(200) {
		t.Errorf("access log record %v", rec)
	}
	e.expect(404, "GET", "/nope/config", nil)
	rec = e.logs.wait(t, isRequest("GET", "/nope/config"))
	if rec["status"] != int64(404) {
		t.Errorf("access log status %v", rec["status"])
	}
}

// TestGracefulShutdown: cancelling Serve's context lets an upload that is
// in flight finish, and then Serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	root := t.TempDir()
	store := NewDirStore(root)
	h, err := New(context.Background(), store, Config{NoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			started <- struct{}{}
		}
		h.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, wrapped, ServeConfig{ShutdownTimeout: 30 * time.Second}) }()

	data := randomBytes(t, 1<<20)
	name := hashName(data)
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", "http://"+ln.Addr().String()+"/data/"+name, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	type res struct {
		status int
		err    error
	}
	done := make(chan res, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- res{0, err}
			return
		}
		resp.Body.Close()
		done <- res{resp.StatusCode, nil}
	}()
	if _, err := pw.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	<-started
	cancel() // shutdown begins with the upload half done

	if _, err := pw.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	r := <-done
	if r.err != nil || r.status != 200 {
		t.Fatalf("in-flight upload: status %d, err %v", r.status, r.err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("listener still accepting after Serve returned")
	}
	be, err := store.Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := backend.LoadAll(context.Background(), be, backend.Handle{Type: core.PackFile, Name: name})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("upload not stored intact: %v", err)
	}
}
