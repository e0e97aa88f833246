package rest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/stall"
	"github.com/cairn-backup/cairn/internal/core"
)

func hashName(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestParseConfig(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	cfg, err := parseConfig("rest:http://host:8000/repo", getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.URL.String() != "http://host:8000/repo/" || cfg.Connections != DefaultConnections {
		t.Errorf("got %v / %d", cfg.URL, cfg.Connections)
	}
	cfg, err = parseConfig("https://u:p%40ss@host/", getenv)
	if err != nil {
		t.Fatal(err)
	}
	if pass, _ := cfg.URL.User.Password(); cfg.URL.User.Username() != "u" || pass != "p@ss" {
		t.Errorf("credentials %v", cfg.URL.User)
	}
	for _, bad := range []string{"rest:ftp://host/", "rest:http:///path/", "rest:http://host/?x=1", "rest:%zz", "rest:/just/a/path/"} {
		if _, err := parseConfig(bad, getenv); err == nil {
			t.Errorf("parseConfig(%q) succeeded", bad)
		}
	}
	// A parse error must not echo the password.
	if _, err := parseConfig("rest:http://user:secret@host:bad/", getenv); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad port error: %v", err)
	}

	env["RESTIC_REST_USERNAME"], env["RESTIC_REST_PASSWORD"] = "ru", "rp"
	cfg, _ = parseConfig("rest:http://host/", getenv)
	if pass, _ := cfg.URL.User.Password(); cfg.URL.User.Username() != "ru" || pass != "rp" {
		t.Errorf("RESTIC_ credentials: %v", cfg.URL.User)
	}
	env["CAIRN_REST_USERNAME"], env["CAIRN_REST_PASSWORD"] = "cu", "cp"
	cfg, _ = parseConfig("rest:http://host/", getenv)
	if pass, _ := cfg.URL.User.Password(); cfg.URL.User.Username() != "cu" || pass != "cp" {
		t.Errorf("CAIRN_ credentials: %v", cfg.URL.User)
	}
	cfg, _ = parseConfig("rest:http://url:pw@host/", getenv)
	if cfg.URL.User.Username() != "url" {
		t.Errorf("URL credentials must win: %v", cfg.URL.User)
	}
	be, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(be.Location(), "pw") || strings.Contains(be.Location(), "url@") || be.Location() != "rest:http://host/" {
		t.Errorf("Location %q", be.Location())
	}
	t.Setenv("CAIRN_REST_USERNAME", "envuser")
	t.Setenv("CAIRN_REST_PASSWORD", "envpw")
	cfg, err = ParseConfig("rest:http://host/")
	if err != nil || cfg.URL.User.Username() != "envuser" {
		t.Errorf("ParseConfig from the environment: %v %v", cfg.URL, err)
	}
}

// fake is a scriptable REST server.
type fake struct {
	t       *testing.T
	srv     *httptest.Server
	handler func(w http.ResponseWriter, r *http.Request)

	mu       sync.Mutex // guards requests
	requests []*http.Request
}

func newFake(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) *fake {
	f := &fake{t: t, handler: handler}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Clone(context.Background()))
		f.mu.Unlock()
		f.handler(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) backend(cfg Config) *Backend {
	f.t.Helper()
	c, err := parseConfig("rest:"+f.srv.URL+"/repo/", func(string) string { return "" })
	if err != nil {
		f.t.Fatal(err)
	}
	c.Connections = cfg.Connections
	c.StallTimeout = cfg.StallTimeout
	if cfg.URL != nil {
		c.URL.User = cfg.URL.User
	}
	be, err := Open(context.Background(), c)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = be.Close() })
	return be
}

func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

