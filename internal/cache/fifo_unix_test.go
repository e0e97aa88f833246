//go:build unix

package cache

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
)

// A FIFO where an entry (or the version file) should be must not block a
// reader forever (H34).
func TestFIFOInCache(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	c, base := newTestCache(t)
	cb := newCounting()
	b := Wrap(cb, c)
	b.SetMetadataPacks(func(core.ID) bool { return true })
	hi, di := randomFile(rng, core.IndexFile, 1000)
	hp, dp := randomFile(rng, core.PackFile, 5000)
	store(t, cb, hi, di)
	store(t, cb, hp, dp)
	for _, h := range []struct {
		p string
	}{{c.filename(hi)}, {c.filename(hp)}} {
		if err := os.MkdirAll(filepath.Dir(h.p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(h.p, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
	}
	if got := loadRange(t, b, hi, 0, 0); !bytes.Equal(got, di) {
		t.Fatal("wrong content")
	}
	if got := loadRange(t, b, hp, 10, 10); !bytes.Equal(got, dp[10:20]) {
		t.Fatal("wrong content")
	}
	if got, _ := cachedBytes(c, hp); !bytes.Equal(got, dp) {
		t.Fatal("FIFO not replaced by the entry")
	}
	vf := filepath.Join(base, testRepoID, versionFileName)
	if err := os.Remove(vf); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(vf, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(base, testRepoID, Options{}); err == nil {
		t.Fatal("FIFO as version file accepted")
	}
}
