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

// TestVerifyBeforeUploadCheckSum (I15, H36): a blob whose buffer changes
// after its ID and check sum were computed (a memory fault, or a buffer
// reused while its save is in flight) is refused by SaveBlobSum — the
// decompressed blob no longer matches the check sum — and nothing is
// indexed; an intact buffer with the same ID and sum is stored. The
// control, without the verification, stores the changed bytes under the
// old ID, which is what the check prevents.
func TestVerifyBeforeUploadCheckSum(t *testing.T) {
	ctx := context.Background()
	orig := bytes.Repeat([]byte("compressible blob content "), 4000)
	id, sum := core.HashChecked(orig)
	for _, pos := range []int{0, 1, len(orig) / 2, 40000, len(orig) - 1} {
		changed := append([]byte(nil), orig...)
		changed[pos] ^= 0x01

		r, _ := newTestRepo(t, 2, Options{})
		_, err := r.SaveBlobSum(ctx, core.DataBlob, changed, id, sum, false)
		if err == nil || !strings.Contains(err.Error(), "verification before upload failed") {
			t.Fatalf("byte %d changed after hashing: %v, want a verification error", pos, err)
		}
		h := core.BlobHandle{ID: id, Type: core.DataBlob}
		if r.Index().Has(h) {
			t.Fatalf("byte %d: the refused blob is indexed", pos)
		}
		if _, err := r.SaveBlobSum(ctx, core.DataBlob, orig, id, sum, false); err != nil {
			t.Fatalf("saving the intact blob: %v", err)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := r.LoadBlob(ctx, core.DataBlob, id, nil); err != nil || !bytes.Equal(got, orig) {
			t.Fatalf("intact blob reads back wrong: %v", err)
		}
	}

	// SaveBlob with a given ID (no check sum) hashes the decompressed blob
	// again and refuses the same fault
	changed := append([]byte(nil), orig...)
	changed[7] ^= 0x80
	r, _ := newTestRepo(t, 2, Options{})
	if _, err := r.SaveBlob(ctx, core.DataBlob, changed, id, false); err == nil || !strings.Contains(err.Error(), "verification before upload failed") {
		t.Fatalf("SaveBlob with the old ID: %v, want a verification error", err)
	}

	// control: without the verification the changed bytes are stored
	r2, _ := newTestRepo(t, 2, Options{NoExtraVerify: true})
	if _, err := r2.SaveBlobSum(ctx, core.DataBlob, changed, id, sum, false); err != nil {
		t.Fatalf("with NoExtraVerify the save itself succeeds: %v", err)
	}
	if err := r2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := r2.LoadBlob(ctx, core.DataBlob, id, nil); err == nil && bytes.Equal(got, orig) {
		t.Fatal("the changed buffer was not stored: the test proves nothing")
	}
}
