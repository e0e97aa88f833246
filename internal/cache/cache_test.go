package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/backendtest"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

var testRepoID = strings.Repeat("ab", 32)

// countingBackend counts the loads that reach the real backend and can
// make List fail.
type countingBackend struct {
	backend.Backend
	mu       sync.Mutex // guards loads, listErr
	loads    map[backend.Handle][]string
	listErr  error
	listFail int // fail after this many entries
}

func newCounting() *countingBackend {
	return &countingBackend{Backend: mem.New(), loads: make(map[backend.Handle][]string)}
}

func (c *countingBackend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	c.mu.Lock()
	c.loads[h] = append(c.loads[h], fmt.Sprintf("%d@%d", length, offset))
	c.mu.Unlock()
	return c.Backend.Load(ctx, h, length, offset, fn)
}

func (c *countingBackend) nLoads(h backend.Handle) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.loads[h])
}

func (c *countingBackend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	c.mu.Lock()
	lerr, after := c.listErr, c.listFail
	c.mu.Unlock()
	n := 0
	err := c.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		if lerr != nil && n >= after {
			return lerr
		}
		n++
		return fn(fi)
	})
	if err == nil && lerr != nil {
		return lerr
	}
	return err
}

func randomFile(rng *rand.Rand, t core.FileType, n int) (backend.Handle, []byte) {
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	return backend.Handle{Type: t, Name: core.Hash(buf).String()}, buf
}

func newTestCache(t *testing.T) (*Cache, string) {
	t.Helper()
	base := filepath.Join(t.TempDir(), "cache")
	c, err := New(base, testRepoID, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return c, base
}

func store(t *testing.T, be backend.Backend, h backend.Handle, buf []byte) {
	t.Helper()
	if err := be.Save(context.Background(), h, backend.NewByteReader(buf)); err != nil {
		t.Fatal(err)
	}
}

func loadRange(t *testing.T, be backend.Backend, h backend.Handle, length int, offset int64) []byte {
	t.Helper()
	var out []byte
	err := be.Load(context.Background(), h, length, offset, func(rd io.Reader) error {
		var err error
		out, err = io.ReadAll(rd)
		return err
	})
	if err != nil {
		t.Fatalf("load %v %d@%d: %v", h, length, offset, err)
	}
	return out
}

func cachedBytes(c *Cache, h backend.Handle) ([]byte, error) { return os.ReadFile(c.filename(h)) }

// age sets the file times of p to an hour ago.
func age(t *testing.T, p string) {
	t.Helper()
	old := time.Now().Add(-2 * staleTempAge)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		c, _ := newTestCache(t)
		b := Wrap(mem.New(), c)
		b.SetMetadataPacks(func(core.ID) bool { return true })
		return b
	})
}