func TestRequestHeaders(t *testing.T) {
	data := []byte("some object data")
	name := hashName(data)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			_, _ = io.Copy(io.Discard, r.Body)
		case http.MethodGet:
			_, _ = w.Write(data) // ignores Range; the client copes
		case http.MethodHead:
			w.Header().Set("Content-Length", "16")
		}
	})
	be := f.backend(Config{URL: mustURL("http://alice:pw@x/")})
	ctx := context.Background()
	h := backend.Handle{Type: core.PackFile, Name: name}
	if err := be.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := backend.LoadAll(ctx, be, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Load(ctx, h, 5, 3, func(io.Reader) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Stat(ctx, h); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ranges := []string{}
	for _, r := range f.requests {
		if r.Header.Get("Accept") != ContentTypeV2 {
			t.Errorf("%s %s: Accept %q", r.Method, r.URL, r.Header.Get("Accept"))
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "pw" {
			t.Errorf("%s %s: no basic auth", r.Method, r.URL)
		}
		if r.URL.Path != "/repo/data/"+name {
			t.Errorf("%s: path %q (no data/xx subdirectory)", r.Method, r.URL.Path)
		}
		switch r.Method {
		case http.MethodPost:
			if r.ContentLength != int64(len(data)) || len(r.TransferEncoding) != 0 {
				t.Errorf("POST: Content-Length %d, Transfer-Encoding %v", r.ContentLength, r.TransferEncoding)
			}
			if r.Header.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("POST: Content-Type %q", r.Header.Get("Content-Type"))
			}
		case http.MethodGet:
			ranges = append(ranges, r.Header.Get("Range"))
		}
	}
	if strings.Join(ranges, " ") != "bytes=0- bytes=3-7" {
		t.Errorf("ranges %q", ranges)
	}
}

func mustURL(s string) *url.URL {
	c, err := parseConfig(s, func(string) string { return "" })
	if err != nil {
		panic(err)
	}
	return c.URL
}

func TestLoadRangeHandling(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	name := hashName(data)
	h := backend.Handle{Type: core.PackFile, Name: name}
	var mode atomic.Value
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "ignore-range": // a server without Range support
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_, _ = w.Write(data)
		case "short-range": // claims fewer bytes than asked
			w.Header().Set("Content-Range", "bytes 990-999/1000")
			w.WriteHeader(206)
			_, _ = w.Write(data[990:])
		case "wrong-start":
			w.Header().Set("Content-Range", "bytes 0-9/1000")
			w.WriteHeader(206)
			_, _ = w.Write(data[:10])
		case "no-content-range": // 206 without saying which bytes
			w.WriteHeader(206)
			_, _ = w.Write(data[:10])
		case "rclone-empty": // rclone's answer to a range at the end
			w.Header().Set("Content-Range", "bytes 1000-999/1000")
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(206)
		case "rclone-past-end": // rclone's answer to a range past the end
			w.Header().Set("Content-Range", "bytes 1001-999/1000")
			w.WriteHeader(206)
		case "cut-body": // Content-Length promises more than is sent
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			_, _ = w.Write(data[:500])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "416":
			if r.Method == http.MethodHead {
				w.Header().Set("Content-Length", "1000")
				return
			}
			w.Header().Set("Content-Range", "bytes */1000")
			w.WriteHeader(416)
		}
	})
	be := f.backend(Config{})
	ctx := context.Background()
	load := func(length int, offset int64) ([]byte, error) {
		var got []byte
		err := be.Load(ctx, h, length, offset, func(rd io.Reader) error {
			var err error
			got, err = io.ReadAll(rd)
			return err
		})
		return got, err
	}

	mode.Store("ignore-range")
	for _, c := range []struct {
		length int
		offset int64
	}{{0, 0}, {10, 0}, {0, 500}, {100, 900}, {1, 999}} {
		got, err := load(c.length, c.offset)
		want := data[c.offset:]
		if c.length > 0 {
			want = want[:c.length]
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("200 for range %d+%d: err %v, %d bytes", c.offset, c.length, err, len(got))
		}
	}
	if _, err := load(200, 900); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("200, range past end: %v", err)
	}
	if _, err := load(0, 2000); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("200, offset past end: %v", err)
	}

	mode.Store("short-range")
	if _, err := load(20, 990); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short 206: %v", err)
	}
	mode.Store("wrong-start")
	if _, err := load(10, 5); err == nil {
		t.Error("206 with the wrong start accepted")
	}
	mode.Store("no-content-range")
	if _, err := load(10, 5); err == nil {
		t.Error("206 without Content-Range accepted")
	}
	mode.Store("rclone-empty")
	if got, err := load(0, 1000); err != nil || len(got) != 0 {
		t.Errorf("empty 206 at the end, length 0: %v, %d bytes", err, len(got))
	}
	called := false
	err := be.Load(ctx, h, 1, 1000, func(io.Reader) error { called = true; return nil })
	if !errors.Is(err, io.ErrUnexpectedEOF) || called {
		t.Errorf("empty 206 at the end, length 1: %v (fn called: %v)", err, called)
	}
	mode.Store("rclone-past-end")
	if _, err := load(0, 1001); err == nil {
		t.Error("206 for a range past the end accepted")
	}
	mode.Store("cut-body")
	if _, err := load(0, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut body: %v", err)
	}
	mode.Store("416")
	if got, err := load(0, 1000); err != nil || len(got) != 0 {
		t.Errorf("416 at the end, length 0: %v, %d bytes", err, len(got))
	}
	if _, err := load(1, 1000); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("416 at the end, length 1: %v", err)
	}
	if _, err := load(0, 1001); err == nil || !isPermanent(err) {
		t.Errorf("416 past the end: %v (permanent %v)", err, isPermanent(err))
	}
}

