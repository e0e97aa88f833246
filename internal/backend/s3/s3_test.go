package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/backendtest"
	"github.com/cairn-backup/cairn/internal/backend/stall"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/testutil/servers"
)

func handleFor(t core.FileType, data []byte) backend.Handle {
	sum := sha256.Sum256(data)
	return backend.Handle{Type: t, Name: hex.EncodeToString(sum[:])}
}

// bucketCounter makes bucket names unique within the test binary.
var bucketCounter atomic.Int64

func newBucketName() string {
	return fmt.Sprintf("cairn-test-%d-%d", os.Getpid(), bucketCounter.Add(1))
}

// serverConfig returns a config for a new bucket (with prefix) on srv,
// with explicit credentials.
func serverConfig(srv *servers.S3Server, prefix string) Config {
	cfg, err := ParseConfig("s3:" + srv.URL + "/" + newBucketName() + "/" + prefix)
	if err != nil {
		panic(err)
	}
	cfg.KeyID, cfg.Secret, cfg.Region = srv.AccessKey, srv.SecretKey, srv.Region
	cfg.BucketLookup = LookupPath
	return cfg
}

func createBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Create %s: %v", cfg.location(), err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := servers.StartS3(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return createBackend(t, serverConfig(srv, "some/repo"))
	})
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		in                       string
		endpoint, bucket, prefix string
		http                     bool
	}{
		{"s3:http://127.0.0.1:9000/bucket", "127.0.0.1:9000", "bucket", "", true},
		{"s3:https://host/bucket/a/b/", "host", "bucket", "a/b", false},
		{"s3:s3.amazonaws.com/bucket/prefix", "s3.amazonaws.com", "bucket", "prefix", false},
		{"s3:s3.eu-west-1.amazonaws.com/bucket", "s3.eu-west-1.amazonaws.com", "bucket", "", false},
		{"http://[::1]:9000/b//x//y", "[::1]:9000", "b", "x/y", true},
	}
	for _, c := range cases {
		cfg, err := ParseConfig(c.in)
		if err != nil {
			t.Errorf("ParseConfig(%q): %v", c.in, err)
			continue
		}
		if cfg.Endpoint != c.endpoint || cfg.Bucket != c.bucket || cfg.Prefix != c.prefix || cfg.UseHTTP != c.http {
			t.Errorf("ParseConfig(%q) = %+v", c.in, cfg)
		}
		if cfg.Connections != DefaultConnections || cfg.PartSize != DefaultPartSize {
			t.Errorf("ParseConfig(%q): defaults %d %d", c.in, cfg.Connections, cfg.PartSize)
		}
	}
	for _, bad := range []string{
		"s3:", "s3:host", "s3:host/", "s3:http://host/", "s3:http:///bucket", "s3://host/bucket",
		"s3:ftp://host/bucket", "s3:http://user:secret@host/bucket", "s3:user:secret@host/bucket",
		"s3:http://host/bucket?x=1", "s3:http://host/bucket/../x", "s3:http://host:bad/b",
	} {
		if cfg, err := ParseConfig(bad); err == nil {
			t.Errorf("ParseConfig(%q) = %+v, want an error", bad, cfg)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseConfig(%q): error shows the secret: %v", bad, err)
		}
	}
	cfg, _ := ParseConfig("s3:http://h:1/b/p")
	b, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b.Location() != "s3:http://h:1/b/p" || b.Connections() != DefaultConnections {
		t.Errorf("Location %q Connections %d", b.Location(), b.Connections())
	}
	cfg.PartSize = 1 << 20
	if _, err := Open(context.Background(), cfg); err == nil {
		t.Error("Open with a 1 MiB part size succeeded")
	}
	cfg.PartSize, cfg.BucketLookup = 0, "virtual"
	if _, err := Open(context.Background(), cfg); err == nil {
		t.Error("Open with an unknown bucket lookup succeeded")
	}
}

