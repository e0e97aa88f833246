package server

import (
	"bytes"
	"context"
	"io"
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