func TestStatusErrors(t *testing.T) {
	var status atomic.Int32
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "server says no", int(status.Load()))
	})
	be := f.backend(Config{})
	ctx := context.Background()
	data := []byte("x")
	h := backend.Handle{Type: core.SnapshotFile, Name: hashName(data)}
	type op struct {
		name string
		fn   func() error
	}
	ops := []op{
		{"save", func() error { return be.Save(ctx, h, backend.NewByteReader(data)) }},
		{"load", func() error { return be.Load(ctx, h, 0, 0, func(io.Reader) error { return nil }) }},
		{"stat", func() error { _, err := be.Stat(ctx, h); return err }},
		{"list", func() error { return be.List(ctx, core.SnapshotFile, func(backend.FileInfo) error { return nil }) }},
		{"remove", func() error { return be.Remove(ctx, h) }},
	}
	for _, code := range []int{400, 401, 403, 404, 411, 416, 500, 502, 503, 507} {
		status.Store(int32(code))
		for _, o := range ops {
			err := o.fn()
			if code == 404 && (o.name == "list" || o.name == "remove") {
				if err != nil {
					t.Errorf("%s with 404: %v, want success", o.name, err)
				}
				continue
			}
			if code == 416 && o.name == "load" {
				// 416 makes Load ask for the size; the HEAD fails with 416 too.
				if err == nil || !isPermanent(err) {
					t.Errorf("load with 416: %v", err)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s with %d: no error", o.name, code)
				continue
			}
			wantPerm := code == 401 || code == 403 || code == 404 || code == 416 || code == 507
			if isPermanent(err) != wantPerm {
				t.Errorf("%s with %d: permanent=%v, want %v (%v)", o.name, code, isPermanent(err), wantPerm, err)
			}
			if got := errors.Is(err, backend.ErrNotExist); got != (code == 404) {
				t.Errorf("%s with %d: ErrNotExist=%v", o.name, code, got)
			}
			if got := errors.Is(err, backend.ErrNoSpace); got != (code == 507) {
				t.Errorf("%s with %d: ErrNoSpace=%v", o.name, code, got)
			}
			if got := errors.Is(err, backend.ErrAlreadyExists); got != (code == 403 && o.name == "save") {
				t.Errorf("%s with %d: ErrAlreadyExists=%v", o.name, code, got)
			}
			if o.name != "stat" && !strings.Contains(err.Error(), "server says no") {
				t.Errorf("%s with %d: message lacks the body: %v", o.name, code, err)
			}
		}
	}
	// Invalid arguments are permanent errors without a request.
	f.mu.Lock()
	n := len(f.requests)
	f.mu.Unlock()
	bad := backend.Handle{Type: core.PackFile, Name: "../config"}
	for _, err := range []error{
		be.Save(ctx, bad, backend.NewByteReader(data)),
		be.Load(ctx, bad, 0, 0, func(io.Reader) error { return nil }),
		be.Load(ctx, h, -1, 0, func(io.Reader) error { return nil }),
		be.Remove(ctx, bad),
	} {
		if err == nil || !isPermanent(err) {
			t.Errorf("invalid argument: %v", err)
		}
	}
	if _, err := be.Stat(ctx, bad); err == nil || !isPermanent(err) {
		t.Errorf("stat of invalid handle: %v", err)
	}
	f.mu.Lock()
	if len(f.requests) != n {
		t.Errorf("invalid arguments sent %d requests", len(f.requests)-n)
	}
	f.mu.Unlock()
}