// TestLayout checks the object keys on the server's disk: the standard
// layout below the prefix.
func TestLayout(t *testing.T) {
	srv := servers.StartS3(t)
	ctx := context.Background()
	cfg := serverConfig(srv, "deep/prefix")
	b := createBackend(t, cfg)
	defer b.Close()
	files := map[string]backend.Handle{}
	for _, ft := range core.AllFileTypes {
		data := []byte("layout " + ft.String())
		h := handleFor(ft, data)
		if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
		files[backend.Path(h)] = h
	}
	if err := b.Save(ctx, backend.Handle{Type: core.ConfigFile}, backend.NewByteReader([]byte("cfg"))); err != nil {
		t.Fatal(err)
	}
	files["config"] = backend.Handle{Type: core.ConfigFile}
	root := filepath.Join(srv.Dir, cfg.Bucket, "deep", "prefix")
	for p := range files {
		if fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("object %s not stored at %s: %v", p, root, err)
		}
	}
	// Without a prefix the layout starts at the bucket's root.
	rootCfg := serverConfig(srv, "")
	rb := createBackend(t, rootCfg)
	defer rb.Close()
	data := []byte("at the root")
	rh := handleFor(core.PackFile, data)
	if err := rb.Save(ctx, rh, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(srv.Dir, rootCfg.Bucket, "data", rh.Name[:2], rh.Name)); err != nil || !bytes.Equal(got, data) {
		t.Errorf("pack not at data/xx/<id> of the bucket: %q %v", got, err)
	}

	// Stray objects under the prefix are not listed.
	id := handleFor(core.PackFile, []byte("stray")).Name
	other := handleFor(core.PackFile, []byte("other")).Name
	for _, key := range []string{
		"deep/prefix/data/" + id, "deep/prefix/data/" + other[:2] + "/" + id, "deep/prefix/index/" + id + ".tmp",
		"deep/prefix/keys/sub/" + id, "deep/prefix/snapshots/README", "deep/" + id,
	} {
		if _, err := b.core.Client.PutObject(ctx, cfg.Bucket, key, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ft := range core.AllFileTypes {
		var got []string
		if err := b.List(ctx, ft, func(fi backend.FileInfo) error { got = append(got, fi.Name); return nil }); err != nil {
			t.Fatal(err)
		}
		var want string
		for _, h := range files {
			if h.Type == ft {
				want = h.Name
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("List %v: %v, want only %s", ft, got, want)
		}
	}
}

// TestMultipart stores objects larger than the part size (multipart
// uploads) and checks that a failed one leaves neither an object nor an
// unfinished upload behind.
func TestMultipart(t *testing.T) {
	srv := servers.StartS3(t)
	ctx := context.Background()
	cfg := serverConfig(srv, "mp")
	cfg.PartSize = minPartSize
	b := createBackend(t, cfg)
	defer b.Close()
	data := make([]byte, 2*minPartSize+12345)
	for i := range data {
		data[i] = byte(i*31 + i>>11)
	}
	h := handleFor(core.PackFile, data)

	// A reader that fails in the second part.
	bad := &failAfter{data: data, n: minPartSize + 1000}
	if err := b.Save(ctx, h, bad); err == nil {
		t.Fatal("Save with a reader failing in part 2 succeeded")
	}
	if _, err := b.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("failed multipart Save left an object: %v", err)
	}
	// A reader longer than its length fails before completion.
	long := &lenReader{ByteReader: backend.NewByteReader(data), n: int64(len(data) - 1)}
	if err := b.Save(ctx, h, long); err == nil {
		t.Fatal("Save of a reader longer than its length succeeded")
	}
	for u := range b.core.Client.ListIncompleteUploads(ctx, cfg.Bucket, cfg.Prefix, true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("unfinished multipart upload left behind: %s", u.Key)
	}

	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := backend.LoadAll(ctx, b, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load of a multipart object: %v (equal %v)", err, bytes.Equal(got, data))
	}
	if err := b.Save(ctx, h, backend.NewByteReader(data)); !errors.Is(err, backend.ErrAlreadyExists) {
		t.Fatalf("second multipart Save: %v, want ErrAlreadyExists", err)
	}
}

type failAfter struct {
	data []byte
	n    int
	pos  int
}

func (r *failAfter) Read(p []byte) (int, error) {
	if r.pos >= r.n {
		return 0, errors.New("reader broke")
	}
	k := copy(p, r.data[r.pos:r.n])
	r.pos += k
	return k, nil
}
func (r *failAfter) Rewind() error { r.pos = 0; return nil }
func (r *failAfter) Length() int64 { return int64(len(r.data)) }

type lenReader struct {
	*backend.ByteReader
	n int64
}

func (r *lenReader) Length() int64 { return r.n }

// TestConditionalWriteRace: the If-None-Match PUT refuses to overwrite
// even when the existence check was passed (two writers racing).
func TestConditionalWriteRace(t *testing.T) {
	srv := servers.StartS3(t)
	ctx := context.Background()
	b := createBackend(t, serverConfig(srv, ""))
	defer b.Close()
	h := backend.Handle{Type: core.ConfigFile}
	if err := b.put(ctx, b.key(h), strings.NewReader("first"), 5, true); err != nil {
		t.Fatal(err)
	}
	err := b.put(ctx, b.key(h), strings.NewReader("second!"), 7, true)
	if minio.ToErrorResponse(err).StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("conditional PUT over an existing object: %v, want 412", err)
	}
	got, err := backend.LoadAll(ctx, b, h)
	if err != nil || string(got) != "first" {
		t.Fatalf("config after racing PUT: %q %v", got, err)
	}
}

