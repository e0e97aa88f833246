package restorer

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/fsnode"
)

// Direct I/O for the bulk of large files (Options.Direct, restore
// --direct-io).
//
// A restore writes each byte once and does not read it again, so passing
// the data of large files through the page cache costs a copy into pages
// that must first be allocated, and evicts whatever the machine had
// cached. With Direct, the page-aligned middle of every blob of a file of
// at least directMinFile bytes is written with O_DIRECT from an aligned
// buffer; the unaligned head and tail of the blob (below 4 KiB each) and
// small files go through the page cache as before. Both kinds of write
// never share a page, so the kernel keeps them coherent without flushing.
// Zero pages are still skipped (holes), exactly as writeSparse does.
//
// It is not the default: every direct write waits for the device. On the
// 2-core benchmark VM it saved 0.4-2.5 s of system time per corpus restore
// (fresh page-cache pages are expensive there), but its wall time was
// 0.2 s worse in an alternating comparison on a fresh file system.
//
// Only on file systems where O_DIRECT is a plain uncached write (ext4, XFS,
// btrfs; see directFS): elsewhere (tmpfs, FUSE, network file systems) the
// restore stays buffered. If the kernel still refuses an O_DIRECT open or
// write with EINVAL, the restore switches to buffered writes for the rest
// of its files and writes that piece buffered; nothing is lost.
const (
	directAlign   = fsnode.SparseBlockSize // file offsets, lengths and memory
	directMinFile = 1 << 20                // smaller files stay buffered
	directMinRun  = 64 << 10               // so do shorter aligned middles
	directStage   = 1 << 20                // largest single O_DIRECT write
)

// File system magic numbers (statfs f_type) where direct I/O is used.
const (
	ext4Magic  = 0xEF53
	xfsMagic   = 0x58465342
	btrfsMagic = 0x9123683E
)

// directFS reports whether the file system holding dir is one where
// restores write large files with O_DIRECT. A variable for tests.
var directFS = func(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case ext4Magic, xfsMagic, btrfsMagic:
		return true
	}
	return false
}

// openDirect and pwriteDirect open and write O_DIRECT handles. Variables
// so that tests can make the kernel "refuse" direct I/O.
var (
	openDirect = func(path string) (int, error) {
		return openFD(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_DIRECT, 0)
	}
	pwriteDirect = pwriteFull
)

// errDirectRefused reports that the kernel refused direct I/O (EINVAL);
// the caller writes the same bytes buffered.
var errDirectRefused = errors.New("direct I/O refused")

// alignedBuffer returns a buffer of n bytes whose first byte is aligned to
// directAlign.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := int((directAlign - uintptr(unsafe.Pointer(&b[0]))%directAlign) % directAlign)
	return b[skip : skip+n : skip+n]
}

// writeData writes buf at offset off of fs's new file: through fd (the
// buffered handle), or, for the aligned middle of a blob of a large file,
// with direct I/O. It returns the end of the last range written (0 if none:
// everything was zeros).
func (rs *restorer) writeData(fs *fileState, fd int, buf []byte, off int64, bufs *packBufs) (int64, error) {
	if !rs.direct.Load() || int64(fs.node.Size) < directMinFile {
		return writeSparse(fd, buf, off)
	}
	a := int((directAlign - off%directAlign) % directAlign) // first aligned byte of buf
	b := len(buf) - int((off+int64(len(buf)))%directAlign)  // end of the last whole page
	if b-a < directMinRun {
		return writeSparse(fd, buf, off)
	}
	var end int64
	note := func(e int64, err error) error {
		end = max(end, e)
		return err
	}
	if err := note(writeSparse(fd, buf[:a], off)); err != nil {
		return end, err
	}
	e, err := rs.writeDirect(fs, buf[a:b], off+int64(a), bufs)
	if errors.Is(err, errDirectRefused) {
		e, err = writeSparse(fd, buf[a:b], off+int64(a))
	}
	if err := note(e, err); err != nil {
		return end, err
	}
	err = note(writeSparse(fd, buf[b:], off+int64(b)))
	return end, err
}

// writeDirect writes mid, page-aligned in the file at off and a whole
// number of pages long, through a new O_DIRECT handle of fs, skipping zero
// pages. It returns the end of the last range written, or errDirectRefused
// (after switching the restore to buffered writes) if the kernel refuses.
func (rs *restorer) writeDirect(fs *fileState, mid []byte, off int64, bufs *packBufs) (int64, error) {
	dfd, err := openDirect(fs.path)
	if err != nil {
		if errors.Is(err, unix.EINVAL) {
			rs.direct.Store(false)
			return 0, errDirectRefused
		}
		return 0, err
	}
	if len(bufs.stage) == 0 {
		bufs.stage = alignedBuffer(directStage)
	}
	var end int64
	werr := func() error {
		for i := 0; i < len(mid); {
			if fsnode.IsZero(mid[i : i+directAlign]) {
				i += directAlign
				continue
			}
			j := i + directAlign
			for j < len(mid) && j-i < len(bufs.stage) && !fsnode.IsZero(mid[j:j+directAlign]) {
				j += directAlign
			}
			n := copy(bufs.stage, mid[i:j])
			if err := pwriteDirect(dfd, bufs.stage[:n], off+int64(i)); err != nil {
				if errors.Is(err, unix.EINVAL) {
					return errDirectRefused
				}
				return err
			}
			rs.directBytes.Add(int64(n))
			end = off + int64(j)
			i = j
		}
		return nil
	}()
	if cerr := closeFD(dfd, fs.path); werr == nil && cerr != nil {
		werr = cerr
	}
	if errors.Is(werr, errDirectRefused) {
		rs.direct.Store(false)
		// Pages written directly before the refusal stay written; the
		// caller rewrites the whole range buffered, which is the same data.
		return 0, errDirectRefused
	}
	return end, werr
}