func TestNetworkErrorsTransient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, _ := parseConfig("rest:http://"+addr+"/", func(string) string { return "" })
	be, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = be.Stat(context.Background(), backend.Handle{Type: core.ConfigFile})
	if err == nil || isPermanent(err) || errors.Is(err, backend.ErrNotExist) {
		t.Errorf("connection refused: %v (permanent %v)", err, isPermanent(err))
	}
}

func TestListing(t *testing.T) {
	valid := map[string]int64{}
	var names []string
	for i := 0; i < 5; i++ {
		n := hashName([]byte{byte(i)})
		valid[n] = int64(10 + i)
		names = append(names, n)
	}
	gone := hashName([]byte("deleted meanwhile"))
	var mode atomic.Value
	var heads atomic.Int32
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		m := mode.Load().(string)
		if r.Method == http.MethodHead {
			heads.Add(1)
			n := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			if size, ok := valid[n]; ok {
				w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
				return
			}
			w.WriteHeader(404)
			return
		}
		switch m {
		case "v1":
			w.Header().Set("Content-Type", ContentTypeV1)
			_ = json.NewEncoder(w).Encode(append(append([]string{}, names...), gone, "junk", names[0]+"-tmp-1"))
		case "v1-no-type":
			_ = json.NewEncoder(w).Encode(names)
		case "v2":
			w.Header().Set("Content-Type", ContentTypeV2)
			var entries []listEntry
			for n, s := range valid {
				entries = append(entries, listEntry{n, s})
			}
			entries = append(entries, listEntry{"junk", 1})
			_ = json.NewEncoder(w).Encode(entries)
		case "404":
			http.NotFound(w, r)
		case "rclone-404":
			w.Header().Set("Server", "rclone/v1.60")
			http.NotFound(w, r)
		case "truncated":
			w.Header().Set("Content-Type", ContentTypeV2)
			_, _ = io.WriteString(w, `[{"name":"`+names[0]+`","size":1},`)
		case "null":
			w.Header().Set("Content-Type", ContentTypeV2)
			_, _ = io.WriteString(w, `null`)
		case "trailing":
			_, _ = io.WriteString(w, `[] []`)
		case "negative":
			w.Header().Set("Content-Type", ContentTypeV2)
			_, _ = io.WriteString(w, `[{"name":"`+names[0]+`","size":-1}]`)
		}
	})
	be := f.backend(Config{Connections: 1})
	ctx := context.Background()
	list := func() (map[string]int64, error) {
		got := map[string]int64{}
		err := be.List(ctx, core.IndexFile, func(fi backend.FileInfo) error {
			// Using the backend inside fn must not deadlock, even with
			// one connection.
			if _, err := be.Stat(ctx, backend.Handle{Type: core.IndexFile, Name: fi.Name}); err != nil {
				return err
			}
			got[fi.Name] = fi.Size
			return nil
		})
		return got, err
	}
	for _, m := range []string{"v1", "v1-no-type", "v2"} {
		mode.Store(m)
		heads.Store(0)
		got, err := list()
		if err != nil {
			t.Errorf("%s: %v", m, err)
			continue
		}
		if len(got) != len(valid) {
			t.Errorf("%s: %d entries, want %d: %v", m, len(got), len(valid), got)
		}
		for n, s := range valid {
			if got[n] != s {
				t.Errorf("%s: %s size %d, want %d", m, n[:8], got[n], s)
			}
		}
		wantHeads := int32(len(valid)) // the Stat calls inside fn
		if m == "v1" {
			wantHeads += int32(len(valid)) + 1 // sizes, including the vanished one
		} else if m == "v1-no-type" {
			wantHeads += int32(len(valid))
		}
		if heads.Load() != wantHeads {
			t.Errorf("%s: %d HEAD requests, want %d", m, heads.Load(), wantHeads)
		}
	}
	mode.Store("404")
	if got, err := list(); err != nil || len(got) != 0 {
		t.Errorf("404 listing: %v %v", got, err)
	}
	for _, m := range []string{"rclone-404", "truncated", "null", "trailing", "negative"} {
		mode.Store(m)
		got, err := list()
		if err == nil {
			t.Errorf("%s listing: no error (%v)", m, got)
		}
		if len(got) != 0 {
			t.Errorf("%s listing: entries reported before the error: %v", m, got)
		}
	}
}

