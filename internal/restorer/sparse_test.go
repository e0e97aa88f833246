package restorer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/fsnode"
)

// checkWriteSparse writes buf at off into a new file with writeSparse and
// checks the size it leaves, the content after extending the file, and
// that no all-zero aligned block was written.
func checkWriteSparse(t *testing.T, buf []byte, off int64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	fd, err := openFD(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	end, err := writeSparse(fd, buf, off)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != end {
		t.Fatalf("file size %d after the write, writeSparse says it wrote up to %d", st.Size, end)
	}
	// the last non-zero byte must have been written
	if i := bytes.LastIndexFunc(buf, func(r rune) bool { return r != 0 }); i >= 0 && end < off+int64(i)+1 {
		t.Fatalf("end %d, but byte %d is not zero", end, off+int64(i))
	}
	if end > off+int64(len(buf)) {
		t.Fatalf("end %d beyond the buffer's end %d", end, off+int64(len(buf)))
	}
	size := off + int64(len(buf))
	if end < size {
		if err := ftruncate(fd, size); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != size || !bytes.Equal(got[off:], buf) || !fsnode.IsZero(got[:off]) {
		t.Fatalf("content differs (size %d, want %d)", len(got), size)
	}
	// every all-zero aligned block inside buf is a hole: SEEK_DATA from
	// its start finds data only after it
	if !holesSupported(t, filepath.Dir(p)) {
		return
	}
	const bs = fsnode.SparseBlockSize
	for b := (off + bs - 1) / bs * bs; b+bs <= off+int64(len(buf)); b += bs {
		if !fsnode.IsZero(got[b : b+bs]) {
			continue
		}
		if next, err := unix.Seek(fd, b, unix.SEEK_DATA); err == nil && next < b+bs {
			t.Fatalf("zero block at %d was written (data at %d)", b, next)
		}
	}
}

// holesSupported reports whether files in dir can have holes that
// SEEK_DATA skips.
func holesSupported(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.WriteAt([]byte{1}, 1<<20); err != nil {
		t.Fatal(err)
	}
	next, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	return err == nil && next >= 1<<20-fsnode.SparseBlockSize
}

func TestWriteSparse(t *testing.T) {
	const bs = fsnode.SparseBlockSize
	data := bytes.Repeat([]byte("0123456789abcdef"), 5*bs/16)
	zeros := make([]byte, 3*bs)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		buf  []byte
		off  int64
	}{
		{"empty", nil, 0},
		{"all zero aligned", zeros, bs},
		{"all zero unaligned", zeros, 100},
		{"data", data, 0},
		{"data unaligned", data, 7},
		{"zeros in the middle", cat(data[:bs], zeros, data[:10]), 0},
		{"zeros in the middle unaligned", cat(data[:bs+5], zeros, data[:10]), 3},
		{"trailing zeros", cat(data[:bs], zeros), 0},
		{"leading zeros", cat(zeros, data[:1]), 2 * bs},
		{"short zero run", cat(data[:100], zeros[:bs-1], data[:100]), 0},
	} {
		t.Run(tc.name, func(t *testing.T) { checkWriteSparse(t, tc.buf, tc.off) })
	}
}

// FuzzWriteSparse builds a buffer from runs (each pattern byte becomes a
// run of that byte, zero bytes become zero runs) and checks writeSparse at
// an arbitrary offset.
func FuzzWriteSparse(f *testing.F) {
	f.Add([]byte{1, 0, 0, 2}, uint16(0), uint8(7))
	f.Add([]byte{0, 0, 0}, uint16(4095), uint8(15))
	f.Add([]byte{9, 0, 9, 0, 0, 0, 0, 9}, uint16(1), uint8(3))
	f.Add([]byte("abc"), uint16(8192), uint8(0))
	f.Fuzz(func(t *testing.T, pattern []byte, off uint16, scale uint8) {
		if len(pattern) > 64 {
			pattern = pattern[:64]
		}
		run := (int(scale)%32 + 1) * 509 // not a divisor of the block size
		var buf []byte
		for _, b := range pattern {
			buf = append(buf, bytes.Repeat([]byte{b}, run)...)
		}
		checkWriteSparse(t, buf, int64(off))
	})
}
