package restorer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/failpoint"
	"github.com/cairn-backup/cairn/internal/fsnode"
	"github.com/cairn-backup/cairn/internal/repo/index"
)

// maxOpenFiles bounds the file handles kept open between the blobs of
// files that are partly written. Beyond it, a write opens and closes the
// file itself. A variable so that tests can lower it.
var maxOpenFiles int64 = 256

// packWindow is the size of the buffer through which a pack range is read;
// a larger blob gets a buffer of its own size.
const packWindow = 1 << 20

// maxUsesPerJob bounds the blob uses (writes, mostly file creations for
// small files) of one job: a pack with more is read as several ranges, so
// that a pack of thousands of small files does not keep one worker busy
// while the others are idle.
const maxUsesPerJob = 512

// useCost is the estimated cost of one blob use (creating, writing and
// closing a file and setting its metadata) in bytes of pack data.
const useCost = 16 << 10

// packJob is a range of one pack to read, with the needed blobs in it.
type packJob struct {
	pack  core.ID
	rank  int   // first use of the pack in walk order
	bytes int64 // pack bytes to read
	uses  int   // blob uses (writes) to make
	blobs []index.Location
}

func (j *packJob) cost() int64 { return j.bytes + int64(j.uses)*useCost }

// scheduleJobs orders the jobs. Those that mostly decode data are mixed
// with those that mostly create small files, so that the workers do not
// all wait for the filesystem at once, and the latter take turns between
// packs, so that concurrent jobs rarely create files in the same
// directories (creations in one directory are serialized). Both kinds go
// costliest first, so that the last jobs are short.
func scheduleJobs(jobs []packJob) []packJob {
	sort.Slice(jobs, func(i, j int) bool {
		if jobs[i].rank != jobs[j].rank {
			return jobs[i].rank < jobs[j].rank
		}
		return jobs[i].blobs[0].Offset < jobs[j].blobs[0].Offset
	})
	var data, files []packJob
	for _, j := range jobs {
		if j.bytes >= int64(j.uses)*useCost {
			data = append(data, j)
		} else {
			files = append(files, j)
		}
	}
	sort.SliceStable(data, func(i, j int) bool { return data[i].cost() > data[j].cost() })
	// files: the i-th range of every pack before the (i+1)-th of any
	nth := make(map[core.ID]int, len(files))
	round := make([]int, len(files))
	for i := range files {
		round[i] = nth[files[i].pack]
		nth[files[i].pack]++
	}
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return round[idx[a]] < round[idx[b]] })
	out := make([]packJob, 0, len(jobs))
	for i, d := 0, 0; i < len(idx) || d < len(data); {
		if d < len(data) {
			out = append(out, data[d])
			d++
		}
		if i < len(idx) {
			out = append(out, files[idx[i]])
			i++
		}
	}
	return out
}

func (rs *restorer) writeContent(ctx context.Context) error {
	byPack := map[core.ID][]index.Location{}
	idx := rs.r.Index()
	for id := range rs.needed {
		loc, ok := idx.Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
		if !ok {
			continue // cannot happen: planFile found it
		}
		byPack[loc.Pack] = append(byPack[loc.Pack], loc)
	}
	var jobs []packJob
	for p, locs := range byPack {
		sort.Slice(locs, func(i, j int) bool { return locs[i].Offset < locs[j].Offset })
		job := packJob{pack: p, rank: rs.packOrder[p]}
		for _, b := range locs {
			n := len(rs.needed[b.ID])
			if job.uses > 0 && job.uses+n > maxUsesPerJob {
				jobs = append(jobs, job)
				job = packJob{pack: p, rank: job.rank}
			}
			job.blobs = append(job.blobs, b)
			job.bytes += int64(b.Length)
			job.uses += n
		}
		jobs = append(jobs, job)
	}
	jobs = scheduleJobs(jobs)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rs.opts.Workers)
	for _, job := range jobs {
		g.Go(func() error { return rs.restorePack(gctx, job) })
	}
	err := g.Wait()
	if err != nil {
		rs.closeOpenFiles() // files left partly written by the cancellation
	}
	return err
}