func TestCreate(t *testing.T) {
	var configExists atomic.Bool
	var created atomic.Int32
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead && r.URL.Path == "/repo/config":
			if !configExists.Load() {
				w.WriteHeader(404)
				return
			}
			w.Header().Set("Content-Length", "10")
		case r.Method == http.MethodPost && r.URL.Path == "/repo/" && r.URL.RawQuery == "create=true":
			if r.ContentLength != 0 {
				t.Errorf("create with body length %d", r.ContentLength)
			}
			created.Add(1)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(400)
		}
	})
	cfg, _ := parseConfig("rest:"+f.srv.URL+"/repo/", func(string) string { return "" })
	be, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	be.Close()
	if created.Load() != 1 {
		t.Errorf("create requests: %d", created.Load())
	}
	configExists.Store(true)
	if _, err := Create(context.Background(), cfg); !errors.Is(err, backend.ErrAlreadyExists) {
		t.Errorf("create over an existing config: %v", err)
	}
	if created.Load() != 1 {
		t.Errorf("create requests: %d", created.Load())
	}
}

// TestCreateLayout: CreateLayout only asks the server to create the
// repository, without checking the config (rclone's server creates what
// is missing and keeps the rest).
func TestCreateLayout(t *testing.T) {
	var created atomic.Int32
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.RawQuery != "create=true" {
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(400)
			return
		}
		if created.Add(1) == 3 {
			http.Error(w, "no", 500)
		}
	})
	be := f.backend(Config{})
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := be.CreateLayout(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var se *StatusError
	if err := be.CreateLayout(ctx); !errors.As(err, &se) || se.StatusCode != 500 {
		t.Errorf("failed create: %v", err)
	}
}

// countingTransport counts the requests it carries and the calls to
// CloseIdleConnections.
type countingTransport struct {
	base              *http.Transport
	requests, closeds atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	return c.base.RoundTrip(r)
}

func (c *countingTransport) CloseIdleConnections() {
	c.closeds.Add(1)
	c.base.CloseIdleConnections()
}

// TestCustomTransport: Config.Transport carries every request, stall
// detection still applies, Close closes its idle connections, and
// Location replaces the URL in Location() and messages.
func TestCustomTransport(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/config") {
			<-block // never answers
			return
		}
		http.Error(w, "nope", http.StatusInternalServerError)
	})
	ct := &countingTransport{base: &http.Transport{}}
	defer ct.base.CloseIdleConnections()
	cfg, _ := parseConfig("rest:"+f.srv.URL+"/repo/", func(string) string { return "" })
	cfg.Transport = ct
	cfg.Location = "elsewhere:repo"
	cfg.StallTimeout = 100 * time.Millisecond
	be, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if be.Location() != "elsewhere:repo" {
		t.Errorf("Location %q", be.Location())
	}
	ctx := context.Background()
	err = be.Remove(ctx, backend.Handle{Type: core.IndexFile, Name: hashName(nil)})
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 {
		t.Errorf("Remove: %v", err)
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: core.ConfigFile}); !errors.Is(err, stall.ErrStalled) {
		t.Errorf("Stat of a stalled server: %v", err)
	}
	if err := be.CreateLayout(ctx); err == nil || !strings.Contains(err.Error(), "elsewhere:repo") {
		t.Errorf("error does not name the location: %v", err)
	}
	if n := ct.requests.Load(); n != 3 {
		t.Errorf("%d requests through the transport, want 3", n)
	}
	_ = be.Close()
	if ct.closeds.Load() != 1 {
		t.Error("Close did not close the transport's idle connections")
	}
	cfg.CACert = "/some/ca.pem"
	if _, err := Open(context.Background(), cfg); err == nil {
		t.Error("Open with a transport and a CA certificate succeeded")
	}
}

// TestConcurrencyLimit: no more than Connections requests are in flight.
func TestConcurrencyLimit(t *testing.T) {
	const conns = 3
	var inFlight, maxInFlight atomic.Int32
	arrived := make(chan struct{}, 100)
	release := make(chan struct{})
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		arrived <- struct{}{}
		<-release
		inFlight.Add(-1)
		w.Header().Set("Content-Length", "1")
	})
	be := f.backend(Config{Connections: conns})
	var wg sync.WaitGroup
	for i := 0; i < 3*conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := be.Stat(context.Background(), backend.Handle{Type: core.ConfigFile}); err != nil {
				t.Error(err)
			}
		}()
	}
	for i := 0; i < conns; i++ {
		<-arrived
	}
	close(release)
	wg.Wait()
	if m := maxInFlight.Load(); m > conns {
		t.Errorf("%d requests in flight, limit %d", m, conns)
	}
}

