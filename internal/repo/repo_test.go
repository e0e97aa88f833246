package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

var testParams = crypto.Params{N: 1024, R: 1, P: 1}

func newTestRepo(t *testing.T, version uint, opts Options) (*Repository, backend.Backend) {
	t.Helper()
	be := mem.New()
	r, err := Init(context.Background(), be, "secret", version, testParams, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, be
}

func TestInitOpen(t *testing.T) {
	ctx := context.Background()
	for _, v := range []uint{1, 2} {
		r, be := newTestRepo(t, v, Options{})
		if _, err := Init(ctx, be, "x", v, testParams, Options{}); err == nil {
			t.Fatal("second init succeeded")
		}
		r2, err := Open(ctx, be, "secret", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r2.Config() != r.Config() {
			t.Fatal("config mismatch")
		}
		if _, err := Open(ctx, be, "wrong", Options{}); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("wrong password: %v", err)
		}
		if _, err := Open(ctx, mem.New(), "secret", Options{}); !errors.Is(err, ErrNoRepository) {
			t.Fatalf("missing repo: %v", err)
		}
	}
}

func TestAddKey(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, 2, Options{})
	if _, err := r.AddKey(ctx, "second", testParams, ""); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"secret", "second"} {
		r2, err := Open(ctx, be, pw, Options{})
		if err != nil {
			t.Fatalf("%s: %v", pw, err)
		}
		if r2.Key().EncryptionKey != r.Key().EncryptionKey {
			t.Fatal("different master key")
		}
	}
}

func TestUnpacked(t *testing.T) {
	ctx := context.Background()
	for _, v := range []uint{1, 2} {
		r, be := newTestRepo(t, v, Options{})
		data := bytes.Repeat([]byte(`{"a":1}`), 100)
		id, err := r.SaveUnpacked(ctx, core.SnapshotFile, data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.LoadUnpacked(ctx, core.SnapshotFile, id)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("v%d: %v", v, err)
		}
		raw, _ := backend.LoadAll(ctx, be, backend.Handle{Type: core.SnapshotFile, Name: id.String()})
		plain, _ := r.Key().Open(nil, raw)
		if v == 2 && plain[0] != 2 {
			t.Fatal("v2 unpacked file not compressed")
		}
		if v == 1 && !bytes.Equal(plain, data) {
			t.Fatal("v1 unpacked file not raw JSON")
		}
		// tamper: a file whose content does not match its name
		bad := bytes.Clone(raw)
		bad[len(bad)/2] ^= 1
		be.Remove(ctx, backend.Handle{Type: core.SnapshotFile, Name: id.String()})
		be.Save(ctx, backend.Handle{Type: core.SnapshotFile, Name: id.String()}, backend.NewByteReader(bad))
		if _, err := r.LoadUnpacked(ctx, core.SnapshotFile, id); !errors.Is(err, ErrInvalidData) {
			t.Fatalf("tampered file: %v", err)
		}
	}
}

