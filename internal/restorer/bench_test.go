package restorer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkRestore restores a backup on the local backend (repository in
// b.TempDir(), so set TMPDIR to choose the filesystem). Its sub-benchmarks
// are a source-tree-like set of small files and a few large files
// (incompressible, text and mostly sparse). Compare runs with benchstat:
//
//	go test -run '^$' -bench Restore -count 8 ./internal/restorer/ | tee new.txt
func BenchmarkRestore(b *testing.B) {
	b.Run("small-files", func(b *testing.B) {
		src := filepath.Join(b.TempDir(), "src")
		size := genSmallFiles(b, src, 2000)
		benchRestore(b, src, size, false)
	})
	b.Run("large-files", func(b *testing.B) {
		src := filepath.Join(b.TempDir(), "src")
		size := genLargeFiles(b, src, 24<<20)
		benchRestore(b, src, size, true)
	})
}

// benchRestore backs up src once and restores it b.N times. Targets with
// many files are removed only at the end: deleting thousands of inodes just
// before the next restore creates new ones makes some filesystems slow down
// in ways that have nothing to do with the restorer.
func benchRestore(b *testing.B, src string, size int64, removeEach bool) {
	tr := backupTestRepo(b, src, 0)
	r := tr.open(b)
	defer r.Close()
	ctx := context.Background()
	targets := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := filepath.Join(targets, fmt.Sprint(i))
		res, err := Restore(ctx, r, tr.tree, Options{Target: dst, IgnoreOwnership: true})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Errors) > 0 {
			b.Fatal(res.Errors)
		}
		if removeEach {
			b.StopTimer()
			if err := os.RemoveAll(dst); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
}

// genSmallFiles writes n files of 200 B to 24 KiB (mostly text, one in
// ten incompressible) in a two-level directory tree, and returns their
// total size.
func genSmallFiles(tb testing.TB, dir string, n int) int64 {
	tb.Helper()
	rnd := rand.New(rand.NewPCG(7, 7))
	var total int64
	for i := 0; i < n; i++ {
		buf := make([]byte, 200+rnd.IntN(24<<10))
		if i%10 == 0 {
			fillRandom(rnd, buf)
		} else {
			fillText(rnd, buf)
		}
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("e%02d", i%7), fmt.Sprintf("f%05d.go", i))
		writeFile(tb, p, buf)
		total += int64(len(buf))
	}
	return total
}

// genLargeFiles writes three files of size bytes: incompressible, text, and
// sparse (zeros with a 1 MiB island of data every 8 MiB). It returns their
// total size.
func genLargeFiles(tb testing.TB, dir string, size int) int64 {
	tb.Helper()
	rnd := rand.New(rand.NewPCG(9, 9))
	buf := make([]byte, size)
	fillRandom(rnd, buf)
	writeFile(tb, filepath.Join(dir, "random.bin"), buf)
	fillText(rnd, buf)
	writeFile(tb, filepath.Join(dir, "text.txt"), buf)
	clear(buf)
	for off := 4 << 20; off < size; off += 8 << 20 {
		fillRandom(rnd, buf[off:min(off+1<<20, size)])
	}
	writeFile(tb, filepath.Join(dir, "sparse.img"), buf)
	return 3 * int64(size)
}
