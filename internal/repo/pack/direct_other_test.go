//go:build !linux

package pack

import (
	"os"
	"testing"

	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

func TestFileWriterEnableDirectUnsupported(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "pack-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewFileWriter(crypto.NewRandomKey(), f)
	if w.EnableDirect() || w.IsDirect() {
		t.Fatal("EnableDirect claims direct I/O on a system without it")
	}
}
