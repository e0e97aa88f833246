package fsnode

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

func TestIsZero(t *testing.T) {
	buf := make([]byte, 300)
	for n := 0; n <= len(buf); n++ {
		if !IsZero(buf[:n]) {
			t.Fatalf("IsZero(zeros[%d]) = false", n)
		}
		for i := 0; i < n; i++ {
			buf[i] = 0x80
			if IsZero(buf[:n]) {
				t.Fatalf("IsZero missed byte %d of %d", i, n)
			}
			buf[i] = 0
		}
	}
	// Unaligned starts.
	big := make([]byte, 1<<16+13)
	big[len(big)-1] = 1
	for off := 0; off < 9; off++ {
		if IsZero(big[off:]) || !IsZero(big[off:len(big)-1]) {
			t.Fatalf("offset %d: wrong result", off)
		}
	}
}

// holesSupported reports whether dir's filesystem stores a truncated-up
// file without allocating blocks.
func holesSupported(t *testing.T, dir string) bool {
	f, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks*512 < 1<<19
}

func TestWriteAtSkippingZeros(t *testing.T) {
	dir := t.TempDir()
	if !holesSupported(t, dir) {
		t.Skip("filesystem does not support sparse files")
	}
	const size = 4<<20 + 123
	want := make([]byte, size)
	rnd := rand.New(rand.NewPCG(7, 8))
	fill := func(from, to int) {
		for i := from; i < to; i++ {
			want[i] = byte(rnd.IntN(255) + 1)
		}
	}
	fill(0, 100)              // data at the start
	fill(1<<20+5, 1<<20+9000) // data in the middle, unaligned
	fill(2<<20, 2<<20+4096)   // exactly one aligned block
	want[3<<20+77] = 1        // a lone byte
	// The last ~1 MiB is zero: a trailing hole.

	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Write in uneven chunks, concurrently, as a restorer would.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for off := 0; off < size; off += 700001 {
		end := min(off+700001, size)
		wg.Add(1)
		go func(off, end int) {
			defer wg.Done()
			errs <- WriteAtSkippingZeros(f, want[off:end], int64(off))
		}(off, end)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := FinishSparse(f, size); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	// Data occupies at most a few blocks per region (plus chunk edges).
	if allocated := st.Blocks * 512; allocated > 256<<10 {
		t.Errorf("file of %d bytes has %d bytes allocated, want far less", size, allocated)
	} else {
		t.Logf("%d bytes, %d allocated", size, allocated)
	}
}

func TestWriteAtSkippingZerosEdges(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteAtSkippingZeros(f, []byte{1}, -1); err == nil {
		t.Error("negative offset accepted")
	}
	// Zero blocks that are not aligned are written, so the file grows.
	if err := WriteAtSkippingZeros(f, make([]byte, 8192), 10); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	// Bytes 10..4095 and 8192..8201 are partial blocks and written; the
	// aligned block 4096..8191 is skipped, but the write of the tail still
	// extends the file to 8202.
	if fi.Size() != 8202 {
		t.Errorf("size %d, want 8202", fi.Size())
	}
	// Non-zero data over an existing region is written.
	if err := WriteAtSkippingZeros(f, bytes.Repeat([]byte{9}, 4096), 4096); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !IsZero(got[:4096]) || !bytes.Equal(got[4096:8192], bytes.Repeat([]byte{9}, 4096)) || !IsZero(got[8192:]) {
		t.Error("unexpected content")
	}
	if err := WriteAtSkippingZeros(f, nil, 0); err != nil {
		t.Errorf("empty write: %v", err)
	}
}

func TestHardlinkIndex(t *testing.T) {
	var h HardlinkIndex // zero value works
	if _, ok := h.Lookup(1, 2); ok {
		t.Fatal("empty index has an entry")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards firsts
	firsts := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			first, loaded := h.LoadOrStore(1, 2, fmt.Sprint("path", i))
			if !loaded {
				mu.Lock()
				firsts++
				mu.Unlock()
			} else if first == fmt.Sprint("path", i) {
				t.Errorf("loaded entry returned the caller's own path")
			}
		}(i)
	}
	wg.Wait()
	if firsts != 1 {
		t.Fatalf("%d goroutines became first, want 1", firsts)
	}
	if p, loaded := h.LoadOrStore(2, 2, "other-device"); loaded || p != "other-device" {
		t.Error("same inode on another device was merged")
	}
	if h.Len() != 2 {
		t.Errorf("Len %d", h.Len())
	}
	h.Forget(2, 2)
	if _, ok := h.Lookup(2, 2); ok || h.Len() != 1 {
		t.Error("Forget did not remove the entry")
	}
	if NewHardlinkIndex().Len() != 0 {
		t.Error("new index not empty")
	}
}

func BenchmarkIsZero(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if !IsZero(buf) {
			b.Fatal("not zero")
		}
	}
}
