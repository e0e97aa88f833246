// Package backendtest is the conformance suite every backend.Backend must
// pass. It checks the contract documented in package backend: atomic,
// no-overwrite saves; ranged loads; not-found semantics; listings that never
// show temporary files or turn errors into empty results; idempotent removal;
// concurrency safety and context cancellation.
package backendtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// Run runs the conformance suite. newBackend must return a fresh, empty,
// ready-to-use backend (already created, if it is a backend.Creator) each
// time it is called; Run closes every backend it obtains when the subtest
// using it ends.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, be backend.Backend)
	}{
		{"SaveLoad", testSaveLoad},
		{"LoadRange", testLoadRange},
		{"LoadFnError", testLoadFnError},
		{"LoadPartialRead", testLoadPartialRead},
		{"NotExist", testNotExist},
		{"InvalidHandle", testInvalidHandle},
		{"AlreadyExists", testAlreadyExists},
		{"Remove", testRemove},
		{"ListEmpty", testListEmpty},
		{"ListMany", testListMany},
		{"ListFnError", testListFnError},
		{"Config", testConfig},
		{"FailingReader", testFailingReader},
		{"LengthMismatch", testLengthMismatch},
		{"InFlightInvisible", testInFlightInvisible},
		{"CancelledContext", testCancelledContext},
		{"CancelDuringSave", testCancelDuringSave},
		{"Concurrent", testConcurrent},
		{"ConcurrentSameName", testConcurrentSameName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t)
			if be == nil {
				t.Fatal("newBackend returned nil")
			}
			t.Cleanup(func() {
				if err := be.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, be)
		})
	}
}

// ---- helpers ----

// randomData returns n pseudo-random bytes and the handle naming them by
// their SHA-256, as the repository does.
func randomData(rng *rand.Rand, t core.FileType, n int) (backend.Handle, []byte) {
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(buf)
	return backend.Handle{Type: t, Name: hex.EncodeToString(sum[:])}, buf
}

func newRand(t *testing.T) *rand.Rand {
	// Seed from the test name so every subtest is reproducible.
	sum := sha256.Sum256([]byte(t.Name()))
	var seed [32]byte
	copy(seed[:], sum[:])
	return rand.New(rand.NewChaCha8(seed))
}

func save(t *testing.T, be backend.Backend, h backend.Handle, data []byte) {
	t.Helper()
	if err := be.Save(context.Background(), h, backend.NewByteReader(data)); err != nil {
		t.Fatalf("Save %v: %v", h, err)
	}
}

func loadAll(t *testing.T, be backend.Backend, h backend.Handle) []byte {
	t.Helper()
	buf, err := backend.LoadAll(context.Background(), be, h)
	if err != nil {
		t.Fatalf("Load %v: %v", h, err)
	}
	return buf
}

func listAll(t *testing.T, be backend.Backend, ft core.FileType) map[string]int64 {
	t.Helper()
	m, err := list(context.Background(), be, ft)
	if err != nil {
		t.Fatalf("List %v: %v", ft, err)
	}
	return m
}

func list(ctx context.Context, be backend.Backend, ft core.FileType) (map[string]int64, error) {
	m := make(map[string]int64)
	var dup error
	err := be.List(ctx, ft, func(fi backend.FileInfo) error {
		if _, ok := m[fi.Name]; ok && dup == nil {
			dup = fmt.Errorf("List %v reported %q twice", ft, fi.Name)
		}
		m[fi.Name] = fi.Size
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, dup
}

// assertAbsent checks that h is invisible through Stat, Load and List.
func assertAbsent(t *testing.T, be backend.Backend, h backend.Handle) {
	t.Helper()
	ctx := context.Background()
	if _, err := be.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Stat %v: got %v, want ErrNotExist", h, err)
	}
	called := false
	err := be.Load(ctx, h, 0, 0, func(io.Reader) error { called = true; return nil })
	if !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Load %v: got %v, want ErrNotExist", h, err)
	}
	if called {
		t.Errorf("Load %v of a missing file called fn", h)
	}
	if h.Type != core.ConfigFile {
		if m := listAll(t, be, h.Type); len(m) != 0 {
			if _, ok := m[h.Name]; ok {
				t.Errorf("List %v includes absent file %v", h.Type, h)
			}
		}
	}
}

