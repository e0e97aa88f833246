package repo

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// vanishingBackend runs hook once, right before the first load of an
// index file (the moment a concurrent prune replaces it).
type vanishingBackend struct {
	backend.Backend
	once sync.Once
	hook func()
}

func (b *vanishingBackend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if h.Type == core.IndexFile {
		b.once.Do(b.hook)
	}
	return b.Backend.Load(ctx, h, length, offset, fn)
}

// TestLoadIndexFileVanishes: an index file deleted (after being replaced)
// between the listing and its load is not an error; its replacement is
// loaded instead.
func TestLoadIndexFileVanishes(t *testing.T) {
	ctx := context.Background()
	w, be := newTestRepo(t, 2, Options{})
	blob := pack.Blob{BlobHandle: core.BlobHandle{ID: core.Hash([]byte("x")), Type: core.DataBlob}, Length: 40}
	packID := core.Hash([]byte("pack"))
	old, err := w.SaveIndexFile(ctx, &index.File{Packs: []index.PackEntry{{ID: packID, Blobs: []pack.Blob{blob}}}})
	if err != nil {
		t.Fatal(err)
	}
	vb := &vanishingBackend{Backend: be}
	vb.hook = func() {
		// what prune does: write the replacement, then delete the old file
		if _, err := w.SaveIndexFile(ctx, &index.File{Packs: []index.PackEntry{{ID: packID, Blobs: []pack.Blob{blob}}}}); err != nil {
			t.Error(err)
		}
		if err := be.Remove(ctx, backend.Handle{Type: core.IndexFile, Name: old.String()}); err != nil {
			t.Error(err)
		}
	}
	r, err := Open(ctx, vb, "secret", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatalf("load index while a file is replaced: %v", err)
	}
	if !r.Index().Has(blob.BlobHandle) {
		t.Fatal("the replacement index file was not loaded")
	}
}
