package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"github.com/cairn-backup/cairn/internal/testutil"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/rest"
	"github.com/cairn-backup/cairn/internal/core"
)

// TestResticInterop drives the real restic binary (the reference client)
// against the server: init, backup, check --read-data, restore, forget
// with prune, and the same against an append-only server, where pruning
// must fail. It then reads the repository restic wrote through cairn's own
// REST client.
func TestResticInterop(t *testing.T) {
	resticBin := testutil.RequireRestic(t) // fails in CI when missing
	dir := fastTempDir(t)
	htp := filepath.Join(dir, "htpasswd")
	writeFile(t, htp, "alice:"+bcryptHash(t, "alicepw")+"\n")
	root := filepath.Join(dir, "root")
	store := NewDirStore(root)
	h, err := New(context.Background(), store, Config{HtpasswdFile: htp, PrivateRepos: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	appendH, err := New(context.Background(), store, Config{HtpasswdFile: htp, PrivateRepos: true, AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	appendSrv := httptest.NewServer(appendH)
	defer appendSrv.Close()

	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"a.txt":     []byte("hello restic"),
		"sub/b.bin": randomBytes(t, 3<<20),
		"empty":     {},
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, filepath.FromSlash(name)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	run := func(serverURL string, wantOK bool, args ...string) []byte {
		t.Helper()
		repo := "rest:http://alice:alicepw@" + strings.TrimPrefix(serverURL, "http://") + "/alice/"
		cmd := exec.Command(resticBin, append([]string{"-r", repo}, args...)...)
		cmd.Env = append(os.Environ(),
			"RESTIC_PASSWORD=interop-test",
			"RESTIC_CACHE_DIR="+filepath.Join(dir, "cache"),
			"HOME="+dir,
		)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("restic %v: err %v (want ok %v)\nstdout: %s\nstderr: %s", args, err, wantOK, stdout.Bytes(), stderr.Bytes())
		}
		return stdout.Bytes()
	}

	run(srv.URL, true, "init")
	run(srv.URL, false, "init") // the config exists
	run(srv.URL, true, "backup", "--host", "h", src)
	run(srv.URL, true, "check", "--read-data")
	target := filepath.Join(dir, "restore")
	run(srv.URL, true, "restore", "latest", "--target", target)
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(target, src, filepath.FromSlash(name)))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("restored %s: %v", name, err)
		}
	}

	// Append-only: a backup works, including removing its own lock (restic
	// would retry a refused lock deletion for a long time). That deletes
	// are refused is tested without restic, whose 0.14 retries a 403 for
	// about 45 s before giving up.
	if err := os.WriteFile(filepath.Join(src, "new.txt"), []byte("more"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(appendSrv.URL, true, "backup", "--host", "h", src)
	if locks := regularFilesIn(t, filepath.Join(root, "alice", "locks")); len(locks) != 0 {
		t.Errorf("locks left after an append-only backup: %v", locks)
	}
	run(srv.URL, true, "check")

	var snaps []json.RawMessage
	if err := json.Unmarshal(run(srv.URL, true, "snapshots", "--json"), &snaps); err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots: %d, %v", len(snaps), err)
	}
	run(srv.URL, true, "forget", "--keep-last", "1", "--prune")
	run(srv.URL, true, "check", "--read-data")
	if err := json.Unmarshal(run(srv.URL, true, "snapshots", "--json"), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots after forget: %d, %v", len(snaps), err)
	}

	// cairn's client reads what restic wrote: every file is named by its
	// SHA-256, and the listing sizes match.
	cfg := restConfig(t, "http://alice:alicepw@"+strings.TrimPrefix(srv.URL, "http://")+"/alice/")
	be, err := rest.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ctx := context.Background()
	for _, ft := range core.AllFileTypes {
		n := 0
		err := be.List(ctx, ft, func(fi backend.FileInfo) error {
			n++
			hd := backend.Handle{Type: ft, Name: fi.Name}
			return be.Load(ctx, hd, 0, 0, func(rd io.Reader) error {
				hash := sha256.New()
				m, err := io.Copy(hash, rd)
				if err != nil {
					return err
				}
				if m != fi.Size || hex.EncodeToString(hash.Sum(nil)) != fi.Name {
					t.Errorf("%v: %d bytes (listed %d), hash mismatch %v", hd, m, fi.Size, hex.EncodeToString(hash.Sum(nil)) != fi.Name)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatalf("list %v: %v", ft, err)
		}
		if (ft == core.KeyFile || ft == core.SnapshotFile || ft == core.PackFile || ft == core.IndexFile) && n == 0 {
			t.Errorf("no %v files", ft)
		}
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: core.ConfigFile}); err != nil {
		t.Errorf("config: %v", err)
	}
}

func regularFilesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out
}
