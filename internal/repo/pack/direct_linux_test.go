//go:build linux

package pack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"testing/cryptotest"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

// testBlob is one Add call.
type testBlob struct {
	h      core.BlobHandle
	sealed []byte
	ul     uint32
}

// planPack returns blobs of the given lengths; when roundTo > 0 one more
// blob is appended whose length makes the finished pack a multiple of
// roundTo bytes.
func planPack(t testing.TB, seed uint64, lengths []int, roundTo int) []testBlob {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, 99))
	mk := func(n int, ul uint32) testBlob {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		return testBlob{h: core.BlobHandle{ID: core.Hash(b), Type: core.DataBlob}, sealed: b, ul: ul}
	}
	var out []testBlob
	size := HeaderOverhead
	for i, n := range lengths {
		var ul uint32
		if i%2 == 1 {
			ul = uint32(n) * 2 // a compressed entry: header entries of both sizes
		}
		b := mk(n, ul)
		out = append(out, b)
		size += n + Blob{Length: uint32(n), UncompressedLength: ul}.EntrySize()
	}
	if roundTo > 0 {
		size += entrySizeUncompressed
		n := (size+crypto.Extension+roundTo-1)/roundTo*roundTo - size
		out = append(out, mk(n, 0))
		size += n
		if size%roundTo != 0 {
			t.Fatalf("plan: size %d is not a multiple of %d", size, roundTo)
		}
	}
	return out
}

// packResult is what writing a pack produced.
type packResult struct {
	id     core.ID
	size   int64
	data   []byte
	offset int64 // file offset after Finalize
	err    error // first error of Add or Finalize
	direct bool  // EnableDirect's answer
}