// assertStored checks that h holds exactly data via Load, Stat and List.
func assertStored(t *testing.T, be backend.Backend, h backend.Handle, data []byte) {
	t.Helper()
	got := loadAll(t, be, h)
	if !bytes.Equal(got, data) {
		t.Errorf("Load %v: got %d bytes, want %d bytes (content differs: %v)", h, len(got), len(data), len(got) == len(data))
	}
	fi, err := be.Stat(context.Background(), h)
	if err != nil {
		t.Fatalf("Stat %v: %v", h, err)
	}
	if fi.Size != int64(len(data)) {
		t.Errorf("Stat %v: size %d, want %d", h, fi.Size, len(data))
	}
	if fi.Name != h.Name {
		t.Errorf("Stat %v: name %q, want %q", h, fi.Name, h.Name)
	}
	if h.Type != core.ConfigFile {
		m := listAll(t, be, h.Type)
		if size, ok := m[h.Name]; !ok {
			t.Errorf("List %v misses %v", h.Type, h)
		} else if size != int64(len(data)) {
			t.Errorf("List %v: size of %v is %d, want %d", h.Type, h, size, len(data))
		}
	}
}

// ---- readers ----

// failingReader returns err after delivering n bytes of data.
type failingReader struct {
	data []byte
	n    int
	pos  int
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.pos >= r.n {
		return 0, r.err
	}
	k := copy(p, r.data[r.pos:r.n])
	r.pos += k
	return k, nil
}
func (r *failingReader) Rewind() error { r.pos = 0; return nil }
func (r *failingReader) Length() int64 { return int64(len(r.data)) }

// lyingReader delivers data but claims a different length.
type lyingReader struct {
	*bytes.Reader
	data   []byte
	length int64
}

func (r *lyingReader) Rewind() error { _, err := r.Seek(0, io.SeekStart); return err }
func (r *lyingReader) Length() int64 { return r.length }

// gatedReader delivers the first half of data, signals reached, then waits
// until release is closed or ctx is done before delivering the rest.
type gatedReader struct {
	data    []byte
	pos     int
	half    int
	reached chan struct{}
	release <-chan struct{}
	ctx     context.Context
	waited  bool
}

