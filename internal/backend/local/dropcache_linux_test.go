//go:build linux

package local

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// TestPackPagesDropped: a stored pack (saved or adopted) leaves the page
// cache once it is durable, so a backup does not fill memory with packs it
// will not read again; other files stay cached. On tmpfs there is nothing
// to drop (the pages are the file), so the test needs a disk file system.
func TestPackPagesDropped(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if typ := uint32(st.Type); typ == unix.TMPFS_MAGIC || typ == unix.RAMFS_MAGIC { // int32 on 32-bit systems
		t.Skipf("%s is in memory: page-cache dropping does not apply", dir)
	}
	ctx := context.Background()
	b, err := Create(ctx, filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4<<20)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	check := func(h backend.Handle, wantDropped bool) {
		t.Helper()
		res, total := testutil.ResidentPages(t, b.filename(h))
		t.Logf("%v: %d of %d pages resident", h.Type, res, total)
		if wantDropped && res > total/10 {
			t.Errorf("%v: %d of %d pages still cached after save", h, res, total)
		}
		if !wantDropped && res < total/2 {
			t.Errorf("%v: only %d of %d pages cached: dropped though not a pack", h, res, total)
		}
	}
	// Save (the path of REST uploads)
	h := handleFor(core.PackFile, data)
	if err := b.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	check(h, true)
	// Adopt (the path of backups into a local repository)
	data2 := bytes.Clone(data)
	data2[0] ^= 1
	f, err := b.CreateTemp(core.PackFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data2); err != nil {
		t.Fatal(err)
	}
	h2 := handleFor(core.PackFile, data2)
	if err := b.Adopt(ctx, h2, f); err != nil {
		t.Fatal(err)
	}
	check(h2, true)
	// an index file stays cached
	data3 := bytes.Clone(data)
	data3[1] ^= 1
	h3 := handleFor(core.IndexFile, data3)
	if err := b.Save(ctx, h3, backend.NewByteReader(data3)); err != nil {
		t.Fatal(err)
	}
	check(h3, false)
	for _, h := range []backend.Handle{h, h2, h3} {
		got, err := backend.LoadAll(ctx, b, h)
		if err != nil || len(got) != len(data) {
			t.Fatalf("load %v after the drop: %v", h, err)
		}
	}
}
