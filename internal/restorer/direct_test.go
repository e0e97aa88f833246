//go:build linux

// Direct I/O (O_DIRECT, statfs magic numbers) is used only on Linux.

package restorer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// directSupported reports whether dir's file system accepts O_DIRECT
// writes of aligned pages.
func directSupported(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, "direct-probe")
	defer os.Remove(p)
	fd, err := openFD(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_DIRECT, 0o600)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return pwriteFull(fd, alignedBuffer(directAlign), 0) == nil
}

// directTree writes large files of every kind direct I/O meets: random
// (stored uncompressed), text (compressed), zero runs inside data (holes),
// sizes that do not end on a page, and a small file that stays buffered.
func directTree(t *testing.T, src string) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, 6<<20+123)
	fillRandom(rnd, random)
	writeFile(t, filepath.Join(src, "random.bin"), random)
	text := make([]byte, 3<<20+4095)
	fillText(rnd, text)
	writeFile(t, filepath.Join(src, "text.txt"), text)
	holes := append(append(bytes.Clone(random[:1<<20+17]), make([]byte, 2<<20)...), random[:1<<20]...)
	writeFile(t, filepath.Join(src, "holes.img"), holes)
	writeFile(t, filepath.Join(src, "small"), random[:200<<10])
}

// inMemoryFS reports whether dir is in tmpfs or ramfs.
func inMemoryFS(t *testing.T, dir string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	// f_type is an int32 on 32-bit systems: compare the 32-bit magic.
	return uint32(st.Type) == unix.TMPFS_MAGIC || uint32(st.Type) == unix.RAMFS_MAGIC
}

// directSetup backs up a directTree and opens the repository, with
// direct I/O allowed on every file system (the kernel may still refuse).
func directSetup(t *testing.T) (string, *testRepo, *repo.Repository) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	directTree(t, src)
	tr := backupTestRepo(t, src, 0)
	r := tr.open(t)
	t.Cleanup(func() { r.Close() })
	forceDirectFS(t)
	return src, tr, r
}

func forceDirectFS(t *testing.T) {
	t.Helper()
	old := directFS
	directFS = func(string) bool { return true }
	t.Cleanup(func() { directFS = old })
}

// TestDirectRestore: with Direct, large files are written with O_DIRECT
// and do not fill the page cache; the result is identical to the source,
// holes included. Without it (the default) nothing is written directly.
func TestDirectRestore(t *testing.T) {
	src, tr, r := directSetup(t)

	dst := filepath.Join(t.TempDir(), "dst")
	dopts := restoreOpts(dst)
	dopts.Direct = DirectOn
	res := mustRestore(t, r, tr.tree, dopts)
	if !directSupported(t, filepath.Dir(dst)) {
		// The kernel refused: the restore fell back to buffered writes.
		testutil.CompareTrees(t, src, dst, compareOpts())
		t.Skipf("O_DIRECT is not supported in %s: only the fallback was tested", filepath.Dir(dst))
	}
	if res.DirectBytes < 8<<20 {
		t.Errorf("only %d bytes written with direct I/O", res.DirectBytes)
	}
	// Before anything reads the files: a directly written file has at most
	// the pages of its blobs' unaligned edges in the page cache (on a disk
	// file system; in tmpfs the pages are the file).
	inMemory := inMemoryFS(t, dst)
	if resident, total := testutil.ResidentPages(t, filepath.Join(dst, "random.bin")); !inMemory && resident > total/8 {
		t.Errorf("random.bin: %d of %d pages in the page cache after a direct restore", resident, total)
	}
	testutil.CompareTrees(t, src, dst, compareOpts())

	dst2 := filepath.Join(t.TempDir(), "dst")
	if res := mustRestore(t, r, tr.tree, restoreOpts(dst2)); res.DirectBytes != 0 {
		t.Errorf("a default restore wrote %d bytes directly", res.DirectBytes)
	}
	if resident, total := testutil.ResidentPages(t, filepath.Join(dst2, "random.bin")); resident < total/2 {
		t.Errorf("control: only %d of %d pages cached after a buffered restore", resident, total)
	}
	testutil.CompareTrees(t, src, dst2, compareOpts())

	// DirectAuto follows the machine: direct only where pages are costly
	for _, costly := range []bool{true, false} {
		old := costlyPages
		costlyPages = func() bool { return costly }
		opts := restoreOpts(filepath.Join(t.TempDir(), "dst"))
		opts.Direct = DirectAuto
		res := mustRestore(t, r, tr.tree, opts)
		costlyPages = old
		if got := res.DirectBytes > 0; got != costly {
			t.Errorf("auto with costly pages %v: %d bytes written directly", costly, res.DirectBytes)
		}
		testutil.CompareTrees(t, src, opts.Target, compareOpts())
	}
}

