package restorer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/tree"
)

// TestRestoreBlobContentMismatch: blobs that decrypt (their MAC is sound)
// but whose plaintext hashes to another ID are never written, wherever they
// sit in the pack (first, two neighbours, last) and whether compressed or
// stored plain; their files are reported, and every other file, including
// the damaged blobs' neighbours, is restored intact.
func TestRestoreBlobContentMismatch(t *testing.T) {
	ctx := context.Background()
	dir := newRepoDir(t)
	// without the verification before upload a blob can be stored under a
	// wrong ID, which is what this test needs
	r := openRepoDir(t, dir, repo.Options{NoExtraVerify: true})
	rnd := rand.New(rand.NewPCG(7, 7))
	bad := map[int]bool{0: true, 3: true, 4: true, 8: true}
	sizes := []int{5000, 200 << 10, 70, 1 << 20, 3000, 64, 90000, 300 << 10, 40000}
	var nodes []*tree.Node
	contents := map[string][]byte{}
	for i, n := range sizes {
		data := make([]byte, n)
		if i%3 == 1 {
			fillRandom(rnd, data) // stored uncompressed
		} else {
			fillText(rnd, data)
		}
		id := core.Hash(data)
		if bad[i] {
			id = core.Hash(append([]byte("not the content "), data...))
		}
		if _, err := r.SaveBlob(ctx, core.DataBlob, data, id, false); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("f%d", i)
		contents[name] = data
		nodes = append(nodes, &tree.Node{Name: name, Type: tree.NodeFile, Mode: 0o644,
			ModTime: time.Unix(1600000000, 0), Size: uint64(n), Content: core.IDs{id}})
	}
	buf, err := tree.EncodeTree(nodes)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.SaveBlob(ctx, core.TreeBlob, buf, core.ID{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	tr := &testRepo{dir: dir}
	r = tr.open(t)
	defer r.Close()
	if packs := tr.dataPacks(t); len(packs) != 2 { // the data pack and the tree pack
		t.Fatalf("%d packs, want the data blobs in one", len(packs))
	}
	cb := &countingBackend{}
	r.WrapBackend(func(be backend.Backend) backend.Backend { cb.Backend = be; return cb })
	dst := filepath.Join(t.TempDir(), "dst")
	out, err := Restore(ctx, r, res.ID, restoreOpts(dst))
	if err != nil {
		t.Fatal(err)
	}
	// the tree pack and the data pack are read once each, and the data
	// pack again only for each damaged blob (Repository.LoadBlob looks for
	// a sound copy, in two rounds): no sound blob is mistaken for damaged
	if got, want := cb.packLoads.Load(), int32(2+2*len(bad)); got != want {
		t.Errorf("%d pack reads, want %d", got, want)
	}
	errs := fmt.Sprint(out.Errors)
	for i := range sizes {
		name := fmt.Sprintf("f%d", i)
		p := filepath.Join(dst, name)
		reported := strings.Contains(errs, p+":")
		if reported != bad[i] {
			t.Errorf("%s (damaged %v) reported %v: %v", name, bad[i], reported, out.Errors)
		}
		got, _ := os.ReadFile(p)
		if bad[i] {
			// left as it was created: sized, with nothing written
			if !bytes.Equal(got, make([]byte, len(got))) {
				t.Errorf("%s: the mismatching plaintext was written", name)
			}
			continue
		}
		if !bytes.Equal(got, contents[name]) {
			t.Errorf("%s not restored intact", name)
		}
	}
}

// countingBackend counts the reads of pack files.
type countingBackend struct {
	backend.Backend
	packLoads atomic.Int32
}

func (b *countingBackend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if h.Type == core.PackFile {
		b.packLoads.Add(1)
	}
	return b.Backend.Load(ctx, h, length, offset, fn)
}
