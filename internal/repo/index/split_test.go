package index

import (
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// TestMasterMergesSplitListings pins H40 on load: a pack listed in two
// index files with different halves of its blobs (restic#5212) is found with
// every blob, whichever file loads first, as restic finds them; an identical
// second listing adds nothing; a conflicting one (same blob, other offset in
// the same pack) keeps both locations, so the pack's size no longer adds up
// and prune asks for `repair index` instead of trusting either.
func TestMasterMergesSplitListings(t *testing.T) {
	pid := core.Hash([]byte("pack"))
	bl := func(name string, off uint32) pack.Blob {
		return pack.Blob{BlobHandle: core.BlobHandle{ID: core.Hash([]byte(name)), Type: core.DataBlob}, Offset: off, Length: 100}
	}
	all := []pack.Blob{bl("a", 0), bl("b", 100), bl("c", 200)}
	f1 := &File{Packs: []PackEntry{{ID: pid, Blobs: all[:1]}}}
	f2 := &File{Packs: []PackEntry{{ID: pid, Blobs: all[1:]}}}
	full := &File{Packs: []PackEntry{{ID: pid, Blobs: all}}}
	id1, id2, id3 := core.Hash([]byte("f1")), core.Hash([]byte("f2")), core.Hash([]byte("f3"))

	for _, order := range [][]*File{{f1, f2}, {f2, f1}, {full, f1, f2}, {f1, full, f2}} {
		m := NewMaster()
		for i, f := range order {
			m.AddFile([]core.ID{id1, id2, id3}[i], f)
		}
		for _, b := range all {
			l, ok := m.Lookup(b.BlobHandle)
			if !ok || l.Pack != pid || l.Offset != b.Offset {
				t.Fatalf("order %d files: blob at %d: %+v %v", len(order), b.Offset, l, ok)
			}
			if n := len(m.LookupAll(b.BlobHandle)); n != 1 {
				t.Fatalf("blob at %d has %d locations, want 1", b.Offset, n)
			}
		}
		if got := m.PackContents()[pid]; len(got) != 3 {
			t.Fatalf("pack contents: %d blobs, want 3", len(got))
		}
		if !m.HasPack(pid) {
			t.Fatal("pack not indexed")
		}
	}

	// a conflicting listing: blob a also claimed at offset 300 of the same pack
	m := NewMaster()
	m.AddFile(id1, full)
	m.AddFile(id2, &File{Packs: []PackEntry{{ID: pid, Blobs: []pack.Blob{bl("a", 300)}}}})
	m.AddFile(id3, &File{Packs: []PackEntry{{ID: pid, Blobs: []pack.Blob{bl("a", 300)}}}})
	if n := len(m.LookupAll(all[0].BlobHandle)); n != 2 {
		t.Fatalf("conflicting listing: %d locations, want 2 (both kept, once each)", n)
	}
	if got := m.PackContents()[pid]; len(got) != 4 {
		t.Fatalf("conflicting listing: pack contents %d entries, want 4", len(got))
	}
}
