package restorer

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/internal/archiver"
	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

const testPassword = "restorer test"

// testRepo is a repository on the local backend with one backup of src.
type testRepo struct {
	dir  string  // repository directory
	src  string  // the backed-up directory
	tree core.ID // src's subtree in the snapshot
}

var (
	templateOnce sync.Once
	templateDir  string // an empty repository that tests copy
	templateErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if templateDir != "" {
		os.RemoveAll(filepath.Dir(templateDir))
	}
	os.Exit(code)
}

// newRepoDir returns a new empty repository in a temporary directory. It
// is a copy of one created once: creating a repository fsyncs hundreds of
// directories, which takes seconds on a busy disk.
func newRepoDir(tb testing.TB) string {
	tb.Helper()
	templateOnce.Do(func() {
		ctx := context.Background()
		base, err := os.MkdirTemp("", "restorer-template-")
		if err != nil {
			templateErr = err
			return
		}
		dir := filepath.Join(base, "repo")
		be, err := local.Create(ctx, dir)
		if err != nil {
			templateErr = err
			return
		}
		r, err := repo.Init(ctx, be, testPassword, 2, crypto.Params{N: 1024, R: 1, P: 1}, repo.Options{})
		if err != nil {
			templateErr = err
			return
		}
		templateErr = r.Close()
		templateDir = dir
	})
	if templateErr != nil {
		tb.Fatal(templateErr)
	}
	dir := filepath.Join(tb.TempDir(), "repo")
	if err := os.CopyFS(dir, os.DirFS(templateDir)); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// backupTestRepo creates a repository in a temporary directory, backs up
// src into it with the given pack size (0: default) and returns it.
func backupTestRepo(tb testing.TB, src string, packSize int) *testRepo {
	tb.Helper()
	ctx := context.Background()
	dir := newRepoDir(tb)
	r := openRepoDir(tb, dir, repo.Options{PackSize: packSize})
	res, err := archiver.New(r, archiver.Options{}).Run(ctx, []string{src})
	if err != nil {
		tb.Fatal(err)
	}
	if len(res.Errors) > 0 {
		tb.Fatalf("backup errors: %v", res.Errors)
	}
	if err := r.Close(); err != nil {
		tb.Fatal(err)
	}
	tr := &testRepo{dir: dir, src: src}
	r2 := tr.open(tb)
	defer r2.Close()
	tr.tree, err = FindSubtree(ctx, r2, res.Tree, src)
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

// openRepoDir opens the local repository in dir.
func openRepoDir(tb testing.TB, dir string, opts repo.Options) *repo.Repository {
	tb.Helper()
	ctx := context.Background()
	be, err := local.Open(ctx, dir)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := repo.Open(ctx, be, testPassword, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// open opens the repository with its index loaded.
func (tr *testRepo) open(tb testing.TB) *repo.Repository {
	tb.Helper()
	r := openRepoDir(tb, tr.dir, repo.Options{})
	if err := r.LoadIndex(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return r
}

// dataPacks lists the pack files of the repository.
func (tr *testRepo) dataPacks(tb testing.TB) []string {
	tb.Helper()
	var packs []string
	err := filepath.Walk(filepath.Join(tr.dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			packs = append(packs, p)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return packs
}

// fillText fills b with compressible, text-like pseudo-random bytes.
func fillText(rnd *rand.Rand, b []byte) {
	words := []string{"restore ", "pack ", "blob ", "tree ", "index ", "snapshot ", "cairn ", "\n", "func ", "return ", "err ", "nil "}
	for i := 0; i < len(b); {
		w := words[rnd.IntN(len(words))]
		i += copy(b[i:], w)
	}
}

// fillRandom fills b with incompressible pseudo-random bytes.
func fillRandom(rnd *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rnd.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rnd.Uint32())
	}
}

func writeFile(tb testing.TB, p string, data []byte) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}
