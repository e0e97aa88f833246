package repo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// indexMaxBlobs is how many blobs an index file collects before it is
// written while a backup runs (restic uses the same number).
const indexMaxBlobs = 50000

// packersPerType spreads blobs over two open packs per type at random, so
// blob order in a pack leaks less about chunk boundaries.
const packersPerType = 2

// blobSaver assembles blobs into packs and uploads them in the background.
//
// Ownership of buffers: a sealed blob is copied into a pack writer's buffer
// under mu; a full pack writer leaves the packers slots before it is queued,
// so exactly one goroutine (its uploader) touches it afterwards, and its
// buffer returns to the pool only after the backend Save has returned.
type blobSaver struct {
	r *Repository

	mu sync.Mutex // guards packers, inflight, unindexed, unindexedBlobs, err, stopped
	// packers are the open pack writers per blob type.
	packers [core.NumBlobTypes][]*pack.Writer
	// inflight holds blobs accepted for saving but not yet in the index,
	// so a concurrent save of the same blob is recognised as a duplicate.
	inflight map[core.BlobHandle]struct{}
	// unindexed lists uploaded packs not yet written to an index file.
	unindexed      []index.PackEntry
	unindexedBlobs int
	err            error // first upload error; all later saves fail with it
	stopped        bool

	queue   chan *pack.Writer
	pending sync.WaitGroup // packs queued but not finished uploading
	workers sync.WaitGroup // uploader goroutines

	indexMu sync.Mutex // serialises index file writes

}

func (r *Repository) blobSaver() *blobSaver {
	r.saveOnce.Do(func() {
		s := &blobSaver{r: r, inflight: make(map[core.BlobHandle]struct{})}
		n := r.Connections()
		s.queue = make(chan *pack.Writer, n)
		for i := 0; i < n; i++ {
			s.workers.Add(1)
			go s.uploader()
		}
		r.saver = s
	})
	return r.saver
}

func (s *blobSaver) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	close(s.queue)
	s.workers.Wait()
}

func (s *blobSaver) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *blobSaver) newWriter() *pack.Writer {
	return pack.NewWriter(s.r.key, getBuf(s.r.opts.PackSize + s.r.opts.PackSize/4)[:0])
}

// SaveResult describes the outcome of SaveBlob.
type SaveResult struct {
	ID core.ID
	// Known is true when the blob was already stored (or being stored), so
	// nothing was added.
	Known bool
	// Size is the number of bytes the blob added to the repository
	// (encrypted, compressed size) when Known is false.
	Size int
}

// SaveBlob stores a blob unless it is already known. id may be the null ID,
// then it is computed. buf is not retained after SaveBlob returns, so the
// caller may reuse it at once. Safe for concurrent use.
func (r *Repository) SaveBlob(ctx context.Context, t core.BlobType, buf []byte, id core.ID, storeDuplicate bool) (SaveResult, error) {
	if id.IsNull() {
		id = core.Hash(buf)
	}
	h := core.BlobHandle{ID: id, Type: t}
	s := r.blobSaver()
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return SaveResult{}, err
	}
	if !storeDuplicate {
		if _, ok := s.inflight[h]; ok || r.idx.Has(h) {
			s.mu.Unlock()
			return SaveResult{ID: id, Known: true}, nil
		}
	}
	s.inflight[h] = struct{}{}
	s.mu.Unlock()

	sealed, ulen, err := r.sealBlob(t, buf)
	if err != nil {
		s.forget(h)
		return SaveResult{}, fmt.Errorf("save blob %v: %w", h, err)
	}
	if !r.opts.NoExtraVerify {
		b := pack.Blob{BlobHandle: h, Length: uint32(len(sealed)), UncompressedLength: ulen}
		check, err := r.DecodeBlob(b, sealed, getBuf(len(buf)))
		if err != nil {
			putBuf(sealed)
			s.forget(h)
			return SaveResult{}, fmt.Errorf("save blob %v: verification before upload failed (possible memory or compressor fault): %w", h, err)
		}
		putBuf(check)
	}
	size := len(sealed)
	err = s.add(ctx, h, sealed, ulen)
	putBuf(sealed)
	if err != nil {
		s.forget(h)
		return SaveResult{}, err
	}
	return SaveResult{ID: id, Size: size}, nil
}

func (s *blobSaver) forget(h core.BlobHandle) {
	s.mu.Lock()
	delete(s.inflight, h)
	s.mu.Unlock()
}

// sealBlob compresses (v2) and encrypts buf into a pooled buffer.
func (r *Repository) sealBlob(t core.BlobType, buf []byte) ([]byte, uint32, error) {
	plain := buf
	var ulen uint32
	var tmp []byte
	if r.cfg.Version >= 2 && (t == core.TreeBlob || r.opts.Compression != CompressionOff) && len(buf) > 0 {
		comp := r.opts.Compression
		if t == core.TreeBlob {
			comp = CompressionAuto
		}
		tmp = zstdEncoder(comp).EncodeAll(buf, getBuf(len(buf))[:0])
		if len(tmp) < len(buf) {
			plain = tmp
			ulen = uint32(len(buf))
		}
	}
	sealed := r.key.Seal(getBuf(len(plain) + 32)[:0], plain)
	if tmp != nil {
		putBuf(tmp)
	}
	return sealed, ulen, nil
}