// TestSlotWaitHonoursContext: a request waiting for a free connection
// slot gives up when its context ends.
func TestSlotWaitHonoursContext(t *testing.T) {
	const conns = 2
	block := make(chan struct{})
	arrived := make(chan struct{}, conns)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-block
	})
	be := f.backend(Config{Connections: conns})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(block)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = be.Stat(context.Background(), backend.Handle{Type: core.ConfigFile})
		}()
	}
	for i := 0; i < conns; i++ {
		<-arrived
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := be.Stat(ctx, backend.Handle{Type: core.ConfigFile}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stat waiting for a slot: %v", err)
	}
}

// TestBodiesDrained: responses the caller does not read to the end (error
// bodies, partially consumed loads) still leave the connection reusable.
func TestBodiesDrained(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 200_000)
	var newConns atomic.Int32
	f := &fake{t: t}
	f.handler = func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/data/"):
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = w.Write(big)
		default:
			w.WriteHeader(500)
			_, _ = w.Write(bytes.Repeat([]byte("error text "), 1000))
		}
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.handler(w, r) }))
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	f.srv.Start()
	defer f.srv.Close()
	be := f.backend(Config{Connections: 2})
	ctx := context.Background()
	h := backend.Handle{Type: core.PackFile, Name: hashName(big)}
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				err := be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
					_, err := io.ReadFull(rd, make([]byte, 10))
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				if err := be.Remove(ctx, h); err == nil {
					t.Error("500 not reported")
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := newConns.Load(); n > 2+2 {
		t.Errorf("%d connections opened for 400 requests with 2 connections", n)
	}
}

// TestStall: a server that stops sending is abandoned after the stall
// timeout, and the error is transient.
func TestStall(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/config") {
			// No response at all.
			<-block
			return
		}
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		_, _ = w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		<-block
	})
	be := f.backend(Config{StallTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	_, err := be.Stat(ctx, backend.Handle{Type: core.ConfigFile})
	if !errors.Is(err, stall.ErrStalled) || isPermanent(err) {
		t.Errorf("no response: %v", err)
	}
	// A slow consumer is not a stalled server: fn sleeps between reads.
	err = be.Load(ctx, backend.Handle{Type: core.PackFile, Name: hashName(nil)}, 0, 0, func(rd io.Reader) error {
		if _, err := io.ReadFull(rd, make([]byte, 100)); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		_, err := io.ReadAll(rd)
		return err
	})
	if !errors.Is(err, stall.ErrStalled) || isPermanent(err) {
		t.Errorf("stalled body: %v", err)
	}
}

// TestSaveLengthMismatch: a reader whose data does not match its Length
// fails before the server receives a complete body.
func TestSaveLengthMismatch(t *testing.T) {
	type got struct {
		n   int
		err error
	}
	results := make(chan got, 10)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		results <- got{len(b), err}
	})
	be := f.backend(Config{})
	data := bytes.Repeat([]byte("d"), 100_000)
	h := backend.Handle{Type: core.ConfigFile}
	for _, claim := range []int64{0, 1, 99_999, 100_001} {
		rd := &lying{Reader: bytes.NewReader(data), length: claim}
		if err := be.Save(context.Background(), h, rd); err == nil {
			t.Errorf("claim %d: Save succeeded", claim)
		}
		if claim == 0 {
			continue // refused before any request
		}
		r := <-results
		if r.err == nil {
			t.Errorf("claim %d: server received a complete %d-byte body", claim, r.n)
		}
	}
}

type lying struct {
	*bytes.Reader
	length int64
}

func (l *lying) Rewind() error { _, err := l.Seek(0, io.SeekStart); return err }
func (l *lying) Length() int64 { return l.length }

func TestStatusErrorMessage(t *testing.T) {
	e := &StatusError{Op: "save", Method: "POST", URL: "http://h/r/data/x", StatusCode: 500, Status: "500 Internal Server Error", Body: "disk on fire\n"}
	if s := e.Error(); !strings.Contains(s, "disk on fire") || !strings.Contains(s, "POST") {
		t.Errorf("message %q", s)
	}
	if e.Permanent() {
		t.Error("500 permanent")
	}
	var se *StatusError
	if !errors.As(fmt.Errorf("wrapped: %w", e), &se) {
		t.Error("errors.As")
	}
}