func (r *gatedReader) Read(p []byte) (int, error) {
	if r.pos >= r.half && !r.waited {
		r.waited = true
		close(r.reached)
		select {
		case <-r.release:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
	end := len(r.data)
	if !r.waited {
		end = r.half
	}
	if r.pos >= end {
		return 0, io.EOF
	}
	k := copy(p, r.data[r.pos:end])
	r.pos += k
	return k, nil
}
func (r *gatedReader) Rewind() error { r.pos = 0; return nil }
func (r *gatedReader) Length() int64 { return int64(len(r.data)) }

// cancellingReader calls cancel once half of data was read, and keeps
// delivering data afterwards.
type cancellingReader struct {
	*bytes.Reader
	half   int64
	cancel context.CancelFunc
	data   []byte
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	pos := r.Size() - int64(r.Len())
	if pos >= r.half {
		r.cancel()
	}
	if max := r.half - pos; max > 0 && int64(len(p)) > max {
		p = p[:max]
	}
	return r.Reader.Read(p)
}
func (r *cancellingReader) Rewind() error { _, err := r.Seek(0, io.SeekStart); return err }
func (r *cancellingReader) Length() int64 { return int64(len(r.data)) }

// ---- tests ----

func testSaveLoad(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	for i, ft := range core.AllFileTypes {
		for _, size := range []int{0, 1, 4095, 70000 + i, 1<<20 + 17} {
			h, data := randomData(rng, ft, size)
			save(t, be, h, data)
			assertStored(t, be, h, data)
		}
	}
}

func testLoadRange(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	const size = 300_000
	h, data := randomData(rng, core.PackFile, size)
	save(t, be, h, data)
	ctx := context.Background()

	type rangeCase struct {
		off int64
		n   int
	}
	cases := []rangeCase{
		{0, 0}, {0, 1}, {0, size}, {1, 0}, {1, size - 1}, {size - 1, 0}, {size - 1, 1},
		{size, 0}, {12345, 6789}, {size / 2, size / 2}, {size - 100, 100},
	}
	for i := 0; i < 30; i++ {
		off := rng.Int64N(size)
		n := 0
		if rng.IntN(4) != 0 {
			n = 1 + rng.IntN(int(size-off))
		}
		cases = append(cases, rangeCase{off, n})
	}
	for _, c := range cases {
		want := data[c.off:]
		if c.n > 0 {
			want = want[:c.n]
		}
		var got []byte
		calls := 0
		err := be.Load(ctx, h, c.n, c.off, func(rd io.Reader) error {
			calls++
			var err error
			got, err = io.ReadAll(rd)
			return err
		})
		if err != nil {
			t.Errorf("Load off=%d len=%d: %v", c.off, c.n, err)
			continue
		}
		if calls < 1 {
			t.Errorf("Load off=%d len=%d: fn not called", c.off, c.n)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Load off=%d len=%d: got %d bytes, want %d (equal length: %v)", c.off, c.n, len(got), len(want), len(got) == len(want))
		}
	}

	// A length reaching past the end is an error wrapping io.ErrUnexpectedEOF.
	for _, c := range []rangeCase{{0, size + 1}, {size - 10, 11}, {size, 1}, {100, size}} {
		err := be.Load(ctx, h, c.n, c.off, func(rd io.Reader) error {
			_, err := io.Copy(io.Discard, rd)
			return err
		})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Load off=%d len=%d past end of %d-byte file: got %v, want io.ErrUnexpectedEOF", c.off, c.n, size, err)
		}
	}
	// Invalid ranges are errors.
	for _, c := range []rangeCase{{size + 1, 0}, {size + 100, 5}, {-1, 0}, {0, -1}} {
		err := be.Load(ctx, h, c.n, c.off, func(rd io.Reader) error {
			_, err := io.Copy(io.Discard, rd)
			return err
		})
		if err == nil {
			t.Errorf("Load off=%d len=%d of %d-byte file: no error", c.off, c.n, size)
		}
	}
	// The file is unchanged by all that.
	assertStored(t, be, h, data)
}

func testLoadFnError(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	h, data := randomData(rng, core.IndexFile, 5000)
	save(t, be, h, data)
	sentinel := errors.New("sentinel from fn")
	err := be.Load(context.Background(), h, 0, 0, func(rd io.Reader) error {
		buf := make([]byte, 10)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return err
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("Load: got %v, want the error returned by fn", err)
	}
	assertStored(t, be, h, data)
}

func testLoadPartialRead(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	h, data := randomData(rng, core.PackFile, 200_000)
	save(t, be, h, data)
	for i := 0; i < 20; i++ {
		err := be.Load(context.Background(), h, 0, 0, func(rd io.Reader) error {
			buf := make([]byte, 100)
			if _, err := io.ReadFull(rd, buf); err != nil {
				return err
			}
			if !bytes.Equal(buf, data[:100]) {
				return errors.New("wrong prefix")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Load reading a prefix only: %v", err)
		}
	}
	assertStored(t, be, h, data)
}

func testNotExist(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	ctx := context.Background()
	for _, ft := range append(append([]core.FileType{}, core.AllFileTypes...), core.ConfigFile) {
		var h backend.Handle
		if ft == core.ConfigFile {
			h = backend.Handle{Type: core.ConfigFile}
		} else {
			h, _ = randomData(rng, ft, 10)
		}
		assertAbsent(t, be, h)
		if err := be.Remove(ctx, h); err != nil {
			t.Errorf("Remove of missing %v: %v, want success", h, err)
		}
		// Ranged loads of a missing file are not-found too.
		err := be.Load(ctx, h, 10, 5, func(io.Reader) error { return nil })
		if !errors.Is(err, backend.ErrNotExist) {
			t.Errorf("ranged Load of missing %v: got %v, want ErrNotExist", h, err)
		}
	}
	// A file of one type is not visible as another type.
	h, data := randomData(rng, core.SnapshotFile, 100)
	save(t, be, h, data)
	for _, ft := range core.AllFileTypes {
		if ft == core.SnapshotFile {
			continue
		}
		assertAbsent(t, be, backend.Handle{Type: ft, Name: h.Name})
	}
}

func testInvalidHandle(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	bad := []backend.Handle{
		{Type: core.PackFile, Name: ""},
		{Type: core.PackFile, Name: "abc"},
		{Type: core.IndexFile, Name: "../../../../etc/passwd"},
		{Type: core.SnapshotFile, Name: "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"},
		{Type: core.KeyFile, Name: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde/"},
		{Type: 0, Name: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{Type: 99, Name: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	}
	for _, h := range bad {
		if err := be.Save(ctx, h, backend.NewByteReader([]byte("x"))); err == nil {
			t.Errorf("Save of invalid handle %#v succeeded", h)
		}
	}
	for _, ft := range core.AllFileTypes {
		if m := listAll(t, be, ft); len(m) != 0 {
			t.Errorf("List %v after invalid saves: %v", ft, m)
		}
	}
}

func testAlreadyExists(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	ctx := context.Background()
	for _, ft := range core.AllFileTypes {
		h, data := randomData(rng, ft, 1000)
		save(t, be, h, data)
		for _, other := range [][]byte{data, []byte("different and shorter"), bytes.Repeat([]byte{1}, 5000), {}} {
			err := be.Save(ctx, h, backend.NewByteReader(other))
			if !errors.Is(err, backend.ErrAlreadyExists) {
				t.Errorf("second Save of %v: got %v, want ErrAlreadyExists", h, err)
			}
		}
		assertStored(t, be, h, data)
		if m := listAll(t, be, ft); len(m) != 1 {
			t.Errorf("List %v: %d entries, want 1", ft, len(m))
		}
	}
}

func testRemove(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	ctx := context.Background()
	for _, ft := range core.AllFileTypes {
		h, data := randomData(rng, ft, 2000)
		keep, keepData := randomData(rng, ft, 3000)
		save(t, be, h, data)
		save(t, be, keep, keepData)
		if err := be.Remove(ctx, h); err != nil {
			t.Fatalf("Remove %v: %v", h, err)
		}
		assertAbsent(t, be, h)
		if err := be.Remove(ctx, h); err != nil {
			t.Errorf("second Remove %v: %v, want success", h, err)
		}
		assertStored(t, be, keep, keepData)
		// The name can be saved again after removal.
		save(t, be, h, data)
		assertStored(t, be, h, data)
	}
}

func testListEmpty(t *testing.T, be backend.Backend) {
	for _, ft := range core.AllFileTypes {
		called := false
		err := be.List(context.Background(), ft, func(fi backend.FileInfo) error {
			called = true
			return nil
		})
		if err != nil {
			t.Errorf("List %v of empty backend: %v", ft, err)
		}
		if called {
			t.Errorf("List %v of empty backend called fn", ft)
		}
	}
}

func testListMany(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	want := make(map[core.FileType]map[string]int64)
	counts := map[core.FileType]int{core.PackFile: 600, core.IndexFile: 40, core.KeyFile: 3, core.LockFile: 5, core.SnapshotFile: 120}
	for ft, n := range counts {
		want[ft] = make(map[string]int64)
		for i := 0; i < n; i++ {
			h, data := randomData(rng, ft, 16+rng.IntN(300))
			save(t, be, h, data)
			want[ft][h.Name] = int64(len(data))
		}
	}
	check := func() {
		t.Helper()
		for _, ft := range core.AllFileTypes {
			got := listAll(t, be, ft)
			if len(got) != len(want[ft]) {
				t.Errorf("List %v: %d entries, want %d", ft, len(got), len(want[ft]))
			}
			for name, size := range want[ft] {
				if gs, ok := got[name]; !ok {
					t.Errorf("List %v misses %s", ft, name[:8])
				} else if gs != size {
					t.Errorf("List %v: %s has size %d, want %d", ft, name[:8], gs, size)
				}
			}
			for name := range got {
				if _, ok := want[ft][name]; !ok {
					t.Errorf("List %v reports unexpected %q", ft, name)
				}
			}
		}
	}
	check()
	// Remove half of each type and list again.
	for ft, m := range want {
		i := 0
		for name := range m {
			if i%2 == 0 {
				if err := be.Remove(context.Background(), backend.Handle{Type: ft, Name: name}); err != nil {
					t.Fatalf("Remove: %v", err)
				}
				delete(m, name)
			}
			i++
		}
	}
	check()
}

func testListFnError(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	for i := 0; i < 10; i++ {
		h, data := randomData(rng, core.PackFile, 10)
		save(t, be, h, data)
	}
	sentinel := errors.New("stop listing")
	calls := 0
	err := be.List(context.Background(), core.PackFile, func(backend.FileInfo) error {
		calls++
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Errorf("List: got %v, want the error returned by fn", err)
	}
	if calls != 1 {
		t.Errorf("List called fn %d times after it returned an error, want 1", calls)
	}
}

func testConfig(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	h := backend.Handle{Type: core.ConfigFile}
	assertAbsent(t, be, h)
	data := []byte("this stands in for an encrypted repository config")
	save(t, be, h, data)
	assertStored(t, be, h, data)
	err := be.Save(ctx, h, backend.NewByteReader([]byte("another config from a racing init")))
	if !errors.Is(err, backend.ErrAlreadyExists) {
		t.Errorf("second config Save: got %v, want ErrAlreadyExists", err)
	}
	assertStored(t, be, h, data)
	// Ranged load of the config.
	var got []byte
	if err := be.Load(ctx, h, 6, 5, func(rd io.Reader) error {
		var err error
		got, err = io.ReadAll(rd)
		return err
	}); err != nil {
		t.Fatalf("ranged config Load: %v", err)
	}
	if !bytes.Equal(got, data[5:11]) {
		t.Errorf("ranged config Load: got %q, want %q", got, data[5:11])
	}
	// The config is not listed as any other type.
	for _, ft := range core.AllFileTypes {
		if m := listAll(t, be, ft); len(m) != 0 {
			t.Errorf("List %v after saving config: %v", ft, m)
		}
	}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatalf("Remove config: %v", err)
	}
	assertAbsent(t, be, h)
}

func testFailingReader(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	readErr := errors.New("reader broke")
	for _, ft := range append(append([]core.FileType{}, core.AllFileTypes...), core.ConfigFile) {
		h, data := randomData(rng, ft, 150_000)
		if ft == core.ConfigFile {
			h = backend.Handle{Type: core.ConfigFile}
		}
		for _, n := range []int{0, 1, 70_000, len(data) - 1} {
			err := be.Save(context.Background(), h, &failingReader{data: data, n: n, err: readErr})
			if err == nil {
				t.Fatalf("Save %v with a reader failing after %d bytes succeeded", h, n)
			}
			assertAbsent(t, be, h)
		}
		// Nothing left over blocks a later complete save.
		save(t, be, h, data)
		assertStored(t, be, h, data)
	}
}

func testLengthMismatch(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	for _, ft := range core.AllFileTypes {
		h, data := randomData(rng, ft, 20_000)
		for _, length := range []int64{0, 1, 19_999, 20_001, 1 << 20} {
			rd := &lyingReader{Reader: bytes.NewReader(data), data: data, length: length}
			if err := be.Save(context.Background(), h, rd); err == nil {
				t.Fatalf("Save %v of %d bytes claiming length %d succeeded", h, len(data), length)
			}
			assertAbsent(t, be, h)
		}
		save(t, be, h, data)
		assertStored(t, be, h, data)
	}
}

func testInFlightInvisible(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	for _, ft := range []core.FileType{core.PackFile, core.SnapshotFile, core.ConfigFile} {
		h, data := randomData(rng, ft, 1<<20)
		if ft == core.ConfigFile {
			h = backend.Handle{Type: core.ConfigFile}
		}
		release := make(chan struct{})
		rd := &gatedReader{data: data, half: len(data) / 2, reached: make(chan struct{}), release: release, ctx: context.Background()}
		done := make(chan error, 1)
		go func() { done <- be.Save(context.Background(), h, rd) }()
		select {
		case <-rd.reached:
		case err := <-done:
			t.Fatalf("Save %v returned before reading the whole body: %v", h, err)
		}
		// Half the body has been sent: nothing may be visible yet, and no
		// listing may show a temporary file.
		assertAbsent(t, be, h)
		for _, lt := range core.AllFileTypes {
			if m := listAll(t, be, lt); len(m) != 0 {
				t.Errorf("List %v during an unfinished Save of %v: %v", lt, h, m)
			}
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("Save %v: %v", h, err)
		}
		assertStored(t, be, h, data)
		if err := be.Remove(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
}

func testCancelledContext(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	stored, storedData := randomData(rng, core.IndexFile, 100)
	save(t, be, stored, storedData)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h, data := randomData(rng, core.PackFile, 10_000)
	if err := be.Save(ctx, h, backend.NewByteReader(data)); err == nil {
		t.Errorf("Save with a cancelled context succeeded")
	}
	assertAbsent(t, be, h)
	if err := be.Load(ctx, stored, 0, 0, func(rd io.Reader) error {
		_, err := io.Copy(io.Discard, rd)
		return err
	}); err == nil {
		t.Errorf("Load with a cancelled context succeeded")
	}
	if _, err := be.Stat(ctx, stored); err == nil {
		t.Errorf("Stat with a cancelled context succeeded")
	}
	if err := be.List(ctx, core.IndexFile, func(backend.FileInfo) error { return nil }); err == nil {
		t.Errorf("List with a cancelled context succeeded")
	}
	if err := be.List(ctx, core.LockFile, func(backend.FileInfo) error { return nil }); err == nil {
		t.Errorf("List of an empty type with a cancelled context succeeded")
	}
	if err := be.Remove(ctx, stored); err == nil {
		t.Errorf("Remove with a cancelled context succeeded")
	}
}

func testCancelDuringSave(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	// The reader cancels the context halfway and keeps delivering data:
	// the backend may finish (and report success) or fail, but a failure
	// must leave nothing behind.
	for i := 0; i < 3; i++ {
		h, data := randomData(rng, core.PackFile, 600_000)
		ctx, cancel := context.WithCancel(context.Background())
		rd := &cancellingReader{Reader: bytes.NewReader(data), half: int64(len(data) / 2), cancel: cancel, data: data}
		err := be.Save(ctx, h, rd)
		cancel()
		if err != nil {
			assertAbsent(t, be, h)
		} else {
			assertStored(t, be, h, data)
		}
	}
	// The reader blocks until the context is cancelled and then fails: the
	// Save must fail and leave nothing.
	for _, ft := range []core.FileType{core.PackFile, core.ConfigFile} {
		h, data := randomData(rng, ft, 600_000)
		if ft == core.ConfigFile {
			h = backend.Handle{Type: core.ConfigFile}
		}
		ctx, cancel := context.WithCancel(context.Background())
		rd := &gatedReader{data: data, half: len(data) / 2, reached: make(chan struct{}), release: make(chan struct{}), ctx: ctx}
		done := make(chan error, 1)
		go func() { done <- be.Save(ctx, h, rd) }()
		select {
		case <-rd.reached:
		case err := <-done:
			t.Fatalf("Save returned early: %v", err)
		}
		cancel()
		if err := <-done; err == nil {
			t.Fatalf("Save %v whose context was cancelled mid-body succeeded", h)
		}
		assertAbsent(t, be, h)
		save(t, be, h, data)
		assertStored(t, be, h, data)
	}
}

func testConcurrent(t *testing.T, be backend.Backend) {
	const workers = 16
	const perWorker = 12
	ctx := context.Background()
	type file struct {
		h    backend.Handle
		data []byte
	}
	files := make([][]file, workers)
	rng := newRand(t)
	for w := range files {
		for i := 0; i < perWorker; i++ {
			ft := core.AllFileTypes[rng.IntN(len(core.AllFileTypes))]
			h, data := randomData(rng, ft, 16+rng.IntN(50_000))
			files[w] = append(files[w], file{h, data})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker*4)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i, f := range files[w] {
				if err := be.Save(ctx, f.h, backend.NewByteReader(f.data)); err != nil {
					errs <- fmt.Errorf("Save %v: %w", f.h, err)
					continue
				}
				// Load back something this worker saved earlier.
				g := files[w][i/2]
				buf, err := backend.LoadAll(ctx, be, g.h)
				if err != nil {
					errs <- fmt.Errorf("Load %v: %w", g.h, err)
				} else if !bytes.Equal(buf, g.data) {
					errs <- fmt.Errorf("Load %v: wrong content", g.h)
				}
				if _, err := list(ctx, be, f.h.Type); err != nil {
					errs <- fmt.Errorf("List %v: %w", f.h.Type, err)
				}
				if _, err := be.Stat(ctx, f.h); err != nil {
					errs <- fmt.Errorf("Stat %v: %w", f.h, err)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, fs := range files {
		for _, f := range fs {
			assertStored(t, be, f.h, f.data)
		}
	}
}

func testConcurrentSameName(t *testing.T, be backend.Backend) {
	rng := newRand(t)
	const writers = 8
	for _, ft := range []core.FileType{core.PackFile, core.ConfigFile} {
		h, _ := randomData(rng, ft, 1)
		if ft == core.ConfigFile {
			h = backend.Handle{Type: core.ConfigFile}
		}
		contents := make([][]byte, writers)
		for i := range contents {
			_, contents[i] = randomData(rng, ft, 100_000+i*1000)
		}
		results := make([]error, writers)
		var wg sync.WaitGroup
		for i := 0; i < writers; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = be.Save(context.Background(), h, backend.NewByteReader(contents[i]))
			}(i)
		}
		wg.Wait()
		winner := -1
		for i, err := range results {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Errorf("Save %v: writers %d and %d both succeeded", h, winner, i)
				}
				winner = i
			case errors.Is(err, backend.ErrAlreadyExists):
			default:
				t.Errorf("Save %v by writer %d: %v, want success or ErrAlreadyExists", h, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("Save %v: no writer succeeded", h)
		}
		assertStored(t, be, h, contents[winner])
	}
}
