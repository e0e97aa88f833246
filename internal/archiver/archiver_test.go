package archiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/tree"
)

// slowCheckingBackend holds every upload for a moment and then checks that
// the bytes still hash to the file's name: if any buffer were reused while
// its upload is in flight, the check fails.
type slowCheckingBackend struct {
	backend.Backend
	bad atomic.Int32
}

func (b *slowCheckingBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	first, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	time.Sleep(time.Millisecond)
	if err := rd.Rewind(); err != nil {
		return err
	}
	second, _ := io.ReadAll(rd)
	if h.Type != core.ConfigFile && (!bytes.Equal(first, second) || core.Hash(second).String() != h.Name) {
		b.bad.Add(1)
	}
	if err := rd.Rewind(); err != nil {
		return err
	}
	return b.Backend.Save(ctx, h, rd)
}

func writeRandomTree(t *testing.T, dir string, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 1))
	for d := 0; d < 5; d++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", d))
		os.MkdirAll(sub, 0o755)
		for f := 0; f < 20; f++ {
			n := rnd.IntN(64 << 10)
			if f == 0 {
				n = 3<<20 + rnd.IntN(1<<20) // several chunks
			}
			buf := make([]byte, n)
			for i := range buf {
				buf[i] = byte(rnd.Uint32())
			}
			os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", f)), buf, 0o644)
		}
	}
	// duplicate content in many files: concurrent saves of the same blob
	dup := bytes.Repeat([]byte("same content "), 10000)
	for i := 0; i < 10; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("dup%d", i)), dup, 0o644)
	}
}

func TestBackupNoBufferReuseInFlight(t *testing.T) {
	ctx := context.Background()
	be := &slowCheckingBackend{Backend: mem.New()}
	r, err := repo.Init(ctx, be, "pw", 2, crypto.Params{N: 1024, R: 1, P: 1}, repo.Options{PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := t.TempDir()
	writeRandomTree(t, src, 1)
	res, err := New(r, Options{}).Run(ctx, []string{src})
	if err != nil {
		t.Fatal(err)
	}
	if n := be.bad.Load(); n != 0 {
		t.Fatalf("%d uploads changed while in flight", n)
	}
	if res.Summary.DataBlobs == 0 || res.Summary.FilesNew != 110 {
		t.Fatalf("summary %+v", res.Summary)
	}
	// every file's content reads back
	checkTree(t, ctx, r, res.Tree, src, filepath.Base(src))
}

// checkTree compares the files of dir with the tree reachable from root
// following the path components of name.
func checkTree(t *testing.T, ctx context.Context, r *repo.Repository, root core.ID, dir, _ string) {
	t.Helper()
	id := root
	// descend through the absolute path
	for _, c := range splitPath(dir) {
		n := loadTree(t, ctx, r, id).Find(c)
		if n == nil {
			t.Fatalf("%s not in tree", c)
		}
		id = *n.Subtree
	}
	compareDir(t, ctx, r, id, dir)
}

// loadTree loads and decodes tree id, failing the test on any error.
func loadTree(t *testing.T, ctx context.Context, r *repo.Repository, id core.ID) *tree.Tree {
	t.Helper()
	buf, err := r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tree.DecodeTree(buf)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func splitPath(p string) []string {
	var out []string
	for p != "/" && p != "." {
		out = append([]string{filepath.Base(p)}, out...)
		p = filepath.Dir(p)
	}
	return out
}

func compareDir(t *testing.T, ctx context.Context, r *repo.Repository, id core.ID, dir string) {
	tr := loadTree(t, ctx, r, id)
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(tr.Nodes) {
		t.Fatalf("%s: %d entries, tree has %d", dir, len(entries), len(tr.Nodes))
	}
	for _, n := range tr.Nodes {
		p := filepath.Join(dir, n.Name)
		if n.Type == tree.NodeDir {
			compareDir(t, ctx, r, *n.Subtree, p)
			continue
		}
		want, _ := os.ReadFile(p)
		var got []byte
		for _, c := range n.Content {
			b, err := r.LoadBlob(ctx, core.DataBlob, c, nil)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b...)
		}
		if !bytes.Equal(want, got) {
			t.Fatalf("%s: content differs", p)
		}
	}
}

// failingBackend fails every pack upload after the first n.
type failingBackend struct {
	backend.Backend
	left atomic.Int32
}

var errDiskFull = fmt.Errorf("simulated: %w", backend.ErrNoSpace)

func (b *failingBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if h.Type == core.PackFile && b.left.Add(-1) < 0 {
		return errDiskFull
	}
	return b.Backend.Save(ctx, h, rd)
}

func TestBackupStopsOnBackendError(t *testing.T) {
	ctx := context.Background()
	be := &failingBackend{Backend: mem.New()}
	be.left.Store(2)
	r, err := repo.Init(ctx, be, "pw", 2, crypto.Params{N: 1024, R: 1, P: 1}, repo.Options{PackSize: 128 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := t.TempDir()
	writeRandomTree(t, src, 2)
	err = within(t, "backup after a backend error", func() error {
		_, err := New(r, Options{}).Run(ctx, []string{src})
		return err
	})
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("want a no-space error, got %v", err)
	}
}

func TestBackupCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r, err := repo.Init(context.Background(), mem.New(), "pw", 2, crypto.Params{N: 1024, R: 1, P: 1}, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := t.TempDir()
	writeRandomTree(t, src, 3)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err = New(r, Options{}).Run(ctx, []string{src})
	if err == nil {
		t.Skip("backup finished before the cancel landed")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestUnreadableFileIsReportedAndSkipped(t *testing.T) {
	ctx := context.Background()
	r, _ := repo.Init(ctx, mem.New(), "pw", 2, crypto.Params{N: 1024, R: 1, P: 1}, repo.Options{})
	defer r.Close()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "ok"), []byte("fine"), 0o644)
	os.Mkdir(filepath.Join(src, "dir"), 0o755)
	var reported []string
	opts := Options{OnError: func(path string, err error) error { reported = append(reported, path); return nil },
		Select: func(p string, fi os.FileInfo) bool {
			if filepath.Base(p) == "dir" {
				os.Remove(p)            // vanishes between Lstat and reading
				os.WriteFile(p, nil, 0) // replaced by an unreadable file
				os.Chmod(p, 0)
			}
			return true
		}}
	res, err := New(r, opts).Run(ctx, []string{src})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != len(reported) {
		t.Fatalf("errors %v vs reported %v", res.Errors, reported)
	}
}
