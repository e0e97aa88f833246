package archiver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
)

// raggedReader returns the bytes of data in reads of random sizes, as a
// pipe does, then fails with err (io.EOF when nil) once after stop bytes.
type raggedReader struct {
	data []byte
	rnd  *rand.Rand
	stop int
	err  error
	off  int
}

func (r *raggedReader) Read(p []byte) (int, error) {
	end := len(r.data)
	if r.err != nil {
		end = r.stop
	}
	if r.off >= end {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := min(len(p), end-r.off, 1+r.rnd.IntN(200<<10))
	copy(p, r.data[r.off:r.off+n])
	r.off += n
	return n, nil
}

func newStdinRepo(t *testing.T, be backend.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Init(context.Background(), be, "pw", 2, crypto.Params{N: 1024, R: 1, P: 1}, repo.Options{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestRunStdinChunksLikeAFile: a stream is cut at the library chunker's
// boundaries, whatever the sizes of the reads, its blobs are saved on the
// blob workers and read back as the input.
func TestRunStdinChunksLikeAFile(t *testing.T) {
	ctx := context.Background()
	r := newStdinRepo(t, mem.New())
	data := testData(7, 24<<20) // random bytes, a 6 MiB zero run, repeated text
	rd := &raggedReader{data: data, rnd: rand.New(rand.NewPCG(1, 1))}
	res, err := New(r, Options{}).RunStdin(ctx, rd, "dir/data.bin", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var want core.IDs
	for _, c := range referenceChunks(t, data, r.Config().ChunkerPolynomial) {
		want = append(want, core.Hash(c))
	}
	dir := loadTree(t, ctx, r, res.Tree).Find("dir")
	if dir == nil {
		t.Fatal("dir not in the root tree")
	}
	node := loadTree(t, ctx, r, *dir.Subtree).Find("data.bin")
	if node == nil {
		t.Fatal("data.bin not in dir")
	}
	if len(node.Content) != len(want) {
		t.Fatalf("%d chunks, the library cuts %d", len(node.Content), len(want))
	}
	var got []byte
	for i, id := range node.Content {
		if id != want[i] {
			t.Fatalf("chunk %d: %v, the library's is %v", i, id, want[i])
		}
		b, err := r.LoadBlob(ctx, core.DataBlob, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, data) || node.Size != uint64(len(data)) {
		t.Fatalf("read back %d bytes (node size %d), want the %d bytes of the input", len(got), node.Size, len(data))
	}
}

// TestRunStdinReadError: a read error mid-stream fails the backup with an
// error naming stdin and the cause.
func TestRunStdinReadError(t *testing.T) {
	r := newStdinRepo(t, mem.New())
	boom := errors.New("boom: pipe broke")
	rd := &raggedReader{data: testData(8, 6<<20), rnd: rand.New(rand.NewPCG(2, 2)), stop: 3 << 20, err: boom}
	_, err := New(r, Options{}).RunStdin(context.Background(), rd, "x", time.Now())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "read stdin") {
		t.Fatalf("want a read-stdin error wrapping %q, got %v", boom, err)
	}
}

// TestRunStdinBackendError: a full disk while the blob workers upload is
// reported as such (not as a read error), and the backup stops.
func TestRunStdinBackendError(t *testing.T) {
	be := &failingBackend{Backend: mem.New()}
	be.left.Store(1)
	r := newStdinRepo(t, be)
	rd := &raggedReader{data: testData(9, 16<<20), rnd: rand.New(rand.NewPCG(3, 3))}
	err := within(t, "stdin backup after a backend error", func() error {
		_, err := New(r, Options{}).RunStdin(context.Background(), rd, "x", time.Now())
		return err
	})
	if !errors.Is(err, backend.ErrNoSpace) || strings.Contains(err.Error(), "read stdin") {
		t.Fatalf("want the backend's no-space error, got %v", err)
	}
}

// within runs f and returns its error, failing the test if f has not
// returned after a minute (what names it).
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: still running after a minute", what)
		return nil
	}
}

// TestRunStdinCancel: cancelling the context stops a stream that never
// ends.
func TestRunStdinCancel(t *testing.T) {
	r := newStdinRepo(t, mem.New())
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	err := within(t, "cancelled stdin backup", func() error {
		_, err := New(r, Options{}).RunStdin(ctx, endless{}, "x", time.Now())
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

// endless is a stream of pseudo-random bytes that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*7 + i>>9)
	}
	return len(p), nil
}
