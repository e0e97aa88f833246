package prune

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// TestVerifyIndexExact: the read-back check before old index files are
// deleted accepts exactly what was meant to be written and names what is
// wrong otherwise: a missing pack, a missing, moved or extra blob entry, a
// pack that should have been dropped, a lost or foreign pending mark. A
// check by counts alone would pass the moved-offset and swapped-blob cases.
func TestVerifyIndexExact(t *testing.T) {
	e := newEnv(t, 2)
	r := e.open()
	ctx := context.Background()

	id := func(b byte) core.ID { var x core.ID; x[0], x[31] = b, b; return x }
	bl := func(b byte, off uint32) pack.Blob {
		return pack.Blob{BlobHandle: core.BlobHandle{ID: id(b), Type: core.DataBlob}, Offset: off, Length: 100, UncompressedLength: 300}
	}
	p1, p2, p3 := id(0xa1), id(0xa2), id(0xa3)
	st := &state{contents: map[core.ID][]pack.Blob{
		p1: {bl(1, 0), bl(2, 100)},
		p2: {bl(3, 0)},
		p3: {bl(4, 0)}, // dropped below
	}}
	drop := core.NewIDSet(p3)
	mark := index.Pending{Pack: id(0xb1), Since: time.Unix(1700000000, 0).UTC()}
	pending := map[core.ID]index.Pending{mark.Pack: mark}

	good := func() *index.File {
		return &index.File{
			Packs:   []index.PackEntry{{ID: p1, Blobs: []pack.Blob{bl(2, 100), bl(1, 0)}}, {ID: p2, Blobs: []pack.Blob{bl(3, 0)}}},
			Pending: []index.Pending{mark},
		}
	}
	cases := []struct {
		name   string
		mutate func(f *index.File)
		split  bool   // write the packs and the marks into two files
		want   string // "" = accepted
	}{
		{"exact", func(*index.File) {}, false, ""},
		{"exact in two files", func(*index.File) {}, true, ""},
		{"pack missing", func(f *index.File) { f.Packs = f.Packs[:1] }, false, "pack " + p2.Str() + " is missing"},
		{"blob missing", func(f *index.File) { f.Packs[0].Blobs = f.Packs[0].Blobs[:1] }, false, "lacks blob"},
		{"blob moved", func(f *index.File) { f.Packs[0].Blobs[0].Offset = 200 }, false, "lacks blob"},
		{"blob swapped", func(f *index.File) { f.Packs[1].Blobs[0] = bl(9, 0) }, false, "lacks blob"},
		{"blob duplicated", func(f *index.File) { f.Packs[1].Blobs = append(f.Packs[1].Blobs, bl(3, 0)) }, false, "1 unexpected blob entries"},
		{"dropped pack kept", func(f *index.File) {
			f.Packs = append(f.Packs, index.PackEntry{ID: p3, Blobs: []pack.Blob{bl(4, 0)}})
		}, false, "3 packs listed, want 2"},
		{"mark lost", func(f *index.File) { f.Pending = nil }, false, "0 pending marks, want 1"},
		{"mark for another pack", func(f *index.File) { f.Pending[0].Pack = id(0xb2) }, false, "pending mark for pack"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := good()
			c.mutate(f)
			files := []*index.File{f}
			if c.split {
				files = []*index.File{{Packs: f.Packs}, {Pending: f.Pending}}
			}
			var ids core.IDs
			for _, f := range files {
				fid, err := r.SaveIndexFile(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, fid)
			}
			err := verifyIndex(ctx, r, ids, st, drop, pending)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("rejected a correct index: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted a wrong index (want error containing %q)", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}

	// an index file that is gone when read back
	if err := verifyIndex(ctx, r, core.IDs{id(0xee)}, st, drop, pending); err == nil || !strings.Contains(err.Error(), "read back new index") {
		t.Fatalf("a vanished index file was not reported: %v", err)
	}
}
