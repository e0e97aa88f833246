package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/backendtest"
	"github.com/cairn-backup/cairn/internal/core"
)

// testRoot is where test repositories are created: a tmpfs when one can be
// mounted (fsync there is cheap, which keeps the suite fast on a busy
// machine), else the default temporary directory. CAIRN_TEST_DISK=1 forces
// the default temporary directory.
var testRoot string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv("CAIRN_TEST_DISK") != "1" {
		if dir, err := os.MkdirTemp("", "cairn-local-test-"); err == nil {
			if exec.Command("mount", "-t", "tmpfs", "-o", "size=512m,mode=0700", "tmpfs", dir).Run() == nil {
				testRoot = dir
				defer func() {
					if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
						fmt.Fprintf(os.Stderr, "umount %s: %v: %s\n", dir, err, out)
					}
					_ = os.Remove(dir)
				}()
			} else {
				_ = os.Remove(dir)
			}
		}
	}
	return m.Run()
}

// testDir returns a new empty directory below testRoot (or the default
// temporary directory), removed when the test ends.
func testDir(t *testing.T) string {
	t.Helper()
	if testRoot == "" {
		return t.TempDir()
	}
	base, err := os.MkdirTemp(testRoot, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	return base
}

func newTestBackend(t *testing.T) *Backend {
	t.Helper()
	b, err := Create(context.Background(), filepath.Join(testDir(t), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOnDisk exercises the durable write path on the real temporary
// directory (not the tmpfs the other tests may use).
func TestOnDisk(t *testing.T) {
	ctx := context.Background()
	b, err := Create(ctx, filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	var hs []backend.Handle
	for i := 0; i < 5; i++ {
		data := bytes.Repeat([]byte{byte(i)}, 1000*i)
		h := handleFor(core.AllFileTypes[i], data)
		if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
		got, err := backend.LoadAll(ctx, b, h)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Load %v: %v", h, err)
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		n := 0
		if err := b.List(ctx, h.Type, func(fi backend.FileInfo) error {
			if fi.Name != h.Name {
				return fmt.Errorf("unexpected %s", fi.Name)
			}
			n++
			return nil
		}); err != nil || n != 1 {
			t.Fatalf("List %v: %d entries, %v", h.Type, n, err)
		}
		if err := b.Remove(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	assertNoTemp(t, b.dir)
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		b := newTestBackend(t)
		t.Cleanup(func() { assertNoTemp(t, b.dir) })
		return b
	})
}

// TestConformanceLinkFallback runs the suite with the hard-link publish
// strategy that file systems without RENAME_NOREPLACE use.
func TestConformanceLinkFallback(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		b := newTestBackend(t)
		b.publishers = []func(tmp, final string) error{publishByLink}
		t.Cleanup(func() { assertNoTemp(t, b.dir) })
		return b
	})
}

// assertNoTemp fails if any temporary file is left below dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), tempMarker) {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", dir, err)
	}
}

func handleFor(ft core.FileType, data []byte) backend.Handle {
	sum := sha256.Sum256(data)
	return backend.Handle{Type: ft, Name: hex.EncodeToString(sum[:])}
}

func TestOpenMissing(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nope")
	if _, err := Open(ctx, dir); err == nil {
		t.Fatal("Open of a missing directory succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open created %s", dir)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, file); err == nil {
		t.Fatal("Open of a regular file succeeded")
	}
}

func TestCreateLayout(t *testing.T) {
	b := newTestBackend(t)
	for _, d := range backend.Dirs() {
		fi, err := os.Stat(filepath.Join(b.dir, filepath.FromSlash(d)))
		if err != nil {
			t.Fatalf("layout dir %s: %v", d, err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("layout dir %s: mode %v, want dir 0700", d, fi.Mode())
		}
	}
	// Create is idempotent and does not touch existing files.
	data := []byte("config bytes")
	if err := b.Save(context.Background(), backend.Handle{Type: core.ConfigFile}, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	b2, err := Create(context.Background(), b.dir)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	got, err := backend.LoadAll(context.Background(), b2, backend.Handle{Type: core.ConfigFile})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("config after second Create: %q, %v", got, err)
	}
}

func TestFileModes(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	cfg := backend.Handle{Type: core.ConfigFile}
	if err := b.Save(ctx, cfg, backend.NewByteReader([]byte("cfg"))); err != nil {
		t.Fatal(err)
	}
	data := []byte("pack one")
	h := handleFor(core.PackFile, data)
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	assertMode(t, b.filename(cfg), 0o400)
	assertMode(t, b.filename(h), 0o400)

	// A group-readable config switches to group modes.
	if err := os.Chmod(b.filename(cfg), 0o440); err != nil {
		t.Fatal(err)
	}
	b2, err := Open(ctx, b.dir)
	if err != nil {
		t.Fatal(err)
	}
	data2 := []byte("pack two")
	h2 := handleFor(core.PackFile, data2)
	// Make Save create the data/xx directory on demand.
	sub := filepath.Dir(b2.filename(h2))
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	if err := b2.Save(ctx, h2, backend.NewByteReader(data2)); err != nil {
		t.Fatal(err)
	}
	assertMode(t, b2.filename(h2), 0o440)
	fi, err := os.Stat(sub)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o070 == 0 || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("on-demand dir %s: mode %v, want group access and no other access", sub, fi.Mode().Perm())
	}
}

func assertMode(t *testing.T, name string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
	}
}