// TestNoConditionalWrites: against a server that answers 501 to
// If-None-Match, Save falls back to check-then-put and still refuses
// existing names.
func TestNoConditionalWrites(t *testing.T) {
	srv := servers.StartS3(t)
	target, _ := url.Parse(srv.URL)
	var refused atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != "" && r.Method == http.MethodPut {
			refused.Add(1)
			w.WriteHeader(http.StatusNotImplemented)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>conditional writes are not implemented</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = hs.Serve(l) }()
	defer hs.Close()

	cfg, err := ParseConfig("s3:http://" + l.Addr().String() + "/" + newBucketName())
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyID, cfg.Secret, cfg.Region, cfg.BucketLookup = srv.AccessKey, srv.SecretKey, srv.Region, LookupPath
	b := createBackend(t, cfg)
	defer b.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		data := []byte(fmt.Sprintf("no conditional %d", i))
		h := handleFor(core.SnapshotFile, data)
		if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
			t.Fatalf("Save %d: %v", i, err)
		}
		if err := b.Save(ctx, h, backend.NewByteReader([]byte("other"))); !errors.Is(err, backend.ErrAlreadyExists) {
			t.Fatalf("second Save: %v, want ErrAlreadyExists", err)
		}
		got, err := backend.LoadAll(ctx, b, h)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Load: %q %v", got, err)
		}
	}
	if n := refused.Load(); n != 1 {
		t.Errorf("%d conditional PUTs were sent, want exactly 1 before falling back", n)
	}
}

// TestCredentialSources: keys from the environment and from a shared
// credentials file (with a profile) both work; wrong keys are a permanent
// error, not "not found".
func TestCredentialSources(t *testing.T) {
	srv := servers.StartS3(t)
	ctx := context.Background()
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"} {
		t.Setenv(v, "")
	}
	open := func(t *testing.T) (*Backend, Config) {
		cfg := serverConfig(srv, "")
		cfg.KeyID, cfg.Secret = "", ""
		b, err := Create(ctx, cfg)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		return b, cfg
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		b, _ := open(t)
		data := []byte("env creds")
		if err := b.Save(ctx, handleFor(core.KeyFile, data), backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "credentials")
		content := "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[cairn]\naws_access_key_id = " + srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey + "\n"
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f)
		t.Setenv("AWS_PROFILE", "cairn")
		b, _ := open(t)
		data := []byte("file creds")
		if err := b.Save(ctx, handleFor(core.KeyFile, data), backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong", func(t *testing.T) {
		cfg := serverConfig(srv, "")
		cfg.Secret = "not-the-secret"
		b, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		_, err = b.Stat(ctx, backend.Handle{Type: core.ConfigFile})
		var p interface{ Permanent() bool }
		if err == nil || errors.Is(err, backend.ErrNotExist) || !errors.As(err, &p) || !p.Permanent() {
			t.Fatalf("Stat with a wrong secret: %v, want a permanent error that is not ErrNotExist", err)
		}
		if strings.Contains(err.Error(), "not-the-secret") {
			t.Fatalf("error shows the secret: %v", err)
		}
	})
}

// TestMissingBucket: listing a bucket that does not exist is an error,
// never an empty listing (H24).
func TestMissingBucket(t *testing.T) {
	srv := servers.StartS3(t)
	ctx := context.Background()
	b, err := Open(ctx, serverConfig(srv, "p"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, ft := range core.AllFileTypes {
		err := b.List(ctx, ft, func(backend.FileInfo) error { return nil })
		if err == nil || errors.Is(err, backend.ErrNotExist) {
			t.Errorf("List %v of a missing bucket: %v, want an error that is not ErrNotExist", ft, err)
		}
	}
	data := []byte("x")
	if err := b.Save(ctx, handleFor(core.LockFile, data), backend.NewByteReader(data)); err == nil {
		t.Error("Save into a missing bucket succeeded")
	}
	// Create is idempotent.
	for i := 0; i < 2; i++ {
		if err := b.Create(ctx); err != nil {
			t.Fatalf("Create #%d: %v", i+1, err)
		}
	}
	if err := b.List(ctx, core.LockFile, func(backend.FileInfo) error { return nil }); err != nil {
		t.Fatalf("List after Create: %v", err)
	}
}

// TestStall: a server that accepts the connection and never answers is
// abandoned after the stall timeout (H30).
func TestStall(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }() // read, never answer
		}
	}()
	cfg, err := ParseConfig("s3:http://" + l.Addr().String() + "/bucket")
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyID, cfg.Secret, cfg.Region, cfg.BucketLookup = "k", "s", "us-east-1", LookupPath
	cfg.StallTimeout = 300 * time.Millisecond
	b, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		_, err := b.Stat(context.Background(), backend.Handle{Type: core.ConfigFile})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Stat against a silent server succeeded")
		}
		if !errors.Is(err, stall.ErrStalled) {
			t.Fatalf("Stat against a silent server: %v, want a stall error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Stat against a silent server hung despite the stall timeout")
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"s3:http://127.0.0.1:9000/bucket/p", "s3:host/b", "s3:https://u:p@h/b", "s3:h/b/../c", "s3://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseConfig(s)
		if err != nil {
			return
		}
		if cfg.Endpoint == "" || cfg.Bucket == "" || strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/") {
			t.Fatalf("ParseConfig(%q) = %+v", s, cfg)
		}
		for _, part := range strings.Split(cfg.Prefix, "/") {
			if part == ".." {
				t.Fatalf("ParseConfig(%q): prefix %q escapes", s, cfg.Prefix)
			}
		}
	})
}