// writePack writes blobs to a new file in dir; bufSize 0 means buffered,
// -1 the default direct buffer.
func writePack(t testing.TB, key *crypto.Key, dir string, blobs []testBlob, bufSize int) packResult {
	t.Helper()
	f, err := os.CreateTemp(dir, "pack-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewFileWriter(key, f)
	var res packResult
	switch {
	case bufSize < 0:
		res.direct = w.EnableDirect()
	case bufSize > 0:
		res.direct = w.enableDirect(bufSize)
	}
	for _, b := range blobs {
		if err := w.Add(b.h, b.sealed, b.ul); err != nil {
			if res.err == nil {
				res.err = err
			}
		} else if res.err != nil {
			t.Fatalf("Add succeeded after the error %v: not sticky", res.err)
		}
	}
	if tt, ok := t.(*testing.T); ok {
		// The header's IV comes from crypto/rand: the same stream for
		// every pack makes packs of the same blobs byte-identical.
		cryptotest.SetGlobalRandom(tt, 1)
	}
	res.id, res.size, err = w.Finalize()
	if res.err == nil {
		res.err = err
	} else if err == nil {
		t.Fatalf("Finalize succeeded after the error %v", res.err)
	}
	if res.err != nil {
		w.Release() // as a discarded pack's writer is
		return res
	}
	if w.dio != nil || w.spare != nil || w.inflight != nil {
		t.Fatal("writer holds direct I/O buffers after Finalize")
	}
	if w.IsDirect() {
		t.Fatal("writer still direct after Finalize")
	}
	if directFlag(t, f) {
		t.Fatal("O_DIRECT still set after Finalize")
	}
	if res.offset, err = f.Seek(0, io.SeekCurrent); err != nil {
		t.Fatal(err)
	}
	if res.data, err = os.ReadFile(f.Name()); err != nil {
		t.Fatal(err)
	}
	// The open file must read back with an ordinary, unaligned buffer (an
	// upload that is not an adoption reads it through ReadAt).
	buf := make([]byte, len(res.data)+1)
	if n, err := f.ReadAt(buf[1:], 0); n != len(res.data) || (err != nil && err != io.EOF) || !bytes.Equal(buf[1:], res.data) {
		t.Fatalf("read back through the open file: %d bytes of %d, %v", n, len(res.data), err)
	}
	if err := os.Remove(f.Name()); err != nil {
		t.Fatal(err)
	}
	return res
}

func directFlag(t testing.TB, f *os.File) bool {
	t.Helper()
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return flags&unix.O_DIRECT != 0
}

// dioSupported reports whether the file system of dir advertises direct
// I/O within directAlign for regular files (statx STATX_DIOALIGN).
func dioSupported(t testing.TB, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err != nil {
		return false
	}
	return st.Mask&unix.STATX_DIOALIGN != 0 && st.Dio_mem_align != 0 && st.Dio_offset_align != 0 &&
		st.Dio_mem_align <= directAlign && st.Dio_offset_align <= directAlign
}

// needDirect skips the test when files in dir cannot be put in direct
// mode (TestFileWriterDirectIdentical fails if they should have been).
func needDirect(t *testing.T, dir string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	w := NewFileWriter(crypto.NewRandomKey(), f)
	defer w.Release()
	if !w.EnableDirect() {
		t.Skipf("no direct I/O in %s", dir)
	}
}

func checkSame(t *testing.T, what string, got, want packResult) {
	t.Helper()
	if got.err != nil {
		t.Fatalf("%s: %v", what, got.err)
	}
	if got.id != want.id || got.size != want.size || !bytes.Equal(got.data, want.data) || got.offset != want.offset {
		t.Fatalf("%s: id %v/%v size %d/%d file %d bytes/%d equal %v offset %d/%d", what,
			got.id.Str(), want.id.Str(), got.size, want.size, len(got.data), len(want.data),
			bytes.Equal(got.data, want.data), got.offset, want.offset)
	}
	if int64(len(got.data)) != got.size || core.Hash(got.data) != got.id {
		t.Fatalf("%s: file is %d bytes for size %d, hash matches id: %v", what, len(got.data), got.size, core.Hash(got.data) == got.id)
	}
}

// hookWrite replaces directWrite for the test.
func hookWrite(t *testing.T, fn func(f *os.File, p []byte) (int, error)) {
	old := directWrite
	directWrite = fn
	t.Cleanup(func() { directWrite = old })
}

type packCase struct {
	name    string
	lengths []int
	roundTo int
}

var packCases = []packCase{
	{"tiny", []int{100}, 0},
	{"one-block", nil, 4096},
	{"blocks", []int{5000, 777, 9000}, 4096},
	{"unaligned", []int{5000, 777, 9000, 40000, 33}, 0},
	{"buffer-multiple", []int{3000, 17000}, 16384},
	{"big-blob", []int{70000, 100, 1 << 17}, 0},
}

func TestFileWriterDirectIdentical(t *testing.T) {
	key := crypto.NewRandomKey()
	dir := t.TempDir()
	mustDirect := dioSupported(t, dir)
	for i, c := range packCases {
		blobs := planPack(t, uint64(i), c.lengths, c.roundTo)
		want := writePack(t, key, dir, blobs, 0)
		if want.err != nil {
			t.Fatal(want.err)
		}
		if c.roundTo > 0 && want.size%int64(c.roundTo) != 0 {
			t.Fatalf("%s: size %d is not a multiple of %d", c.name, want.size, c.roundTo)
		}
		for _, bufSize := range []int{directAlign, 16384, -1} {
			var calls int
			var written int64
			var kernelRefused bool // the file system took O_DIRECT but refuses the writes
			hookWrite(t, func(f *os.File, p []byte) (int, error) {
				calls++
				off, err := f.Seek(0, io.SeekCurrent)
				if err != nil {
					t.Error(err)
				}
				if off%directAlign != 0 || len(p)%directAlign != 0 || uintptr(unsafe.Pointer(&p[0]))%directAlign != 0 {
					t.Errorf("unaligned direct write: offset %d, length %d, address %p", off, len(p), &p[0])
				}
				if !directFlag(t, f) {
					t.Error("direct write without O_DIRECT")
				}
				n, err := f.Write(p)
				written += int64(n)
				if directRefused(err) && !mustDirect {
					kernelRefused = true
				}
				return n, err
			})
			what := fmt.Sprintf("%s/buf=%d", c.name, bufSize)
			got := writePack(t, key, dir, blobs, bufSize)
			if !got.direct {
				if mustDirect {
					t.Fatalf("%s: EnableDirect refused on a file system that supports direct I/O", what)
				}
				t.Logf("%s: no direct I/O in %s", what, dir)
			} else if kernelRefused {
				t.Logf("%s: %s takes O_DIRECT but refuses the writes: fallback tested", what, dir)
			} else {
				pad := (want.size + directAlign - 1) &^ (directAlign - 1)
				if calls == 0 || written != pad {
					t.Fatalf("%s: %d direct writes of %d bytes, want %d (the padded size)", what, calls, written, pad)
				}
			}
			checkSame(t, what, got, want)
		}
	}
}

// TestFileWriterDirectFallback refuses the k-th direct write (EINVAL,
// after m of its bytes were written), as a file system that cannot do
// direct I/O does: the pack must come out identical, written buffered
// from there on.
func TestFileWriterDirectFallback(t *testing.T) {
	key := crypto.NewRandomKey()
	dir := t.TempDir()
	needDirect(t, dir)
	const bufSize = 16384
	for i, c := range packCases {
		blobs := planPack(t, uint64(i), c.lengths, c.roundTo)
		want := writePack(t, key, dir, blobs, 0)
		var total int
		hookWrite(t, func(f *os.File, p []byte) (int, error) { total++; return f.Write(p) })
		if got := writePack(t, key, dir, blobs, bufSize); !got.direct {
			t.Fatal("EnableDirect refused")
		}
		for k := 1; k <= total; k++ {
			for _, part := range []string{"none", "block", "half", "all"} {
				var calls, after int
				var refused bool
				hookWrite(t, func(f *os.File, p []byte) (int, error) {
					calls++
					if refused {
						after++
					}
					if calls != k {
						return f.Write(p)
					}
					m := map[string]int{"none": 0, "block": directAlign, "half": len(p) / 2 &^ (directAlign - 1), "all": len(p)}[part]
					m = min(m, len(p))
					n, err := f.Write(p[:m])
					if err != nil {
						return n, err
					}
					refused = true
					return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EINVAL}
				})
				what := fmt.Sprintf("%s/refuse write %d of %d, %s written", c.name, k, total, part)
				got := writePack(t, key, dir, blobs, bufSize)
				checkSame(t, what, got, want)
				if !refused || after != 0 {
					t.Fatalf("%s: refused %v, %d direct writes after the refusal", what, refused, after)
				}
			}
		}
	}
}