func TestDirCreatedOnDemand(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	// Remove the whole data directory and an index directory.
	if err := os.RemoveAll(filepath.Join(b.dir, "data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(b.dir, "index")); err != nil {
		t.Fatal(err)
	}
	for _, ft := range []core.FileType{core.PackFile, core.IndexFile} {
		// A missing type directory lists as empty.
		if err := b.List(ctx, ft, func(backend.FileInfo) error { return errors.New("called") }); err != nil {
			t.Fatalf("List %v with missing dir: %v", ft, err)
		}
		data := []byte("on demand " + ft.String())
		h := handleFor(ft, data)
		if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
			t.Fatalf("Save %v into a missing directory: %v", h, err)
		}
		got, err := backend.LoadAll(ctx, b, h)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Load %v: %q %v", h, got, err)
		}
	}
}

func TestMissingRootNotRecreated(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	if err := os.RemoveAll(b.dir); err != nil {
		t.Fatal(err)
	}
	for _, h := range []backend.Handle{{Type: core.ConfigFile}, handleFor(core.PackFile, []byte("x")), handleFor(core.LockFile, []byte("y"))} {
		if err := b.Save(ctx, h, backend.NewByteReader([]byte("x"))); err == nil {
			t.Errorf("Save %v into a vanished repository succeeded", h)
		}
	}
	if _, err := os.Stat(b.dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Save recreated the vanished repository directory: %v", err)
	}
}

