package repo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/bufpool"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// indexMaxBlobs is how many blobs an index file collects before it is
// written while a backup runs (restic uses the same number).
const indexMaxBlobs = 50000

// packersPerType is the number of open packs per blob type. One keeps the
// memory bound low (restic 0.14 also fills one pack at a time).
const packersPerType = 1

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
	packers [core.NumBlobTypes][]*pack.FileWriter
	// inflight holds blobs accepted for saving but not yet in the index,
	// so a concurrent save of the same blob is recognised as a duplicate.
	inflight map[core.BlobHandle]struct{}
	// unindexed lists uploaded packs not yet written to an index file.
	unindexed      []index.PackEntry
	unindexedBlobs int
	err            error // first upload error; all later saves fail with it
	stopped        bool

	queue   chan *pack.FileWriter
	pending sync.WaitGroup // packs queued but not finished uploading
	workers sync.WaitGroup // uploader goroutines

	indexMu sync.Mutex // serialises index file writes

}

func (r *Repository) blobSaver() *blobSaver {
	r.saveOnce.Do(func() {
		s := &blobSaver{r: r, inflight: make(map[core.BlobHandle]struct{})}
		n := r.Connections()
		// Finished packs are files, not memory, so a few may wait for an
		// uploader without cost: the savers never stall on an upload's
		// fsync or network round trip.
		s.queue = make(chan *pack.FileWriter, 4*n)
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
	// drop packs that were never flushed (the repository is being closed
	// without Flush, e.g. after an error): their temp files go away
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.packers {
		for i, w := range s.packers[t] {
			if w != nil {
				discard(w)
				s.packers[t][i] = nil
			}
		}
	}
}

// discard releases a pack writer's buffers, closes and removes its
// temporary file.
func discard(w *pack.FileWriter) {
	w.Release()
	f := w.File()
	_ = f.Close()
	_ = os.Remove(f.Name())
}

func (s *blobSaver) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// newWriter starts a pack in a temporary file: on the repository's own
// file system when the backend can adopt files (no copy on upload), else
// in the temporary directory.
func (s *blobSaver) newWriter() (*pack.FileWriter, error) {
	var f *os.File
	var err error
	a, adopt := backend.AdopterOf(s.r.be)
	if adopt {
		f, err = a.CreateTemp(core.PackFile)
	} else {
		f, err = os.CreateTemp("", "cairn-pack-*")
		if err != nil {
			err = fmt.Errorf("create temporary pack file in %s: %w", os.TempDir(), err)
		}
	}
	if err != nil {
		return nil, err
	}
	w := pack.NewFileWriter(s.r.key, f)
	if adopt {
		// The pack becomes the repository file as it is, fsynced before
		// it is published: writing it around the page cache loses nothing
		// (pack.FileWriter.EnableDirect). A temporary file that is read
		// back for an upload stays buffered.
		w.EnableDirect()
	}
	return w, nil
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
		computed, sum := core.HashChecked(buf)
		return r.saveBlob(ctx, t, buf, computed, sum, true, storeDuplicate)
	}
	return r.saveBlob(ctx, t, buf, id, 0, false, storeDuplicate)
}

// SaveBlobSum is SaveBlob for a blob whose ID and check sum the caller
// computed together with core.HashChecked: the verification before upload
// then compares the decompressed blob with the check sum (XXH64) instead of
// hashing it with SHA-256 again, which is as strict (see HashChecked) and
// ~8x cheaper.
func (r *Repository) SaveBlobSum(ctx context.Context, t core.BlobType, buf []byte, id core.ID, sum uint64, storeDuplicate bool) (SaveResult, error) {
	return r.saveBlob(ctx, t, buf, id, sum, true, storeDuplicate)
}

// saveBlob stores a blob whose ID is id; sum is its check sum when hasSum.
func (r *Repository) saveBlob(ctx context.Context, t core.BlobType, buf []byte, id core.ID, sum uint64, hasSum, storeDuplicate bool) (SaveResult, error) {
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

	sealed, ulen, err := r.sealBlob(t, buf, id, sum, hasSum)
	if err != nil {
		s.forget(h)
		return SaveResult{}, fmt.Errorf("save blob %v: %w", h, err)
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

// testHookCompressed, when set (tests only), sees every compressed blob
// before its verification, to stand in for a faulty compressor or memory.
var testHookCompressed func(compressed []byte)

// sealBlob compresses (v2) and encrypts buf into a pooled buffer. A
// compressed blob is decompressed again and compared with sum (when hasSum)
// or with id before it is encrypted.
func (r *Repository) sealBlob(t core.BlobType, buf []byte, id core.ID, sum uint64, hasSum bool) ([]byte, uint32, error) {
	if r.cfg.Version >= 2 && (t == core.TreeBlob || r.opts.Compression != CompressionOff) && len(buf) > 0 {
		comp := r.opts.Compression
		if t == core.TreeBlob {
			comp = CompressionAuto
		}
		// compress behind room for the IV, then encrypt in place: one
		// buffer per blob, big enough for any frame and the MAC
		out := getBuf(compressBound(len(buf)) + crypto.Extension)
		c, err := appendCompressed(out[:crypto.IVSize], buf, comp)
		if err != nil {
			putBuf(out)
			return nil, 0, fmt.Errorf("save blob %v: %w", id, err)
		}
		// the frame is usually much smaller than the room asked for
		c = bufpool.Trim(c, len(c)+crypto.Extension-crypto.IVSize)
		if testHookCompressed != nil {
			testHookCompressed(c[crypto.IVSize:])
		}
		if clen := len(c) - crypto.IVSize; clen < len(buf) && cap(c) >= len(c)+16 {
			if !r.opts.NoExtraVerify {
				// Decompress and check again before anything leaves
				// memory: a compressor or memory fault must not be stored
				// under a valid name (H36).
				chk := getBuf(len(buf))
				d, err := decompress(chk, c[crypto.IVSize:], len(buf))
				ok := err == nil && decodedMatches(d, id, sum, hasSum)
				putBuf(chk)
				if !ok {
					putBuf(c)
					return nil, 0, fmt.Errorf("verification before upload failed (compressor or memory fault): %v", err)
				}
			}
			return r.key.SealInPlace(c), uint32(len(buf)), nil
		}
		putBuf(c)
	}
	return r.key.Seal(getBuf(len(buf) + crypto.Extension)[:0], buf), 0, nil
}

// decodedMatches reports whether a decompressed blob is the blob named id
// whose check sum (from core.HashChecked, when hasSum) is sum.
func decodedMatches(d []byte, id core.ID, sum uint64, hasSum bool) bool {
	if hasSum {
		return core.CheckSum(d) == sum
	}
	return core.Hash(d) == id
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
		var err error
		if w, err = s.newWriter(); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("save blob %v: %w", h, err)
		}
		slots[i] = w
	}
	if err := w.Add(h, sealed, ulen); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("save blob %v: %w", h, err)
	}
	var full *pack.FileWriter
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

func (s *blobSaver) enqueue(ctx context.Context, w *pack.FileWriter) error {
	s.pending.Add(1)
	select {
	case s.queue <- w:
		return nil
	case <-ctx.Done():
		s.pending.Done()
		discard(w)
		return ctx.Err()
	case <-s.r.saveCtx.Done():
		s.pending.Done()
		discard(w)
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

func (s *blobSaver) upload(ctx context.Context, w *pack.FileWriter) error {
	blobs := append([]pack.Blob(nil), w.Blobs()...)
	id, size, err := w.Finalize()
	if err != nil {
		discard(w)
		return err
	}
	if err := failpoint("backup.before-pack-upload"); err != nil {
		discard(w)
		return err
	}
	h := backend.Handle{Type: core.PackFile, Name: id.String()}
	f := w.File()
	if a, ok := backend.AdopterOf(s.r.be); ok {
		err = a.Adopt(ctx, h, f) // closes f, removes it on error
	} else {
		var rd *backend.FileReader
		if rd, err = backend.NewFileReader(f, size); err == nil {
			err = s.r.be.Save(ctx, h, rd)
		}
		discard(w)
	}
	if err != nil && !errors.Is(err, backend.ErrAlreadyExists) {
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
	var err error
	wctx, done := ctx, func(err error) error { return err }
	if s.r.commitGuard != nil {
		wctx, done, err = s.r.commitGuard(ctx)
	}
	if err == nil {
		_, err = s.r.SaveIndexFile(wctx, &index.File{Packs: packs})
		err = done(err)
	}
	if err != nil {
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
	var open []*pack.FileWriter
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