// TestFileWriterDirectKernelRefusal makes the kernel itself refuse: the
// first direct write goes out from a misaligned address, which O_DIRECT
// rejects with EINVAL on block file systems.
func TestFileWriterDirectKernelRefusal(t *testing.T) {
	key := crypto.NewRandomKey()
	dir := t.TempDir()
	blobs := planPack(t, 7, []int{5000, 777, 9000, 40000, 33}, 0)
	want := writePack(t, key, dir, blobs, 0)
	var calls int
	var kernelErr error
	hookWrite(t, func(f *os.File, p []byte) (int, error) {
		calls++
		if calls > 1 {
			return f.Write(p)
		}
		mis := alignedBuf(len(p) + directAlign)[1 : 1+len(p)]
		copy(mis, p)
		n, err := f.Write(mis)
		kernelErr = err
		return n, err
	})
	got := writePack(t, key, dir, blobs, 16384)
	checkSame(t, "kernel refusal", got, want)
	t.Logf("direct %v, misaligned write: %v, direct writes %d", got.direct, kernelErr, calls)
	if got.direct && dioSupported(t, dir) {
		if !errors.Is(kernelErr, syscall.EINVAL) {
			t.Fatalf("misaligned direct write gave %v, want EINVAL", kernelErr)
		}
		if calls != 1 {
			t.Fatalf("%d direct writes after the refusal", calls-1)
		}
	}
}

