//go:build linux

package pack

import (
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

// BenchmarkFileWriter writes 256 MiB ($CAIRN_PACK_BENCH_MB) as 16 MiB packs of 256 KiB–2 MiB
// blobs, each pack then fsynced and dropped from the cache as
// local.Backend.Adopt does (not with $CAIRN_PACK_BENCH_KEEP_CACHE set), buffered and with direct I/O of several buffer
// sizes. Besides MB/s it reports the process's user and system CPU time
// per operation. The directory is $CAIRN_PACK_BENCH_DIR, else the
// temporary directory. On VMs that return freed pages to the host (where
// fresh page-cache pages are what buffered writing pays for), run each
// sub-benchmark in its own process with a pause of ~15 s in between, e.g.
//
//	go test -run '^$' -bench 'FileWriter/buffered' -benchtime 4x ./internal/repo/pack/
func BenchmarkFileWriter(b *testing.B) {
	for _, c := range []struct {
		name    string
		bufSize int
	}{{"buffered", 0}, {"direct-1MiB", 1 << 20}, {"direct-2MiB", 2 << 20}, {"direct-4MiB", 4 << 20}} {
		b.Run(c.name, func(b *testing.B) { benchFileWriter(b, c.bufSize) })
	}
}

func benchFileWriter(b *testing.B, bufSize int) {
	const packSize = 16 << 20
	total := 256 << 20
	if mb, err := strconv.Atoi(os.Getenv("CAIRN_PACK_BENCH_MB")); err == nil && mb > 0 {
		total = mb << 20
	}
	dir := os.Getenv("CAIRN_PACK_BENCH_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	keepCached := os.Getenv("CAIRN_PACK_BENCH_KEEP_CACHE") != ""
	key := crypto.NewRandomKey()
	rnd := rand.New(rand.NewPCG(1, 2))
	pool := make([]byte, 4<<20)
	for i := range pool {
		pool[i] = byte(rnd.Uint32())
	}
	b.SetBytes(int64(total))
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		for written := 0; written < total; {
			f, err := os.CreateTemp(dir, "cairn-bench-pack-*")
			if err != nil {
				b.Fatal(err)
			}
			w := NewFileWriter(key, f)
			if bufSize > 0 && !w.enableDirect(bufSize) {
				b.Fatalf("no direct I/O in %s", dir)
			}
			for w.Size() < packSize {
				n := 256<<10 + rnd.IntN(7<<18)
				off := rnd.IntN(len(pool) - n)
				id := core.ID{}
				id[0], id[1], id[2] = byte(written), byte(written>>8), byte(w.Count())
				if err := w.Add(core.BlobHandle{ID: id, Type: core.DataBlob}, pool[off:off+n], 0); err != nil {
					b.Fatal(err)
				}
				written += n
			}
			if _, _, err := w.Finalize(); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			if !keepCached {
				_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			if err := os.Remove(f.Name()); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		b.Fatal(err)
	}
	ms := func(a, z syscall.Timeval) float64 {
		return float64(time.Duration(z.Nano()-a.Nano())) / float64(time.Millisecond) / float64(b.N)
	}
	b.ReportMetric(ms(before.Utime, after.Utime), "user-ms/op")
	b.ReportMetric(ms(before.Stime, after.Stime), "sys-ms/op")
}