// add copies a sealed blob into an open pack, queueing the pack for upload
// when it reaches the target size.
func (s *blobSaver) add(ctx context.Context, h core.BlobHandle, sealed []byte, ulen uint32) error {
	s.mu.Lock()
	slots := s.packers[h.Type]
	if len(slots) < packersPerType {
		for len(slots) < packersPerType {
			slots = append(slots, nil)
		}
		s.packers[h.Type] = slots
	}
	i := rand.IntN(packersPerType)
	w := slots[i]
	if w == nil {
		w = s.newWriter()
		slots[i] = w
	}
	if err := w.Add(h, sealed, ulen); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("save blob %v: %w", h, err)
	}
	var full *pack.Writer
	if w.Size() >= s.r.opts.PackSize || w.HeaderFull() {
		full = w
		slots[i] = nil
	}
	s.mu.Unlock()
	if full != nil {
		return s.enqueue(ctx, full)
	}
	return nil
}

func (s *blobSaver) enqueue(ctx context.Context, w *pack.Writer) error {
	s.pending.Add(1)
	select {
	case s.queue <- w:
		return nil
	case <-ctx.Done():
		s.pending.Done()
		return ctx.Err()
	case <-s.r.saveCtx.Done():
		s.pending.Done()
		return fmt.Errorf("repository closed: %w", s.r.saveCtx.Err())
	}
}

func (s *blobSaver) uploader() {
	defer s.workers.Done()
	for w := range s.queue {
		err := s.upload(s.r.saveCtx, w)
		if err != nil {
			s.fail(err)
		}
		s.pending.Done()
	}
}

func (s *blobSaver) upload(ctx context.Context, w *pack.Writer) error {
	blobs := append([]pack.Blob(nil), w.Blobs()...)
	buf, id, err := w.Finalize()
	if err != nil {
		return err
	}
	defer putBuf(buf) // reused only after Save returned
	if err := failpoint("backup.before-pack-upload"); err != nil {
		return err
	}
	h := backend.Handle{Type: core.PackFile, Name: id.String()}
	if err := s.r.be.Save(ctx, h, backend.NewByteReader(buf)); err != nil && !errors.Is(err, backend.ErrAlreadyExists) {
		return fmt.Errorf("upload pack %v: %w", id.Str(), err)
	}
	if err := failpoint("backup.after-pack-upload"); err != nil {
		return err
	}
	// Index first, then drop the in-flight marks: a concurrent SaveBlob
	// always sees the blob in one of the two.
	s.r.idx.AddPack(core.ID{}, id, blobs)
	s.mu.Lock()
	for _, b := range blobs {
		delete(s.inflight, b.BlobHandle)
	}
	s.unindexed = append(s.unindexed, index.PackEntry{ID: id, Blobs: blobs})
	s.unindexedBlobs += len(blobs)
	write := s.unindexedBlobs >= indexMaxBlobs
	s.mu.Unlock()
	if write {
		return s.writeIndex(ctx)
	}
	return nil
}

// writeIndex writes every uploaded but unindexed pack to a new index file.
func (s *blobSaver) writeIndex(ctx context.Context) error {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	s.mu.Lock()
	packs := s.unindexed
	s.unindexed = nil
	s.unindexedBlobs = 0
	s.mu.Unlock()
	if len(packs) == 0 {
		return nil
	}
	if _, err := s.r.SaveIndexFile(ctx, &index.File{Packs: packs}); err != nil {
		s.mu.Lock()
		s.unindexed = append(packs, s.unindexed...)
		for _, p := range packs {
			s.unindexedBlobs += len(p.Blobs)
		}
		s.mu.Unlock()
		return fmt.Errorf("write index: %w", err)
	}
	return failpoint("backup.after-index-upload")
}

// Flush uploads every open pack, waits for all uploads, and writes the
// index files for them. After Flush returns nil, every blob saved before the
// call is in a stored pack listed by a stored index file.
func (r *Repository) Flush(ctx context.Context) error {
	if r.saver == nil {
		return nil
	}
	s := r.saver
	s.mu.Lock()
	var open []*pack.Writer
	for t := range s.packers {
		for i, w := range s.packers[t] {
			if w != nil && w.Count() > 0 {
				open = append(open, w)
			}
			s.packers[t][i] = nil
		}
	}
	s.mu.Unlock()
	for _, w := range open {
		if err := s.enqueue(ctx, w); err != nil {
			return err
		}
	}
	done := make(chan struct{})
	go func() { s.pending.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.writeIndex(ctx)
}
