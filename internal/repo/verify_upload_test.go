package repo

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
)

// TestVerifyBeforeUpload (I15, H36): a compressed blob that does not
// decompress to its content — a compressor bug or a memory fault, simulated
// by flipping a bit of the compressor's output — is refused before it
// leaves memory: SaveBlob fails naming the verification, nothing is indexed,
// and an intact blob saved next is stored normally. With NoExtraVerify the
// same fault goes through (which is what the verification prevents), so the
// test would fail if the verification were skipped.
func TestVerifyBeforeUpload(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("compressible blob content "), 4000)
	flip := func(c []byte) { c[len(c)/2] ^= 0x10 }

	r, _ := newTestRepo(t, 2, Options{})
	testHookCompressed = flip
	_, err := r.SaveBlob(ctx, core.DataBlob, data, core.ID{}, false)
	testHookCompressed = nil
	if err == nil || !strings.Contains(err.Error(), "verification before upload failed") {
		t.Fatalf("corrupted compressed blob: %v, want a verification error", err)
	}
	h := core.BlobHandle{ID: core.Hash(data), Type: core.DataBlob}
	if r.Index().Has(h) {
		t.Fatal("the refused blob is indexed")
	}
	// the refused blob is not remembered as in flight: saving it again works
	if _, err := r.SaveBlob(ctx, core.DataBlob, data, core.ID{}, false); err != nil {
		t.Fatalf("saving the blob again: %v", err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadBlob(ctx, core.DataBlob, h.ID, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob saved after the refusal reads back wrong: %v", err)
	}

	// control: without the verification the fault is stored
	r2, _ := newTestRepo(t, 2, Options{NoExtraVerify: true})
	testHookCompressed = flip
	_, err = r2.SaveBlob(ctx, core.DataBlob, data, core.ID{}, false)
	testHookCompressed = nil
	if err != nil {
		t.Fatalf("with NoExtraVerify the save itself succeeds: %v", err)
	}
	if err := r2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := r2.LoadBlob(ctx, core.DataBlob, h.ID, nil); err == nil && bytes.Equal(got, data) {
		t.Fatal("the simulated fault did not damage the stored blob: the test proves nothing")
	}
}