// closeOpenFiles closes the handles of files that were not finished.
func (rs *restorer) closeOpenFiles() {
	for _, fs := range rs.files {
		fs.mu.Lock()
		if fs.fd >= 0 {
			_ = closeFD(fs.fd, fs.path) // the restore failed already
			fs.fd = -1
			rs.openFiles.Add(-1)
		}
		fs.mu.Unlock()
	}
}

// packBufs are the buffers of one worker, reused from pack to pack: a
// worker reads a pack range through win and decompresses into plain. They
// grow to the largest blob seen and are kept: dropping them would only make
// garbage. At most Workers sets exist, which bounds the memory of the
// content phase.
type packBufs struct {
	win   []byte
	plain []byte
	stage []byte // aligned, for direct I/O (direct.go); allocated on first use
}

func (rs *restorer) getBufs() *packBufs {
	select {
	case b := <-rs.bufs:
		return b
	default:
		return &packBufs{}
	}
}

func (rs *restorer) putBufs(b *packBufs) {
	select {
	case rs.bufs <- b:
	default:
	}
}

// packReader serves the blobs of one pack range, in offset order, from a
// window buffer filled with large reads.
type packReader struct {
	rd  io.Reader
	buf *packBufs // buf.win[:n] holds the pack bytes at [pos, pos+n)
	n   int
	pos int64
	end int64 // end of the range rd delivers
}

func (p *packReader) reset(rd io.Reader, start, end int64) {
	p.rd, p.n, p.pos, p.end = rd, 0, start, end
}

// blob returns the pack bytes [off, off+length), valid (and the caller's to
// modify) until the next call. Offsets must not decrease.
func (p *packReader) blob(off int64, length int) ([]byte, error) {
	if off < p.pos || off+int64(length) > p.end {
		return nil, fmt.Errorf("blob at %d+%d outside of the pack range [%d, %d)", off, length, p.pos, p.end)
	}
	win := p.buf.win
	if off+int64(length) <= p.pos+int64(p.n) {
		i := int(off - p.pos)
		return win[i : i+length], nil
	}
	// keep the part of the blob already read, drop everything before it
	if keep := p.pos + int64(p.n) - off; keep > 0 {
		copy(win, win[p.n-int(keep):p.n])
		p.n = int(keep)
	} else {
		if err := p.skip(-keep); err != nil {
			return nil, err
		}
		p.n = 0
	}
	p.pos = off
	if len(win) < length || len(win) < packWindow {
		nw := make([]byte, max(length, packWindow))
		copy(nw, win[:p.n])
		p.buf.win, win = nw, nw
	}
	fill := min(int64(len(win)), p.end-p.pos)
	if _, err := io.ReadFull(p.rd, win[p.n:fill]); err != nil {
		return nil, err
	}
	p.n = int(fill)
	return win[:length], nil
}