func TestListSkipsStrayFiles(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	real := map[core.FileType]backend.Handle{}
	for _, ft := range core.AllFileTypes {
		data := []byte("real " + ft.String())
		h := handleFor(ft, data)
		if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
		real[ft] = h
	}
	id := handleFor(core.PackFile, []byte("stray")).Name
	other := handleFor(core.PackFile, []byte("other")).Name
	stray := []string{
		"data/" + id[:2] + "/" + id + "-tmp-0123456789abcdef",
		"data/" + id,                   // flat legacy layout
		"data/" + other[:2] + "/" + id, // wrong subdirectory
		"data/zz/" + id,                // not a hex subdirectory
		"data/" + id[:2] + "/" + strings.ToUpper(id),
		"data/" + id[:2] + "/README",
		"index/" + id + "-tmp-abc",
		"index/" + id[:63],
		"index/.DS_Store",
		"keys/" + id + ".bak",
		"locks/" + id + "-tmp-",
		"snapshots/" + id + "~",
		"config-tmp-0011",
	}
	for _, s := range stray {
		p := filepath.Join(b.dir, filepath.FromSlash(s))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory and a symlink with valid names are not files.
	if err := os.Mkdir(filepath.Join(b.dir, "snapshots", id), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(b.filename(real[core.KeyFile]), filepath.Join(b.dir, "keys", id)); err != nil {
		t.Fatal(err)
	}
	for _, ft := range core.AllFileTypes {
		var names []string
		if err := b.List(ctx, ft, func(fi backend.FileInfo) error {
			names = append(names, fi.Name)
			return nil
		}); err != nil {
			t.Fatalf("List %v: %v", ft, err)
		}
		if len(names) != 1 || names[0] != real[ft].Name {
			t.Errorf("List %v: %v, want only %s", ft, names, real[ft].Name)
		}
	}
}

func TestListErrorIsNotEmpty(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	for _, ft := range []core.FileType{core.IndexFile, core.PackFile} {
		data := []byte("x " + ft.String())
		if err := b.Save(ctx, handleFor(ft, data), backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
		// Replace the type directory by a file: reading it fails.
		dir := filepath.Join(b.dir, ft.String())
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, []byte("not a dir"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := b.List(ctx, ft, func(backend.FileInfo) error { return nil })
		if err == nil {
			t.Errorf("List %v of an unreadable directory reported success", ft)
		}
	}
}

func TestListFnNotExistErrorPropagates(t *testing.T) {
	// An fs.ErrNotExist returned by fn must not be mistaken for a missing
	// directory.
	ctx := context.Background()
	b := newTestBackend(t)
	for _, ft := range []core.FileType{core.SnapshotFile, core.PackFile} {
		data := []byte("y " + ft.String())
		if err := b.Save(ctx, handleFor(ft, data), backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
		fnErr := fmt.Errorf("callback: %w", fs.ErrNotExist)
		err := b.List(ctx, ft, func(backend.FileInfo) error { return fnErr })
		if !errors.Is(err, fnErr) {
			t.Errorf("List %v: got %v, want fn's error", ft, err)
		}
	}
}

func TestFailedSavesLeaveNoTemp(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	data := bytes.Repeat([]byte("abc"), 100_000)
	h := handleFor(core.PackFile, data)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Save(cancelled, h, backend.NewByteReader(data)); err == nil {
		t.Fatal("cancelled Save succeeded")
	}
	short := backend.NewByteReader(data[:1000])
	if err := b.Save(ctx, h, &lenReader{short, int64(len(data))}); err == nil {
		t.Fatal("short Save succeeded")
	}
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, h, backend.NewByteReader(data)); !errors.Is(err, backend.ErrAlreadyExists) {
		t.Fatalf("duplicate Save: %v", err)
	}
	// Each publish strategy refuses to replace an existing file (the case
	// of two writers racing past Save's fast pre-check).
	tmp := filepath.Join(filepath.Dir(b.filename(h)), h.Name+tempMarker+"x")
	if err := os.WriteFile(tmp, []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, p := range defaultPublishers() {
		if err := p(tmp, b.filename(h)); !errors.Is(err, backend.ErrAlreadyExists) {
			t.Errorf("publisher %d over an existing file: %v, want ErrAlreadyExists", i, err)
		}
	}
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	got, err := backend.LoadAll(ctx, b, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored file changed: %v", err)
	}
	assertNoTemp(t, b.dir)
}

type lenReader struct {
	*backend.ByteReader
	n int64
}

func (r *lenReader) Length() int64 { return r.n }

func TestPublishFallback(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	var calls []string
	unsupported := func(tmp, final string) error {
		calls = append(calls, "unsupported")
		return fmt.Errorf("test: %w", errUnsupported)
	}
	link := func(tmp, final string) error {
		calls = append(calls, "link")
		return publishByLink(tmp, final)
	}
	b.publishers = []func(tmp, final string) error{unsupported, link}
	for i := 0; i < 3; i++ {
		data := []byte(fmt.Sprintf("file %d", i))
		h := handleFor(core.LockFile, data)
		if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"unsupported", "link", "link", "link"}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("publish calls %v, want %v (unsupported strategy must be tried once)", calls, want)
	}
	assertNoTemp(t, b.dir)
}

func TestCheckedRenamePublish(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	b.publishers = []func(tmp, final string) error{publishByCheckedRename}
	data := []byte("checked")
	h := handleFor(core.IndexFile, data)
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, h, backend.NewByteReader([]byte("zz"))); !errors.Is(err, backend.ErrAlreadyExists) {
		t.Fatalf("second save: %v", err)
	}
	got, err := backend.LoadAll(ctx, b, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load: %q %v", got, err)
	}
	assertNoTemp(t, b.dir)
}

func TestRemoveReadOnly(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	data := []byte("read only")
	h := handleFor(core.SnapshotFile, data)
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(b.filename(h)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file still there: %v", err)
	}
}

func TestRemoveStaleTemp(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	id := handleFor(core.PackFile, []byte("t")).Name
	old := time.Now().Add(-2 * time.Hour)
	type f struct {
		path    string
		old     bool
		removed bool
	}
	files := []f{
		{"data/" + id[:2] + "/" + id + "-tmp-aa", true, true},
		{"data/" + id[:2] + "/" + id + "-tmp-bb", false, false},
		{"index/" + id + "-tmp-cc", true, true},
		{"snapshots/" + id + "-tmp-dd", true, true},
		{"config-tmp-ee", true, true},
		{"config-tmp-ff", false, false},
		{"index/" + id, true, false},                  // a real file
		{"index/notanid-tmp-gg", true, false},         // not ours
		{"keys/" + id + "-tmp-", true, false},         // no suffix
		{"locks/" + id[:10] + "-tmp-hh", true, false}, // not an ID
	}
	for _, fl := range files {
		p := filepath.Join(b.dir, filepath.FromSlash(fl.path))
		if err := os.WriteFile(p, []byte("x"), 0o400); err != nil {
			t.Fatal(err)
		}
		if fl.old {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A missing data/xx directory is fine.
	if err := os.Remove(filepath.Join(b.dir, "data", "7f")); err != nil {
		t.Fatal(err)
	}
	n, err := b.RemoveStaleTemp(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, fl := range files {
		_, err := os.Lstat(filepath.Join(b.dir, filepath.FromSlash(fl.path)))
		gone := errors.Is(err, fs.ErrNotExist)
		if gone != fl.removed {
			t.Errorf("%s: removed=%v, want %v", fl.path, gone, fl.removed)
		}
		if fl.removed {
			want++
		}
	}
	if n != want {
		t.Errorf("RemoveStaleTemp reported %d, want %d", n, want)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.RemoveStaleTemp(cancelled, time.Hour); err == nil {
		t.Error("RemoveStaleTemp with a cancelled context succeeded")
	}
}

func TestClassifyNoSpace(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		err := classify(&fs.PathError{Op: "write", Path: "/x", Err: errno})
		if !errors.Is(err, backend.ErrNoSpace) || !errors.Is(err, errno) {
			t.Errorf("classify(%v) = %v: want both ErrNoSpace and the errno", errno, err)
		}
	}
	if err := classify(syscall.EIO); errors.Is(err, backend.ErrNoSpace) {
		t.Errorf("classify(EIO) = %v, matches ErrNoSpace", err)
	}
}

// TestDiskFull fills a 1 MiB tmpfs (H31): every failing Save must report
// ErrNoSpace and leave neither a partial file nor a temporary file, and the
// repository must work again once space is freed.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root/CAP_SYS_ADMIN): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	ctx := context.Background()
	b, err := Create(ctx, filepath.Join(mnt, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	var saved []backend.Handle
	var noSpace int
	for i := 0; i < 40 && noSpace < 5; i++ {
		data := bytes.Repeat([]byte{byte(i)}, 100_000+i)
		h := handleFor(core.PackFile, data)
		err := b.Save(ctx, h, backend.NewByteReader(data))
		if err == nil {
			saved = append(saved, h)
			continue
		}
		if !errors.Is(err, backend.ErrNoSpace) {
			t.Fatalf("Save on a full disk: %v, want ErrNoSpace", err)
		}
		if !strings.Contains(err.Error(), "no space") {
			t.Errorf("error message %q does not say the disk is full", err)
		}
		noSpace++
		if _, err := b.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
			t.Fatalf("failed Save left %v behind: %v", h, err)
		}
	}
	if noSpace == 0 {
		t.Fatal("the 1 MiB file system never filled up")
	}
	assertNoTemp(t, b.dir)
	// Every file that was reported saved is complete.
	var listed []string
	if err := b.List(ctx, core.PackFile, func(fi backend.FileInfo) error {
		listed = append(listed, fi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, h := range saved {
		want = append(want, h.Name)
		buf, err := backend.LoadAll(ctx, b, h)
		if err != nil {
			t.Fatal(err)
		}
		if handleFor(core.PackFile, buf) != h {
			t.Errorf("%v: content does not match its name", h)
		}
	}
	sort.Strings(listed)
	sort.Strings(want)
	if fmt.Sprint(listed) != fmt.Sprint(want) {
		t.Errorf("listed %d files, want the %d saved ones", len(listed), len(want))
	}
	// Free space and save again.
	for _, h := range saved[:2] {
		if err := b.Remove(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	data := bytes.Repeat([]byte("after"), 20_000)
	if err := b.Save(ctx, handleFor(core.PackFile, data), backend.NewByteReader(data)); err != nil {
		t.Fatalf("Save after freeing space: %v", err)
	}
}

func TestLoadPastEOF(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	data := []byte("0123456789")
	h := handleFor(core.IndexFile, data)
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	err := b.Load(ctx, h, 5, 8, func(rd io.Reader) error { _, err := io.ReadAll(rd); return err })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Load past EOF: %v", err)
	}
}
