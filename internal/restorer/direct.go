package restorer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/fsnode"
)

// Direct I/O for the bulk of large files (Options.Direct, restore
// --direct-io=auto|on|off).
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
// Every direct write waits for the device, so it is not always faster.
// Where fresh page-cache pages are expensive it is much faster: on VMs with
// free page reporting the guest hands freed memory back to the host and
// every new page costs a host fault. On the 2-core benchmark VM a restore
// of the corpus took 5.3-6.7 s buffered (6.4-8.5 s of system time) against
// 3.2-3.4 s direct in one hour, and 2.9-3.6 s buffered against 3.1-3.9 s
// direct in another (when the host made pages cheap). DirectAuto (the CLI's
// default) therefore uses direct I/O only on such VMs (freePageReporting).
//
// Only on Linux, and there only on file systems where O_DIRECT is a plain
// uncached write (ext4, XFS, btrfs; see directFS): elsewhere (tmpfs, FUSE,
// network file systems, other systems) the restore stays buffered. If the kernel still refuses an O_DIRECT open or
// write with EINVAL, the restore switches to buffered writes for the rest
// of its files and writes that piece buffered; nothing is lost.
const (
	directAlign   = fsnode.SparseBlockSize // file offsets, lengths and memory
	directMinFile = 1 << 20                // smaller files stay buffered
	directMinRun  = 64 << 10               // so do shorter aligned middles
	directStage   = 1 << 20                // largest single O_DIRECT write
)

// DirectMode selects when a restore writes with direct I/O.
type DirectMode int

const (
	// DirectOff writes every file through the page cache.
	DirectOff DirectMode = iota
	// DirectOn writes large files with direct I/O where the file system
	// supports it.
	DirectOn
	// DirectAuto is DirectOn on machines where fresh page-cache pages are
	// expensive (a VM with free page reporting), else DirectOff.
	DirectAuto
)

// use reports whether a restore into target writes with direct I/O.
func (m DirectMode) use(target string) bool {
	switch m {
	case DirectOn:
		return directFS(target)
	case DirectAuto:
		return costlyPages() && directFS(target)
	}
	return false
}

// costlyPages reports whether new page-cache pages are expensive here. A
// variable for tests.
var costlyPages = func() bool { return freePageReporting("/sys") }

// freePageReporting reports whether the machine has a virtio balloon
// device (device ID 5) that negotiated free page reporting
// (VIRTIO_BALLOON_F_REPORTING, feature bit 5): freed guest memory is then
// handed back to the host, and touching it again costs a host fault.
// sysfs is the sysfs mount point.
func freePageReporting(sysfs string) bool {
	devs, err := os.ReadDir(filepath.Join(sysfs, "bus", "virtio", "devices"))
	if err != nil {
		return false
	}
	for _, d := range devs {
		dir := filepath.Join(sysfs, "bus", "virtio", "devices", d.Name())
		id, err := os.ReadFile(filepath.Join(dir, "device"))
		if err != nil || strings.TrimSpace(string(id)) != "0x0005" {
			continue
		}
		// one character per feature bit, bit 0 first
		if f, err := os.ReadFile(filepath.Join(dir, "features")); err == nil && len(f) > 5 && f[5] == '1' {
			return true
		}
	}
	return false
}

// ParseDirectMode parses "auto", "on" or "off".
func ParseDirectMode(s string) (DirectMode, error) {
	switch s {
	case "auto":
		return DirectAuto, nil
	case "on":
		return DirectOn, nil
	case "off":
		return DirectOff, nil
	}
	return DirectOff, fmt.Errorf("direct I/O mode %q: want auto, on or off", s)
}

// openDirect (per platform: direct_linux.go, direct_other.go) and
// pwriteDirect open and write O_DIRECT handles. Variables so that tests
// can make the kernel "refuse" direct I/O.
var pwriteDirect = pwriteFull

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
		if errors.Is(err, unix.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
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