// TestFreePageReporting reads the virtio balloon's negotiated features
// from a sysfs tree.
func TestFreePageReporting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		devices map[string][2]string // name -> device ID, features
		want    bool
	}{
		{"none", nil, false},
		{"balloon-reporting", map[string][2]string{"virtio0": {"0x0005", "0110010100000000"}, "virtio1": {"0x0002", "0010001001100100"}}, true},
		{"balloon-without", map[string][2]string{"virtio0": {"0x0005", "0110000100000000"}}, false},
		{"other-device-bit5", map[string][2]string{"virtio0": {"0x0001", "1100010110111011"}}, false},
		{"short-features", map[string][2]string{"virtio0": {"0x0005", "011"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.devices != nil {
				for name, v := range tc.devices {
					dir := filepath.Join(root, "bus", "virtio", "devices", name)
					writeFile(t, filepath.Join(dir, "device"), []byte(v[0]+"\n"))
					writeFile(t, filepath.Join(dir, "features"), []byte(v[1]+"\n"))
				}
			}
			if got := freePageReporting(root); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, s := range []string{"auto", "on", "off"} {
		if _, err := ParseDirectMode(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseDirectMode("yes"); err == nil {
		t.Error("ParseDirectMode accepted yes")
	}
}

// TestDirectRefused: when the kernel refuses O_DIRECT (EINVAL) at open or
// at the first write, the restore switches to buffered writes, rewrites
// the refused range and restores everything correctly.
func TestDirectRefused(t *testing.T) {
	src, tr, r := directSetup(t)
	for _, at := range []string{"open", "write"} {
		t.Run(at, func(t *testing.T) {
			var calls atomic.Int32
			oldOpen, oldWrite := openDirect, pwriteDirect
			defer func() { openDirect, pwriteDirect = oldOpen, oldWrite }()
			if at == "open" {
				openDirect = func(path string) (int, error) {
					calls.Add(1)
					return -1, &os.PathError{Op: "open", Path: path, Err: unix.EINVAL}
				}
			} else {
				pwriteDirect = func(fd int, b []byte, off int64) error {
					calls.Add(1)
					if calls.Load() == 1 {
						return fmt.Errorf("write at %d: %w", off, unix.EINVAL)
					}
					return oldWrite(fd, b, off)
				}
			}
			dst := filepath.Join(t.TempDir(), "dst")
			opts := restoreOpts(dst)
			opts.Workers = 1 // one refusal, then no further attempt
			opts.Direct = DirectOn
			res := mustRestore(t, r, tr.tree, opts)
			if calls.Load() != 1 {
				t.Errorf("direct I/O tried %d times, want once", calls.Load())
			}
			if res.DirectBytes != 0 {
				t.Errorf("%d bytes counted as written directly", res.DirectBytes)
			}
			testutil.CompareTrees(t, src, dst, compareOpts())
		})
	}
}

// TestDirectWriteErrorReported: a real error of a direct write (not a
// refusal) fails the file, names it, and leaves the others restored.
func TestDirectWriteErrorReported(t *testing.T) {
	src, tr, r := directSetup(t)
	old := pwriteDirect
	defer func() { pwriteDirect = old }()
	pwriteDirect = func(fd int, b []byte, off int64) error {
		return fmt.Errorf("write at %d: %w", off, unix.ENOSPC)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	opts := restoreOpts(dst)
	opts.Direct = DirectOn
	res, err := Restore(t.Context(), r, tr.tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) == 0 {
		t.Fatal("no error reported for failed direct writes")
	}
	for _, e := range res.Errors {
		if !bytes.Contains([]byte(e.Error()), []byte("no space left")) {
			t.Errorf("error does not name the cause: %v", e)
		}
	}
	got, err := os.ReadFile(filepath.Join(dst, "small"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(src, "small"))
	if !bytes.Equal(got, want) {
		t.Error("small file (buffered) not restored")
	}
}