func TestLayout(t *testing.T) {
	c, base := newTestCache(t)
	tag, err := os.ReadFile(filepath.Join(base, "CACHEDIR.TAG"))
	if err != nil || !bytes.HasPrefix(tag, []byte(TagSignature+"\n")) {
		t.Fatalf("CACHEDIR.TAG: %q %v", tag, err)
	}
	v, err := os.ReadFile(filepath.Join(base, testRepoID, "version"))
	if err != nil || string(v) != "1" {
		t.Fatalf("version: %q %v", v, err)
	}
	if c.Path() != filepath.Join(base, testRepoID) {
		t.Fatalf("path %s", c.Path())
	}
	h := backend.Handle{Type: core.IndexFile, Name: strings.Repeat("0f", 32)}
	if want := filepath.Join(base, testRepoID, "index", "0f", h.Name); c.filename(h) != want {
		t.Fatalf("filename %s, want %s", c.filename(h), want)
	}

	// a newer version is refused
	if err := os.WriteFile(filepath.Join(base, testRepoID, "version"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(base, testRepoID, Options{}); !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("newer version: %v", err)
	}
	// a damaged version file is rewritten
	if err := os.WriteFile(filepath.Join(base, testRepoID, "version"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(base, testRepoID, Options{}); err != nil {
		t.Fatal(err)
	}
	if v, _ := os.ReadFile(filepath.Join(base, testRepoID, "version")); string(v) != "1" {
		t.Fatalf("version not rewritten: %q", v)
	}
	// repository IDs become directory names: nothing else is accepted
	for _, id := range []string{"", "../../etc", strings.Repeat("g", 64), strings.Repeat("a", 63)} {
		if _, err := New(base, id, Options{}); err == nil {
			t.Fatalf("repository ID %q accepted", id)
		}
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("CAIRN_CACHE_DIR", "/x/y")
	if d, err := DefaultDir(); err != nil || d != "/x/y" {
		t.Fatalf("%q %v", d, err)
	}
	t.Setenv("CAIRN_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d, err := DefaultDir(); err != nil || d != "/xdg/cairn" {
		t.Fatalf("%q %v", d, err)
	}
}

func TestSmallFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c, _ := newTestCache(t)
	cb := newCounting()
	b := Wrap(cb, c)

	// Save writes through to the cache; Load is then served from it.
	h1, d1 := randomFile(rng, core.IndexFile, 5000)
	store(t, b, h1, d1)
	if got, err := cachedBytes(c, h1); err != nil || !bytes.Equal(got, d1) {
		t.Fatalf("saved file not cached: %v", err)
	}
	if got := loadRange(t, b, h1, 0, 0); !bytes.Equal(got, d1) {
		t.Fatal("wrong content")
	}
	if got := loadRange(t, b, h1, 100, 10); !bytes.Equal(got, d1[10:110]) {
		t.Fatal("wrong range")
	}
	if n := cb.nLoads(h1); n != 0 {
		t.Fatalf("%d backend loads for a cached file", n)
	}

	// A file saved by someone else: the first load fetches and caches it.
	h2, d2 := randomFile(rng, core.SnapshotFile, 700)
	store(t, cb, h2, d2)
	if got := loadRange(t, b, h2, 0, 0); !bytes.Equal(got, d2) {
		t.Fatal("wrong content")
	}
	if got := loadRange(t, b, h2, 0, 0); !bytes.Equal(got, d2) {
		t.Fatal("wrong content")
	}
	if n := cb.nLoads(h2); n != 1 {
		t.Fatalf("%d backend loads, want 1", n)
	}

	// Keys, locks and the config are never cached.
	hk, dk := randomFile(rng, core.KeyFile, 300)
	store(t, b, hk, dk)
	loadRange(t, b, hk, 0, 0)
	loadRange(t, b, hk, 0, 0)
	if n := cb.nLoads(hk); n != 2 {
		t.Fatalf("key file: %d backend loads, want 2", n)
	}
	if c.Has(hk) {
		t.Fatal("key file cached")
	}

	// A missing file is not-found, as from the backend.
	hm, _ := randomFile(rng, core.IndexFile, 10)
	err := b.Load(context.Background(), hm, 0, 0, func(io.Reader) error { return nil })
	if !backend.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
	// A bad range is the backend's error, not a cache hit.
	err = b.Load(context.Background(), h1, 10, 4995, func(io.Reader) error { return nil })
	if err == nil {
		t.Fatal("range beyond the end accepted")
	}
}

// A file whose content does not match its name is passed on as the
// backend returned it, and never cached.
func TestBackendCorruptionNotCached(t *testing.T) {
	c, _ := newTestCache(t)
	cb := newCounting()
	b := Wrap(cb, c)
	b.SetMetadataPacks(func(core.ID) bool { return true })
	for _, typ := range []core.FileType{core.IndexFile, core.PackFile} {
		h := backend.Handle{Type: typ, Name: core.Hash([]byte("other")).String()}
		store(t, cb, h, []byte("not the content of that name"))
		if got := loadRange(t, b, h, 0, 0); string(got) != "not the content of that name" {
			t.Fatalf("%v: got %q", typ, got)
		}
		if got := loadRange(t, b, h, 3, 4); string(got) != "the" {
			t.Fatalf("%v: got %q", typ, got)
		}
		if c.Has(h) {
			t.Fatalf("%v: a file not matching its name was cached", typ)
		}
	}
}

func TestMetadataPacks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c, _ := newTestCache(t)
	cb := newCounting()
	b := Wrap(cb, c)
	tree, treeData := randomFile(rng, core.PackFile, 1<<20)
	data, dataData := randomFile(rng, core.PackFile, 1<<20)
	store(t, b, tree, treeData)
	store(t, b, data, dataData)
	if c.Has(tree) || c.Has(data) {
		t.Fatal("packs cached on save")
	}
	treeID, _ := core.ParseID(tree.Name)
	b.SetMetadataPacks(func(id core.ID) bool { return id == treeID })

	for i := 0; i < 20; i++ {
		off := rng.IntN(1 << 19)
		n := 1 + rng.IntN(1<<18)
		if got := loadRange(t, b, tree, n, int64(off)); !bytes.Equal(got, treeData[off:off+n]) {
			t.Fatal("tree pack: wrong range")
		}
		if got := loadRange(t, b, data, n, int64(off)); !bytes.Equal(got, dataData[off:off+n]) {
			t.Fatal("data pack: wrong range")
		}
	}
	if got := loadRange(t, b, tree, 0, 1000); !bytes.Equal(got, treeData[1000:]) {
		t.Fatal("tree pack: wrong tail")
	}
	if cb.nLoads(tree) != 1 || cb.loads[tree][0] != "0@0" {
		t.Fatalf("tree pack: backend loads %v, want one whole download", cb.loads[tree])
	}
	if cb.nLoads(data) != 20 || c.Has(data) {
		t.Fatalf("data pack: %d backend loads, cached %v", cb.nLoads(data), c.Has(data))
	}

	// A cached pack is used even when the predicate does not know it.
	b.SetMetadataPacks(nil)
	if got := loadRange(t, b, tree, 10, 20); !bytes.Equal(got, treeData[20:30]) {
		t.Fatal("wrong range")
	}
	if cb.nLoads(tree) != 1 {
		t.Fatal("cached pack not used")
	}

	// concurrent first reads share one download
	b.SetMetadataPacks(func(core.ID) bool { return true })
	p2, d2 := randomFile(rng, core.PackFile, 2<<20)
	store(t, cb, p2, d2)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			var got []byte
			err := b.Load(context.Background(), p2, 100, int64(i*1000), func(rd io.Reader) error {
				var err error
				got, err = io.ReadAll(rd)
				return err
			})
			if err != nil || !bytes.Equal(got, d2[i*1000:i*1000+100]) {
				t.Errorf("concurrent load %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	// Waiters may fall back to the backend only if the download failed,
	// which it did not: some loads may have started before the download
	// and found no entry, but there is exactly one whole-pack load.
	whole := 0
	for _, l := range cb.loads[p2] {
		if l == "0@0" {
			whole++
		}
	}
	if whole != 1 {
		t.Fatalf("backend loads %v, want exactly one whole download", cb.loads[p2])
	}
}

func TestEviction(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	c, _ := newTestCache(t)
	cb := newCounting()
	b := Wrap(cb, c)
	var hs []backend.Handle
	for i := 0; i < 6; i++ {
		h, d := randomFile(rng, core.SnapshotFile, 100)
		store(t, b, h, d)
		age(t, c.filename(h))
		hs = append(hs, h)
	}
	// removed behind our back (by another process)
	if err := cb.Backend.Remove(context.Background(), hs[0]); err != nil {
		t.Fatal(err)
	}
	if err := cb.Backend.Remove(context.Background(), hs[1]); err != nil {
		t.Fatal(err)
	}

	// a failing listing evicts nothing (H24), nor one stopped by fn
	cb.listErr, cb.listFail = errors.New("listing broke"), 2
	if err := b.List(context.Background(), core.SnapshotFile, func(backend.FileInfo) error { return nil }); err == nil {
		t.Fatal("listing error lost")
	}
	cb.listErr = nil
	stop := errors.New("stop")
	if err := b.List(context.Background(), core.SnapshotFile, func(backend.FileInfo) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn error: %v", err)
	}
	for _, h := range hs {
		if !c.Has(h) {
			t.Fatalf("%v evicted after an incomplete listing", h)
		}
	}
	// a complete listing evicts what is gone; files of other types stay
	hi, di := randomFile(rng, core.IndexFile, 100)
	store(t, b, hi, di)
	age(t, c.filename(hi))
	n := 0
	if err := b.List(context.Background(), core.SnapshotFile, func(backend.FileInfo) error { n++; return nil }); err != nil || n != 4 {
		t.Fatalf("list: %d %v", n, err)
	}
	if c.Has(hs[0]) || c.Has(hs[1]) || !c.Has(hs[2]) || !c.Has(hi) {
		t.Fatal("wrong eviction")
	}
	// entries written after the listing began are kept
	hn, dn := randomFile(rng, core.SnapshotFile, 100)
	store(t, cb, hn, dn)
	if err := c.putBytes(hn, dn); err != nil {
		t.Fatal(err)
	}
	_ = cb.Backend.Remove(context.Background(), hn)
	if err := b.List(context.Background(), core.SnapshotFile, func(backend.FileInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !c.Has(hn) {
		t.Fatal("entry written during the listing evicted")
	}

	// Remove evicts; removing twice is fine
	for i := 0; i < 2; i++ {
		if err := b.Remove(context.Background(), hs[2]); err != nil {
			t.Fatal(err)
		}
	}
	if c.Has(hs[2]) {
		t.Fatal("removed file still cached")
	}
	// Stat not-found evicts
	_ = cb.Backend.Remove(context.Background(), hs[3])
	if _, err := b.Stat(context.Background(), hs[3]); !backend.IsNotExist(err) {
		t.Fatalf("stat: %v", err)
	}
	if c.Has(hs[3]) {
		t.Fatal("stat not-found did not evict")
	}
	if fi, err := b.Stat(context.Background(), hs[4]); err != nil || fi.Size != 100 || !c.Has(hs[4]) {
		t.Fatalf("stat: %v %v", fi, err)
	}
}

func TestDamagedEntries(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	c, base := newTestCache(t)
	cb := newCounting()
	b := Wrap(cb, c)
	b.SetMetadataPacks(func(core.ID) bool { return true })
	hi, di := randomFile(rng, core.IndexFile, 3000)
	hp, dp := randomFile(rng, core.PackFile, 300000)
	store(t, b, hi, di)
	store(t, cb, hp, dp)
	loadRange(t, b, hp, 10, 10) // cache the pack

	damage := []struct {
		name string
		fn   func(p string)
	}{
		{"truncated", func(p string) { _ = os.Truncate(p, 100) }},
		{"empty", func(p string) { _ = os.Truncate(p, 0) }},
		{"replaced", func(p string) {
			// another writer's bad copy, renamed into place
			tmp := p + ".x"
			_ = os.WriteFile(tmp, bytes.Repeat([]byte("x"), 3000), 0o644)
			_ = os.Rename(tmp, p)
		}},
		{"flipped in place", func(p string) {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteAt([]byte{0xff, 0x00, 0x55}, 20)
			f.Close()
		}},
		{"directory", func(p string) { _ = os.Remove(p); _ = os.Mkdir(p, 0o700) }},
	}
	for _, d := range damage {
		for _, tc := range []struct {
			h    backend.Handle
			data []byte
		}{{hi, di}, {hp, dp}} {
			d.fn(c.filename(tc.h))
			// a fresh handle, as a new process would open it
			c2, err := New(base, testRepoID, Options{Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			b2 := Wrap(cb, c2)
			b2.SetMetadataPacks(func(core.ID) bool { return true })
			if got := loadRange(t, b2, tc.h, 50, 25); !bytes.Equal(got, tc.data[25:75]) {
				t.Fatalf("%s %v: wrong content", d.name, tc.h)
			}
			// the damaged entry was replaced by a good copy
			if got, err := cachedBytes(c2, tc.h); err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("%s %v: entry not repaired: %v", d.name, tc.h, err)
			}
		}
	}

	// The same process notices a pack replaced or truncated after it
	// verified it, and one changed in place while it reads.
	loadRange(t, b, hp, 10, 10)
	_ = os.Truncate(c.filename(hp), 1000)
	if got := loadRange(t, b, hp, 10, 5000); !bytes.Equal(got, dp[5000:5010]) {
		t.Fatal("truncated pack served")
	}
	err := b.Load(context.Background(), hp, 10, 7000, func(rd io.Reader) error {
		// someone writes into the file while we read it (fn runs again on
		// the fallback, when the damaged entry is gone)
		f, err := os.OpenFile(c.filename(hp), os.O_RDWR, 0)
		if err != nil {
			return nil
		}
		_, _ = f.WriteAt([]byte("garbage!"), 7000)
		later := time.Now().Add(time.Hour)
		_ = os.Chtimes(c.filename(hp), later, later)
		return f.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := loadRange(t, b, hp, 10, 7000); !bytes.Equal(got, dp[7000:7010]) {
		t.Fatal("pack changed in place served")
	}
}

// The fn passed to Load may fail on its own: that error is returned as is,
// and a failing read of the cached file falls back to the backend.
func TestLoadCallbackErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	c, _ := newTestCache(t)
	b := Wrap(newCounting(), c)
	b.SetMetadataPacks(func(core.ID) bool { return true })
	hp, dp := randomFile(rng, core.PackFile, 10000)
	store(t, b, hp, dp)
	loadRange(t, b, hp, 1, 1)
	boom := errors.New("boom")
	for _, h := range []backend.Handle{hp} {
		if err := b.Load(context.Background(), h, 10, 10, func(io.Reader) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("fn error: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Load(ctx, hp, 10, 10, func(io.Reader) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// H34: the cache disappears mid-run; reads fall back, writes rebuild it.
func TestCacheDirRemoved(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	c, base := newTestCache(t)
	cb := newCounting()
	b := Wrap(cb, c)
	b.SetMetadataPacks(func(core.ID) bool { return true })
	hi, di := randomFile(rng, core.IndexFile, 3000)
	hp, dp := randomFile(rng, core.PackFile, 30000)
	store(t, b, hi, di)
	store(t, cb, hp, dp)
	loadRange(t, b, hp, 10, 10)

	for _, victim := range []string{base, c.Path(), filepath.Join(c.Path(), "data"), filepath.Dir(c.filename(hi))} {
		if err := os.RemoveAll(victim); err != nil {
			t.Fatal(err)
		}
		if got := loadRange(t, b, hi, 0, 0); !bytes.Equal(got, di) {
			t.Fatal("index: wrong content")
		}
		if got := loadRange(t, b, hp, 100, 200); !bytes.Equal(got, dp[200:300]) {
			t.Fatal("pack: wrong content")
		}
		// rebuilt by the reads above, complete with tag and version
		for _, p := range []string{c.filename(hi), c.filename(hp), filepath.Join(base, "CACHEDIR.TAG"), filepath.Join(c.Path(), "version")} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("after removing %s: %v", victim, err)
			}
		}
		if err := b.List(context.Background(), core.IndexFile, func(backend.FileInfo) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// a cache directory that cannot be recreated: everything still works
	if err := os.RemoveAll(base); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base, []byte("a file in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	hs, ds := randomFile(rng, core.SnapshotFile, 100)
	store(t, b, hs, ds)
	if got := loadRange(t, b, hs, 0, 0); !bytes.Equal(got, ds) {
		t.Fatal("wrong content")
	}
	if got := loadRange(t, b, hp, 100, 200); !bytes.Equal(got, dp[200:300]) {
		t.Fatal("pack: wrong content")
	}
	if err := b.List(context.Background(), core.SnapshotFile, func(backend.FileInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(context.Background(), hs); err != nil {
		t.Fatal(err)
	}
}

// Files left by a writer that crashed are never read, and are removed by
// the next listing once they are old enough not to belong to a live
// writer.
func TestCrashedWriterLeftovers(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	c, _ := newTestCache(t)
	cb := newCounting()
	b := Wrap(cb, c)
	hi, di := randomFile(rng, core.IndexFile, 3000)
	store(t, cb, hi, di)
	dir := filepath.Dir(c.filename(hi))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	oldTmp := filepath.Join(dir, tempPrefix+"123")
	newTmp := filepath.Join(dir, tempPrefix+"456")
	for _, p := range []string{oldTmp, newTmp} {
		if err := os.WriteFile(p, di[:1000], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	age(t, oldTmp)
	// a crash-truncated entry under the final name (a writer without
	// rename, e.g. an older program version)
	if err := os.WriteFile(c.filename(hi), di[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	if got := loadRange(t, b, hi, 0, 0); !bytes.Equal(got, di) {
		t.Fatal("wrong content")
	}
	if err := b.List(context.Background(), core.IndexFile, func(backend.FileInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(oldTmp); !os.IsNotExist(err) {
		t.Fatalf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(newTmp); err != nil {
		t.Fatalf("young temporary file removed: %v", err)
	}
	if got, _ := cachedBytes(c, hi); !bytes.Equal(got, di) {
		t.Fatal("entry not repaired")
	}
}

// Eight goroutines share one cache (two Cache handles, like two
// processes) while a ninth evicts, damages and removes entries and
// directories under them. Every read must return the right bytes.
func TestConcurrentSharedCache(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	base := filepath.Join(t.TempDir(), "cache")
	be := mem.New()
	type file struct {
		h    backend.Handle
		data []byte
	}
	var files []file
	for i := 0; i < 12; i++ {
		typ := core.IndexFile
		n := 2000
		switch i % 3 {
		case 1:
			typ = core.SnapshotFile
		case 2:
			typ, n = core.PackFile, 200000
		}
		h, d := randomFile(rng, typ, n)
		store(t, be, h, d)
		files = append(files, file{h, d})
	}
	var backends [2]*Backend
	for i := range backends {
		c, err := New(base, testRepoID, Options{})
		if err != nil {
			t.Fatal(err)
		}
		backends[i] = Wrap(be, c)
		backends[i].SetMetadataPacks(func(core.ID) bool { return true })
	}
	ctx, cancel := context.WithCancel(context.Background())
	var vandal sync.WaitGroup
	vandal.Go(func() {
		r := rand.New(rand.NewPCG(17, 18))
		c := backends[0].c
		for ctx.Err() == nil {
			f := files[r.IntN(len(files))]
			p := c.filename(f.h)
			switch r.IntN(7) {
			case 0:
				_ = c.Evict(f.h)
			case 1:
				_ = os.Truncate(p, int64(r.IntN(len(f.data))))
			case 2:
				tmp := p + ".bad"
				bad := bytes.Clone(f.data)
				bad[r.IntN(len(bad))] ^= 0x40
				_ = os.WriteFile(tmp, bad, 0o644)
				_ = os.Rename(tmp, p)
			case 3:
				_ = os.RemoveAll(filepath.Dir(p))
			case 4:
				if r.IntN(10) == 0 {
					_ = os.RemoveAll(base)
				}
			case 5:
				_ = backends[r.IntN(2)].List(ctx, f.h.Type, func(backend.FileInfo) error { return nil })
			case 6:
				time.Sleep(time.Millisecond)
			}
		}
	})
	var readers sync.WaitGroup
	for g := 0; g < 8; g++ {
		readers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 99))
			b := backends[g%2]
			for i := 0; i < 150; i++ {
				f := files[r.IntN(len(files))]
				off := r.IntN(len(f.data) - 10)
				n := 1 + r.IntN(len(f.data)-off)
				var got []byte
				err := b.Load(context.Background(), f.h, n, int64(off), func(rd io.Reader) error {
					var err error
					got, err = io.ReadAll(rd)
					return err
				})
				if err != nil {
					t.Errorf("load %v: %v", f.h, err)
					return
				}
				if !bytes.Equal(got, f.data[off:off+n]) {
					t.Errorf("load %v %d@%d: wrong content", f.h, n, off)
					return
				}
			}
		})
	}
	readers.Wait()
	cancel()
	vandal.Wait()
}

func TestListAndCleanup(t *testing.T) {
	base := filepath.Join(t.TempDir(), "cache")
	if dirs, err := ListDirs(base, 0, true); err != nil || len(dirs) != 0 {
		t.Fatalf("missing base: %v %v", dirs, err)
	}
	var ids []string
	for i := 0; i < 4; i++ {
		id := strings.Repeat(fmt.Sprintf("%02x", i), 32)
		c, err := New(base, id, Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := backend.Handle{Type: core.IndexFile, Name: core.Hash([]byte(id)).String()}
		if err := c.putBytes(h, []byte(id)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// not repository directories: left alone
	for _, p := range []string{"other", "restic-check-cache-1"} {
		if err := os.Mkdir(filepath.Join(base, p), 0o700); err != nil {
			t.Fatal(err)
		}
		age(t, filepath.Join(base, p))
	}
	old := time.Now().Add(-40 * 24 * time.Hour)
	for _, id := range ids[:2] {
		if err := os.Chtimes(filepath.Join(base, id), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// leftover of an interrupted clean-up
	if err := os.MkdirAll(filepath.Join(base, trashPrefix+"1", "index"), 0o700); err != nil {
		t.Fatal(err)
	}

	dirs, err := ListDirs(base, 0, true)
	if err != nil || len(dirs) != 4 {
		t.Fatalf("%v %v", dirs, err)
	}
	for i, d := range dirs {
		if d.ID != ids[i] || d.Old != (i < 2) || d.Size != 1+64 { // version file + entry
			t.Fatalf("dir %d: %+v", i, d)
		}
	}
	if dirs, _ := ListDirs(base, 0, false); dirs[0].Size != -1 {
		t.Fatal("size computed")
	}
	// Opening marks a directory as used.
	if _, err := New(base, ids[1], Options{}); err != nil {
		t.Fatal(err)
	}

	// concurrent clean-ups: no errors, each directory removed once
	var wg sync.WaitGroup
	var mu sync.Mutex // guards removed
	var removed []string
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			rm, err := Cleanup(base, 0)
			if err != nil {
				t.Errorf("cleanup: %v", err)
			}
			mu.Lock()
			for _, d := range rm {
				removed = append(removed, d.ID)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(removed) != 1 || removed[0] != ids[0] {
		t.Fatalf("removed %v, want only %s", removed, ids[0])
	}
	ents, _ := os.ReadDir(base)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"CACHEDIR.TAG", ids[1], ids[2], ids[3], "other", "restic-check-cache-1"}
	sort.Strings(want)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("left %v, want %v", names, want)
	}
	if rm, err := Cleanup(filepath.Join(base, "missing"), 0); err != nil || len(rm) != 0 {
		t.Fatalf("missing base: %v %v", rm, err)
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1", "2\n", "", "x", "-1", "99999999999999999999", " 1 "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVersion(b)
		if err == nil && v < 1 {
			t.Fatalf("accepted version %d", v)
		}
	})
}

// TestTempFileChangedWhileWritten: another process truncates or rewrites
// an entry's temporary file after its bytes were written (the cache is
// shared). The entry must not be stored as verified with the damaged
// content: a later read gets the right bytes or none.
func TestTempFileChangedWhileWritten(t *testing.T) {
	for _, damage := range []string{"truncate", "flip"} {
		t.Run(damage, func(t *testing.T) {
			c, _ := newTestCache(t)
			h, buf := randomFile(rand.New(rand.NewPCG(7, 7)), core.PackFile, 300<<10)
			err := c.put(h, func(w io.Writer, _ func() error) error {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(c.filename(h)), tempPrefix+"*"))
				if len(tmps) != 1 {
					return fmt.Errorf("%d temporary files", len(tmps))
				}
				if damage == "truncate" {
					return os.Truncate(tmps[0], 40)
				}
				f, err := os.OpenFile(tmps[0], os.O_WRONLY, 0)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = f.WriteAt([]byte{buf[1000] ^ 1}, 1000)
				return err
			})
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("put of a damaged temporary file: %v, want errCorrupt", err)
			}
			if _, err := cachedBytes(c, h); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the damaged entry was stored: %v", err)
			}
		})
	}
}
