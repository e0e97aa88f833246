package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzServerPaths sends arbitrary method/path/body combinations to a
// handler over a real directory store and checks that the handler never
// panics (other than the deliberate http.ErrAbortHandler) and never
// creates anything outside the store's root or under a name the path
// rules forbid.
func FuzzServerPaths(f *testing.F) {
	parent := fastTempDir(f)
	root := filepath.Join(parent, "root")
	store := NewDirStore(root)
	ctx := context.Background()
	for _, p := range []string{"", "a", "a/b"} {
		if err := store.Create(ctx, p); err != nil {
			f.Fatal(err)
		}
	}
	h, err := New(ctx, store, Config{NoAuth: true, MaxSize: 1 << 30, Prometheus: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = h.Close(); _ = store.Close() })

	data := []byte("fuzz payload")
	id := hashName(data)
	seeds := []struct {
		m    uint8
		path string
		body []byte
	}{
		{2, "/?create=true", nil},
		{2, "/new/?create=true", nil},
		{2, "/new/sub/?create=true", nil},
		{2, "/../?create=true", nil},
		{2, "/%2e%2e/?create=true", nil},
		{2, "/a%2f..%2f..%2fx/?create=true", nil},
		{2, "/config", []byte("cfg")},
		{0, "/config", nil},
		{3, "/config", nil},
		{2, "/data/" + id, data},
		{2, "/a/keys/" + id, data},
		{2, "/a/b/locks/" + id, data},
		{0, "/a/b/data/", nil},
		{1, "/data/" + id, nil},
		{3, "/a/keys/" + id, nil},
		{2, "/../keys/" + id, data},
		{2, "/..%2f/keys/" + id, data},
		{2, "//keys/" + id, data},
		{2, "/a%00/keys/" + id, data},
		{0, "/metrics", nil},
		{4, "/config", []byte("x")},
		{5, "*", nil},
		{0, "/data/" + strings.ToUpper(id), nil},
	}
	for _, s := range seeds {
		f.Add(s.m, s.path, s.body)
	}
	methods := []string{"GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS", "PATCH"}

	f.Fuzz(func(t *testing.T, m uint8, target string, body []byte) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := &http.Request{
			Method:        methods[int(m)%len(methods)],
			URL:           u,
			RequestURI:    target,
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        http.Header{},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			Host:          "fuzz",
			RemoteAddr:    "192.0.2.1:1234",
		}
		req = req.WithContext(ctx)
		rec := httptest.NewRecorder()
		func() {
			defer func() {
				if p := recover(); p != nil && p != http.ErrAbortHandler {
					t.Fatalf("%s %q: panic: %v", req.Method, target, p)
				}
			}()
			h.ServeHTTP(rec, req)
		}()

		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "root" {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("%s %q created something outside the root: %v", req.Method, target, names)
		}
		for _, p := range treeFiles(t, root) {
			for _, c := range strings.Split(p, "/") {
				if !validFolder(c) {
					t.Fatalf("%s %q: created %q", req.Method, target, p)
				}
			}
		}
	})
}

// FuzzParseRange checks that any satisfiable range lies inside the file.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"", "bytes=0-", "bytes=5-10", "bytes=-5", "bytes=1-2,3-4", "bytes=99999999999999999999-", "bytes=--1", "bytes= 3-4"} {
		f.Add(s, int64(100))
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return
		}
		start, length, partial, ok := parseRange(h, size)
		if !ok {
			return
		}
		if start < 0 || length < 0 || start > size || length > size-start {
			t.Fatalf("parseRange(%q, %d) = %d+%d outside the file", h, size, start, length)
		}
		if partial && length == 0 {
			t.Fatalf("parseRange(%q, %d): empty partial range", h, size)
		}
		if h == "" && (partial || length != size) {
			t.Fatalf("no header but range %d+%d partial=%v", start, length, partial)
		}
	})
}

// FuzzParseHtpasswd checks that only well-formed entries are loaded.
func FuzzParseHtpasswd(f *testing.F) {
	f.Add([]byte("alice:$2y$05$abcdefghijklmnopqrstuu5Zr4aGB6cSYKMNSWmsXV9O1xbI1YRXi\n# c\n  bob:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n"))
	f.Add([]byte("x:y:z\n:\n\r\n\x00:\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users := parseHtpasswd(data, slog.New(slog.DiscardHandler))
		for u, h := range users {
			if !validUserName.MatchString(u) || !supportedHash(h) {
				t.Fatalf("loaded %q:%q", u, h)
			}
			_ = checkHash(h, "password")
		}
	})
}