// TestFileWriterDirectError: a real write error (ENOSPC) is no refusal;
// it is reported by Add or Finalize and stays.
func TestFileWriterDirectError(t *testing.T) {
	key := crypto.NewRandomKey()
	dir := t.TempDir()
	needDirect(t, dir)
	blobs := planPack(t, 3, []int{5000, 777, 9000, 40000, 33}, 0)
	var total int
	hookWrite(t, func(f *os.File, p []byte) (int, error) { total++; return f.Write(p) })
	writePack(t, key, dir, blobs, 16384)
	for k := 1; k <= total; k++ {
		for _, m := range []int{0, directAlign} {
			var calls int
			hookWrite(t, func(f *os.File, p []byte) (int, error) {
				calls++
				if calls < k {
					return f.Write(p)
				}
				if calls > k {
					t.Errorf("direct write %d after the error", calls)
				}
				n, err := f.Write(p[:min(m, len(p))])
				if err != nil {
					return n, err
				}
				return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
			})
			got := writePack(t, key, dir, blobs, 16384)
			if !errors.Is(got.err, syscall.ENOSPC) {
				t.Fatalf("ENOSPC at write %d of %d (%d written): got %v", k, total, m, got.err)
			}
		}
	}
	// A short write without an error is an error too.
	hookWrite(t, func(f *os.File, p []byte) (int, error) { return f.Write(p[:len(p)-directAlign]) })
	if got := writePack(t, key, dir, blobs, 16384); !errors.Is(got.err, io.ErrShortWrite) {
		t.Fatalf("short write: got %v", got.err)
	}
}

// TestFileWriterDirectTmpfs: tmpfs either refuses O_DIRECT or takes it;
// the pack must be right either way.
func TestFileWriterDirectTmpfs(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "cairn-pack-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	key := crypto.NewRandomKey()
	for i, c := range packCases {
		blobs := planPack(t, uint64(i), c.lengths, c.roundTo)
		want := writePack(t, key, dir, blobs, 0)
		for _, bufSize := range []int{16384, -1} {
			got := writePack(t, key, dir, blobs, bufSize)
			if i == 0 {
				t.Logf("tmpfs: EnableDirect %v", got.direct)
			}
			checkSame(t, c.name+" on tmpfs", got, want)
		}
	}
}

func TestFileWriterEnableDirectState(t *testing.T) {
	key := crypto.NewRandomKey()
	dir := t.TempDir()
	blobs := planPack(t, 5, []int{5000}, 0)

	// After an Add it is too late: the writer stays buffered.
	f, err := os.CreateTemp(dir, "pack-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewFileWriter(key, f)
	if err := w.Add(blobs[0].h, blobs[0].sealed, 0); err != nil {
		t.Fatal(err)
	}
	if w.EnableDirect() || w.IsDirect() || directFlag(t, f) {
		t.Fatal("EnableDirect after Add switched to direct I/O")
	}

	// A file not at offset 0 stays buffered.
	g, err := os.CreateTemp(dir, "pack-*")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if NewFileWriter(key, g).EnableDirect() || directFlag(t, g) {
		t.Fatal("EnableDirect on a non-empty file switched to direct I/O")
	}

	// Twice is the same as once.
	h, err := os.CreateTemp(dir, "pack-*")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	w = NewFileWriter(key, h)
	first := w.EnableDirect()
	if !first && dioSupported(t, dir) {
		t.Fatal("EnableDirect refused")
	}
	if w.EnableDirect() != first || w.IsDirect() != first || directFlag(t, h) != first {
		t.Fatal("second EnableDirect changed the state")
	}
	w.Release()
}
