package archiver

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/tree"
)

// fileContent returns the content IDs of the file name in the tree root.
func fileContent(t *testing.T, ctx context.Context, r *repo.Repository, root core.ID, dir, name string) core.IDs {
	t.Helper()
	id := root
	for _, c := range append(splitPath(dir), name) {
		tr := loadTree(t, ctx, r, id)
		n := tr.Find(c)
		if n == nil {
			t.Fatalf("%s not in the tree", c)
		}
		if n.Type != tree.NodeDir {
			return n.Content
		}
		id = *n.Subtree
	}
	t.Fatalf("%s is a directory", name)
	return nil
}

// TestChangedFileWithParentChunksLikeWithout: a changed file backed up
// with a parent (chunked along the parent's chunks by hash) gets exactly
// the chunks of a backup without a parent (rolling hash everywhere), and
// the parent's unchanged chunks are not stored again.
func TestChangedFileWithParentChunksLikeWithout(t *testing.T) {
	ctx := context.Background()
	r, err := repo.Init(ctx, mem.New(), "pw", 2, crypto.Params{N: 1024, R: 1, P: 1}, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := t.TempDir()
	path := filepath.Join(src, "big")
	data := testData(11, 20<<20)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := New(r, Options{}).Run(ctx, []string{src})
	if err != nil {
		t.Fatal(err)
	}
	// insert 1 KiB in the middle and flip a byte near the start
	rnd := rand.New(rand.NewPCG(3, 3))
	ins := make([]byte, 1024)
	for i := range ins {
		ins[i] = byte(rnd.Uint32())
	}
	mid := len(data)/2 + 77
	changed := append(append(append([]byte(nil), data[:mid]...), ins...), data[mid:]...)
	changed[100] ^= 0xff
	if err := os.WriteFile(path, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	withParent, err := New(r, Options{Parent: &first.Tree}).Run(ctx, []string{src})
	if err != nil {
		t.Fatal(err)
	}
	without, err := New(r, Options{}).Run(ctx, []string{src})
	if err != nil {
		t.Fatal(err)
	}
	a := fileContent(t, ctx, r, withParent.Tree, src, "big")
	b := fileContent(t, ctx, r, without.Tree, src, "big")
	if len(a) != len(b) || len(a) < 10 {
		t.Fatalf("with parent %d chunks, without %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("chunk %d differs between the backups with and without parent", i)
		}
	}
	if withParent.Summary.FilesChanged != 1 || withParent.Summary.DataBlobs > 4 {
		t.Fatalf("with parent: %+v (expected 1 changed file and only the chunks around the two changes new)", withParent.Summary)
	}
	checkTree(t, ctx, r, withParent.Tree, src, filepath.Base(src))
}