func TestBlobsConcurrent(t *testing.T) {
	ctx := context.Background()
	for _, v := range []uint{1, 2} {
		r, be := newTestRepo(t, v, Options{PackSize: 64 << 10})
		var blobs [][]byte
		rnd := rand.New(rand.NewPCG(uint64(v), 9))
		for i := 0; i < 300; i++ {
			b := make([]byte, rnd.IntN(20000))
			for j := range b {
				b[j] = byte(rnd.IntN(4)) // compressible
			}
			blobs = append(blobs, b)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		added := 0
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i, b := range blobs { // every worker saves every blob: dedup must hold
					typ := core.DataBlob
					if i%5 == 0 {
						typ = core.TreeBlob
					}
					buf := bytes.Clone(b)
					res, err := r.SaveBlob(ctx, typ, buf, core.ID{}, false)
					if err != nil {
						t.Error(err)
						return
					}
					for k := range buf { // caller may reuse the buffer at once
						buf[k] = 0xff
					}
					if !res.Known {
						mu.Lock()
						added++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		distinct := map[core.BlobHandle]bool{}
		for i, b := range blobs {
			typ := core.DataBlob
			if i%5 == 0 {
				typ = core.TreeBlob
			}
			distinct[core.BlobHandle{ID: core.Hash(b), Type: typ}] = true
		}
		if added != len(distinct) {
			t.Fatalf("v%d: %d blobs added, want %d (dedup broken)", v, added, len(distinct))
		}
		// reopen and read back through a fresh index
		r2, err := Open(ctx, be, "secret", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r2.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		for i, b := range blobs {
			typ := core.DataBlob
			if i%5 == 0 {
				typ = core.TreeBlob
			}
			got, err := r2.LoadBlob(ctx, typ, core.Hash(b), nil)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("blob %d: %v", i, err)
			}
		}
		// packs hold only one blob type
		for p, bl := range r2.Index().PackContents() {
			for _, b := range bl[1:] {
				if b.Type != bl[0].Type {
					t.Fatalf("pack %v mixes blob types", p.Str())
				}
			}
			hdr, err := r2.LoadPackHeader(ctx, p, 0)
			if err != nil || len(hdr) != len(bl) {
				t.Fatalf("pack %v header: %v", p.Str(), err)
			}
		}
	}
}

func TestLoadBlobFallsBackToDuplicate(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, 2, Options{})
	data := []byte("precious")
	if _, err := r.SaveBlob(ctx, core.DataBlob, data, core.ID{}, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	first := r.Index().Packs().List()[0]
	if _, err := r.SaveBlob(ctx, core.DataBlob, data, core.ID{}, true); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// damage the first pack
	h := backend.Handle{Type: core.PackFile, Name: first.String()}
	raw, _ := backend.LoadAll(ctx, be, h)
	raw[20] ^= 0x55
	be.Remove(ctx, h)
	be.Save(ctx, h, backend.NewByteReader(raw))
	got, err := r.LoadBlob(ctx, core.DataBlob, core.Hash(data), nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fallback failed: %v", err)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, 2, Options{})
	tree := core.Hash([]byte("tree"))
	for i := 0; i < 3; i++ {
		sn, _ := snapshot.New([]string{"/x"}, []string{fmt.Sprint("t", i)}, "host", time.Unix(int64(1000+i), 0))
		sn.Tree = &tree
		if _, err := r.SaveSnapshot(ctx, sn); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := r.FindSnapshot(ctx, "latest", snapshot.Filter{})
	if err != nil || sn.Tags[0] != "t2" {
		t.Fatalf("latest: %v %v", sn, err)
	}
	got, err := r.FindSnapshot(ctx, sn.ID().String()[:8], snapshot.Filter{})
	if err != nil || *got.ID() != *sn.ID() {
		t.Fatalf("prefix lookup: %v", err)
	}
	empty := &snapshot.Snapshot{}
	if _, err := r.SaveSnapshot(ctx, empty); err == nil {
		t.Fatal("snapshot without tree saved")
	}
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"version":2,"id":"abc","chunker_polynomial":"25b468838dcb75"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeConfig(b)
		if err == nil && c.Validate() != nil {
			t.Fatal("accepted invalid config")
		}
	})
}

func FuzzDecodeKeyFile(f *testing.F) {
	k := crypto.NewRandomKey()
	_, buf, _ := NewKeyFile(k, "pw", testParams, "h")
	f.Add(buf)
	f.Add([]byte(`{"kdf":"scrypt"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := DecodeKeyFile(b)
		if err != nil {
			return
		}
		if kf.N <= 1<<12 && kf.R <= 8 && kf.P <= 2 { // keep the fuzzer fast
			kf.Open("pw")
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add([]byte(`{"time":"2024-01-01T00:00:00Z","tree":"` + core.Hash(nil).String() + `","paths":["/"]}`))
	f.Add([]byte(`{"tree":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sn, err := DecodeSnapshot(b)
		if err == nil && (sn.Tree == nil || sn.Tree.IsNull()) {
			t.Fatal("accepted snapshot without tree")
		}
	})
}
