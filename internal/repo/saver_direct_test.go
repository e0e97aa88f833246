//go:build linux

// Direct I/O (O_DIRECT, statx STATX_DIOALIGN) is used only on Linux.

package repo

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/backend/local"
)

// TestSaverWritesAdoptedPacksDirectly: packs that become repository files
// as they are (a local repository) are written with direct I/O where the
// file system supports it; temporary files that are read back for an
// upload (other backends) stay buffered.
func TestSaverWritesAdoptedPacksDirectly(t *testing.T) {
	mr, _ := newTestRepo(t, 2, Options{})
	w2, err := mr.blobSaver().newWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer discard(w2)
	if w2.IsDirect() {
		t.Error("a temporary pack for an upload is written with direct I/O")
	}
	if _, err := os.Stat(w2.File().Name()); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(ctx, be, "secret", 2, testParams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.blobSaver().newWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer discard(w)
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, w.File().Name(), 0, unix.STATX_DIOALIGN, &stx); err != nil ||
		stx.Mask&unix.STATX_DIOALIGN == 0 {
		t.Skipf("statx does not report direct I/O support for %s", dir)
	}
	if stx.Dio_offset_align == 0 || stx.Dio_offset_align > 4096 || stx.Dio_mem_align > 4096 {
		if w.IsDirect() {
			t.Fatalf("direct I/O on a file system that reports none (or alignment %d)", stx.Dio_offset_align)
		}
		t.Skipf("%s has no direct I/O with 4096-byte alignment: only the buffered case is tested", dir)
	}
	if !w.IsDirect() {
		t.Error("a pack of a local repository is written through the page cache")
	}
}
