package index

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

func sampleFile() *File {
	p1 := core.Hash([]byte("p1"))
	p2 := core.Hash([]byte("p2"))
	return &File{
		Packs: []PackEntry{
			{ID: p1, Blobs: []pack.Blob{
				{BlobHandle: core.BlobHandle{ID: core.Hash([]byte("a")), Type: core.DataBlob}, Offset: 0, Length: 40},
				{BlobHandle: core.BlobHandle{ID: core.Hash([]byte("b")), Type: core.DataBlob}, Offset: 40, Length: 50, UncompressedLength: 100},
			}},
			{ID: p2, Blobs: []pack.Blob{
				{BlobHandle: core.BlobHandle{ID: core.Hash([]byte("t")), Type: core.TreeBlob}, Offset: 0, Length: 60, UncompressedLength: 200},
				{BlobHandle: core.BlobHandle{ID: core.Hash([]byte("a")), Type: core.DataBlob}, Offset: 60, Length: 40},
			}},
		},
		Pending: []Pending{{Pack: p2, Since: time.Unix(100, 0).UTC()}},
	}
}

func TestEncodeDecode(t *testing.T) {
	f := sampleFile()
	buf, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(buf, []byte("\n")) || !bytes.Contains(buf, []byte(`"uncompressed_length":100`)) {
		t.Fatalf("unexpected encoding %s", buf)
	}
	if bytes.Count(buf, []byte("uncompressed_length")) != 2 {
		t.Fatal("uncompressed_length must be omitted for uncompressed blobs")
	}
	g, err := Decode(buf, false)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Encode(g)
	if !bytes.Equal(again, buf) {
		t.Fatalf("not stable:\n%s\n%s", buf, again)
	}
	if _, err := Decode(buf, true); err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("compressed blob accepted in v1: %v", err)
	}
	for _, bad := range []string{`[]`, `{"packs":[{"id":"zz"}]}`, `{"packs":[{"id":"` + core.Hash(nil).String() + `","blobs":[{"type":"x"}]}]}`, `{"packs":[{"id":"` + core.Hash(nil).String() + `","blobs":[{"id":"` + core.Hash(nil).String() + `","type":"data","offset":0,"length":3}]}]}`} {
		if _, err := Decode([]byte(bad), false); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	// restic's older "supersedes" field is ignored
	if _, err := Decode([]byte(`{"supersedes":["`+core.Hash(nil).String()+`"],"packs":[]}`), false); err != nil {
		t.Fatal(err)
	}
}

func TestMaster(t *testing.T) {
	m := NewMaster()
	f := sampleFile()
	fid := core.Hash([]byte("file"))
	m.AddFile(fid, f)
	m.AddFile(fid, f) // idempotent
	a := core.BlobHandle{ID: core.Hash([]byte("a")), Type: core.DataBlob}
	if !m.Has(a) || m.Has(core.BlobHandle{ID: a.ID, Type: core.TreeBlob}) {
		t.Fatal("lookup by type broken")
	}
	if n := len(m.LookupAll(a)); n != 2 {
		t.Fatalf("duplicate locations: %d", n)
	}
	if m.Count(core.InvalidBlob) != 3 || m.Count(core.TreeBlob) != 1 {
		t.Fatal("counts")
	}
	if len(m.Packs()) != 2 || len(m.Pending()) != 1 {
		t.Fatal("packs/pending")
	}
	packs, err := m.FilePacks(fid)
	if err != nil || len(packs) != 2 {
		t.Fatalf("file packs %v %v", packs, err)
	}
	pc := m.PackContents()
	if len(pc[f.Packs[1].ID]) != 2 || pc[f.Packs[1].ID][1].Offset != 60 {
		t.Fatal("pack contents")
	}
	// concurrent readers and writers under -race
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				id := core.Hash([]byte{byte(i), byte(j)})
				m.AddPack(core.ID{}, id, []pack.Blob{{BlobHandle: core.BlobHandle{ID: id, Type: core.DataBlob}, Length: 33}})
				m.Lookup(a)
				m.Has(core.BlobHandle{ID: id, Type: core.DataBlob})
			}
		}(i)
	}
	wg.Wait()
	if m.Count(core.DataBlob) != 2+800 {
		t.Fatalf("count after concurrent adds: %d", m.Count(core.DataBlob))
	}
}

func FuzzDecodeIndex(f *testing.F) {
	buf, _ := Encode(sampleFile())
	f.Add(buf)
	f.Add([]byte(`{"packs":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Decode(b, false)
		if err != nil {
			return
		}
		enc, err := Encode(file)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(enc, false)
		if err != nil {
			t.Fatalf("re-encoded index does not decode: %v", err)
		}
		enc2, _ := Encode(again)
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encoding not stable")
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	m := NewMaster()
	var ids []core.ID
	for p := 0; p < 100; p++ {
		var blobs []pack.Blob
		for i := 0; i < 1000; i++ {
			id := core.Hash([]byte{byte(p), byte(i), byte(i >> 8)})
			ids = append(ids, id)
			blobs = append(blobs, pack.Blob{BlobHandle: core.BlobHandle{ID: id, Type: core.DataBlob}, Offset: uint32(i * 100), Length: 100})
		}
		m.AddPack(core.ID{}, core.Hash([]byte{byte(p)}), blobs)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := m.Lookup(core.BlobHandle{ID: ids[i%len(ids)], Type: core.DataBlob}); !ok {
			b.Fatal("missing")
		}
	}
}
