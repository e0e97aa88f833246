package repo

import (
	"context"
	"encoding/base64"
	"math/rand/v2"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
)

// TestLiteralOnlyDataIsCompressed: data without repeats but with a skewed
// byte distribution (base64 of random bytes: 64 of 256 byte values) is
// stored compressed, about as small as restic 0.14 stores it. The zstd
// library skips entropy coding of blocks without matches at the default
// level unless told otherwise, and stored such blobs uncompressed.
func TestLiteralOnlyDataIsCompressed(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, 2, Options{})
	raw := make([]byte, 64<<10)
	rnd := rand.New(rand.NewPCG(7, 8))
	for i := range raw {
		raw[i] = byte(rnd.Uint32())
	}
	data := []byte(base64.StdEncoding.EncodeToString(raw))
	res, err := r.SaveBlob(ctx, core.DataBlob, data, core.ID{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	loc, ok := r.Index().Lookup(core.BlobHandle{ID: res.ID, Type: core.DataBlob})
	if !ok {
		t.Fatal("blob not indexed")
	}
	if !loc.IsCompressed() {
		t.Fatalf("base64 data (%d bytes) stored uncompressed", len(data))
	}
	if limit := len(data) * 80 / 100; int(loc.Length) > limit {
		t.Fatalf("base64 data stored in %d bytes, want at most %d (6 bits per byte)", loc.Length, limit)
	}
	got, err := r.LoadBlob(ctx, core.DataBlob, res.ID, nil)
	if err != nil || string(got) != string(data) {
		t.Fatalf("load: %v", err)
	}
}