// skip reads and drops n bytes (a gap between needed blobs).
func (p *packReader) skip(n int64) error {
	if len(p.buf.win) < packWindow {
		p.buf.win = make([]byte, packWindow)
	}
	for n > 0 {
		k := int(min(n, int64(len(p.buf.win))))
		if _, err := io.ReadFull(p.rd, p.buf.win[:k]); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// restorePack downloads the needed range of one pack and writes its blobs.
func (rs *restorer) restorePack(ctx context.Context, job packJob) error {
	if err := failpoint.Inject("restore.pack"); err != nil {
		return fmt.Errorf("restore pack %v: %w", job.pack.Str(), err)
	}
	start := int64(job.blobs[0].Offset)
	last := job.blobs[len(job.blobs)-1]
	end := int64(last.Offset) + int64(last.Length)
	h := backend.Handle{Type: core.PackFile, Name: job.pack.String()}
	bufs := rs.getBufs()
	defer rs.putBufs(bufs)
	pr := &packReader{buf: bufs}
	// Blobs that fail to decode here are fetched again from their other
	// copies only after Load returned: loading inside the callback would
	// need a second backend slot while this one is held.
	var damaged []index.Location
	err := rs.r.Backend().Load(ctx, h, int(end-start), start, func(rd io.Reader) error {
		damaged = damaged[:0] // the callback runs again on a retry
		pr.reset(rd, start, end)
		for _, b := range job.blobs {
			sealed, err := pr.blob(int64(b.Offset), int(b.Length))
			if err != nil {
				return err
			}
			if rs.allWritten(b.ID) {
				continue // written in an earlier attempt
			}
			// Decrypted in place, decompressed into the worker's buffer,
			// checked against its MAC and its ID.
			plain, dst, err := rs.r.DecodeBlobInPlace(b.Blob, sealed, bufs.plain)
			bufs.plain = dst
			if err != nil {
				damaged = append(damaged, b)
				continue
			}
			rs.writeBlob(b.ID, plain, nil, bufs)
		}
		return nil
	})
	if err == nil {
		for _, b := range damaged {
			plain, lerr := rs.r.LoadBlob(ctx, core.DataBlob, b.ID, nil)
			rs.writeBlob(b.ID, plain, lerr, bufs)
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The pack could not be read: every file that needs it fails, unless
	// another copy of a blob exists elsewhere.
	for _, b := range job.blobs {
		if rs.allWritten(b.ID) {
			continue
		}
		plain, lerr := rs.r.LoadBlob(ctx, core.DataBlob, b.ID, nil)
		if lerr != nil {
			lerr = fmt.Errorf("pack %v: %w", job.pack.Str(), err)
		}
		rs.writeBlob(b.ID, plain, lerr, bufs)
	}
	return nil
}

// allWritten reports whether blob id has been handled already (e.g. before
// a pack download broke off).
func (rs *restorer) allWritten(id core.ID) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	_, ok := rs.needed[id]
	return !ok
}

// writeBlob writes one blob to every place that needs it. blobErr marks
// those files damaged instead. bufs are the calling worker's buffers.
func (rs *restorer) writeBlob(id core.ID, plain []byte, blobErr error, bufs *packBufs) {
	rs.mu.Lock()
	uses := rs.needed[id]
	delete(rs.needed, id)
	rs.mu.Unlock()
	if len(uses) == 0 {
		return
	}
	zero := blobErr == nil && fsnode.IsZero(plain)
	for _, u := range uses {
		rs.writeUse(u, id, plain, zero, blobErr, bufs)
	}
}

func (rs *restorer) writeUse(u blobUse, id core.ID, plain []byte, zero bool, blobErr error, bufs *packBufs) {
	fs := u.file
	own := -1 // a handle this call opened and must close
	switch {
	case blobErr != nil:
		fs.setErr(fmt.Errorf("data blob %v: %w", id.Str(), blobErr))
	case fs.failed.Load():
	default:
		if !zero {
			fd, shared, err := rs.handle(fs)
			if err == nil {
				if !shared {
					own = fd
				}
				var end int64
				end, err = rs.writeData(fs, fd, plain, u.off, bufs)
				fs.noteWritten(end)
			}
			if err != nil {
				fs.setErr(err)
			}
		}
		if rs.opts.Progress != nil {
			rs.opts.Progress.BytesDone.Add(uint64(len(plain)))
		}
	}
	if fs.remain.Add(-1) == 0 {
		rs.finishFile(fs, own)
	} else if own >= 0 {
		if err := closeFD(own, fs.path); err != nil {
			fs.setErr(err)
		}
	}
}

// noteWritten records that data up to end has been written.
func (fs *fileState) noteWritten(end int64) {
	for {
		cur := fs.written.Load()
		if end <= cur || fs.written.CompareAndSwap(cur, end) {
			return
		}
	}
}

// handle returns a handle of fs for writing, creating the file on first
// use. shared handles stay open for later blobs (finishFile closes them);
// the caller must close one that is not shared.
func (rs *restorer) handle(fs *fileState) (fd int, shared bool, err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.fd >= 0 {
		return fs.fd, true, nil
	}
	fd, err = fs.openLocked()
	if err != nil {
		return -1, false, err
	}
	// keep it when more blobs of this file are pending (then remain > 1:
	// the caller has not counted its own use yet)
	if fs.remain.Load() > 1 {
		if rs.openFiles.Add(1) <= maxOpenFiles {
			fs.fd = fd
			return fd, true, nil
		}
		rs.openFiles.Add(-1)
	}
	return fd, false, nil
}

// openLocked creates the file on first use and opens it for writing later.
// Creation is exclusive and never follows a symlink: an old entry at the
// path is removed first, and a file that cannot be created is never written
// through something else.
func (fs *fileState) openLocked() (int, error) {
	if fs.created {
		if fs.createErr != nil {
			return -1, fs.createErr
		}
		return openFD(fs.path, unix.O_WRONLY|unix.O_NOFOLLOW, 0)
	}
	fs.created = true
	if !fs.fresh {
		_ = os.Remove(fs.path) // replace, never write through an existing (maybe hard-linked) file
	}
	fd, err := openFD(fs.path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		fs.createErr = err
	}
	return fd, err
}

func openFD(path string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, perm)
		if err == nil {
			return fd, nil
		}
		if err != unix.EINTR {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

func closeFD(fd int, path string) error {
	// Linux releases the descriptor even when close reports an error, so
	// it is never retried.
	if err := unix.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: path, Err: err}
	}
	return nil
}

// finishFile sets the final size, closes the file and applies metadata, or
// reports the file as damaged. own is a handle the caller opened (or -1).
func (rs *restorer) finishFile(fs *fileState, own int) {
	size := int64(fs.node.Size)
	extend := fs.written.Load() < size // the end is zeros or was not written
	fs.mu.Lock()
	shared := fs.fd
	fs.fd = -1
	if shared >= 0 {
		rs.openFiles.Add(-1)
	}
	fd := own
	if fd < 0 {
		fd = shared
	}
	if fd < 0 && fs.createErr == nil && (!fs.created || extend) {
		// create a file of which nothing was written (all blobs zero or
		// damaged), or reopen one to extend it
		h, err := fs.openLocked()
		if err != nil {
			fs.mu.Unlock()
			fs.setErr(err)
			rs.reportFile(fs)
			return
		}
		own, fd = h, h
	}
	fs.mu.Unlock()
	var errs []error
	if extend && fd >= 0 {
		if err := ftruncate(fd, size); err != nil {
			errs = append(errs, fmt.Errorf("truncate %s to %d: %w", fs.path, size, err))
		}
	}
	for _, h := range []int{own, shared} {
		if h >= 0 {
			if err := closeFD(h, fs.path); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		fs.setErr(err)
	}
	rs.reportFile(fs)
}

// reportFile applies metadata to a complete file, or reports it damaged.
func (rs *restorer) reportFile(fs *fileState) {
	if fs.failed.Load() {
		fs.mu.Lock()
		err := fs.err
		fs.mu.Unlock()
		rs.fail(fs.path, fmt.Errorf("not restored completely: %w", err))
		return
	}
	if err := fsnode.RestoreMetadata(fs.path, fs.node, rs.ropts); err != nil {
		rs.fail(fs.path, err)
	}
	if rs.opts.Progress != nil {
		rs.opts.Progress.FilesDone.Add(1)
	}
}

func ftruncate(fd int, size int64) error {
	for {
		err := unix.Ftruncate(fd, size)
		if err != unix.EINTR {
			return err
		}
	}
}

// writeSparse writes buf at offset off of the new file fd, except that
// every file-aligned block of fsnode.SparseBlockSize bytes that lies inside
// buf and is all zeros is not written: the file was empty, so the block
// stays a hole and reads as zeros once finishFile has extended the file to
// its size. It returns the end of the last range written (0 if none).
func writeSparse(fd int, buf []byte, off int64) (int64, error) {
	const bs = fsnode.SparseBlockSize
	var end int64
	start := -1 // start in buf of data not yet written
	flush := func(stop int) error {
		if start < 0 {
			return nil
		}
		if err := pwriteFull(fd, buf[start:stop], off+int64(start)); err != nil {
			return err
		}
		end = off + int64(stop)
		start = -1
		return nil
	}
	for i := 0; i < len(buf); {
		next := i + int(bs-(off+int64(i))%bs)
		if next > len(buf) {
			next = len(buf)
		}
		if next-i == bs && fsnode.IsZero(buf[i:next]) {
			if err := flush(i); err != nil {
				return end, err
			}
		} else if start < 0 {
			start = i
		}
		i = next
	}
	err := flush(len(buf))
	return end, err
}

func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		if n == 0 {
			return fmt.Errorf("write at %d: %w", off, io.ErrShortWrite)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
