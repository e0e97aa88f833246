// Package backend defines the storage interface every repository lives on,
// and helpers shared by its implementations (layout, readers, errors).
//
// Contract for every implementation (checked by backendtest.Run):
//   - Save is atomic: a reader never sees a partial file under its final name,
//     and a failed or cancelled Save leaves nothing behind under that name.
//     Saving a name that already exists returns an error wrapping
//     ErrAlreadyExists and leaves the stored file untouched.
//   - Load/Stat/Remove of a missing file: Load and Stat return an error
//     wrapping ErrNotExist; Remove of a missing file is success (idempotent).
//   - List never reports an error as an empty listing; temporary files are
//     never listed.
//   - All methods are safe for concurrent use and honour ctx cancellation.
package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
)

// ErrNotExist is wrapped by errors for files that do not exist.
var ErrNotExist = errors.New("file does not exist")

// ErrAlreadyExists is wrapped by Save errors when the name is taken.
var ErrAlreadyExists = errors.New("file already exists")

// ErrNoSpace is wrapped by errors caused by a full disk or exhausted quota.
var ErrNoSpace = errors.New("no space left on storage")

// Handle names one file of a repository.
type Handle struct {
	Type core.FileType
	Name string // 64 lowercase hex chars; empty for the config file
}

func (h Handle) String() string {
	if h.Type == core.ConfigFile {
		return "config"
	}
	n := h.Name
	if len(n) > 8 {
		n = n[:8]
	}
	return h.Type.String() + "/" + n
}

// Valid reports whether h is a well-formed handle.
func (h Handle) Valid() error {
	switch h.Type {
	case core.ConfigFile:
		return nil
	case core.PackFile, core.IndexFile, core.KeyFile, core.LockFile, core.SnapshotFile:
		if !core.IsValidName(h.Name) {
			return fmt.Errorf("invalid file name %q for %v", h.Name, h.Type)
		}
		return nil
	}
	return fmt.Errorf("invalid file type %d", h.Type)
}

// FileInfo describes one stored file.
type FileInfo struct {
	Name string
	Size int64
}

// Backend stores a repository's files.
type Backend interface {
	// Location names the backend for messages (no credentials).
	Location() string
	// Connections is the number of requests worth running in parallel.
	Connections() uint
	// Save stores rd under h atomically.
	Save(ctx context.Context, h Handle, rd RewindReader) error
	// Load calls fn with a reader of length bytes starting at offset
	// (length 0 means to the end). fn may be called again on retry, and
	// must not keep the reader after it returns.
	Load(ctx context.Context, h Handle, length int, offset int64, fn func(rd io.Reader) error) error
	// Stat returns the size of h.
	Stat(ctx context.Context, h Handle) (FileInfo, error)
	// List calls fn for every file of type t (in any order).
	List(ctx context.Context, t core.FileType, fn func(FileInfo) error) error
	// Remove deletes h; a missing file is success.
	Remove(ctx context.Context, h Handle) error
	// Close releases resources.
	Close() error
}

// Creator is implemented by backends that must create a repository's
// directories (or bucket) before the first Save.
type Creator interface {
	Create(ctx context.Context) error
}

// IsNotExist reports whether err means a file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) || errors.Is(err, os.ErrNotExist) }

// RewindReader is a reader of known length that can be read again from the
// start (for retries).
type RewindReader interface {
	io.Reader
	Rewind() error
	Length() int64
}

// ByteReader is a RewindReader over a byte slice. The slice must not be
// modified while a Save using it is in flight.
type ByteReader struct {
	*bytes.Reader
	buf []byte
}

// NewByteReader returns a RewindReader over buf.
func NewByteReader(buf []byte) *ByteReader {
	return &ByteReader{Reader: bytes.NewReader(buf), buf: buf}
}

// Rewind restarts the reader.
func (b *ByteReader) Rewind() error { _, err := b.Seek(0, io.SeekStart); return err }

// Length returns the total length.
func (b *ByteReader) Length() int64 { return int64(len(b.buf)) }

// Bytes returns the whole underlying slice.
func (b *ByteReader) Bytes() []byte { return b.buf }

// FileReader is a RewindReader over an open file.
type FileReader struct {
	f    *os.File
	size int64
	rd   io.Reader
}

// NewFileReader returns a RewindReader for the first size bytes of f.
func NewFileReader(f *os.File, size int64) (*FileReader, error) {
	r := &FileReader{f: f, size: size}
	return r, r.Rewind()
}

func (r *FileReader) Read(p []byte) (int, error) { return r.rd.Read(p) }

// Rewind restarts the reader.
func (r *FileReader) Rewind() error {
	r.rd = io.NewSectionReader(r.f, 0, r.size)
	return nil
}

// Length returns the total length.
func (r *FileReader) Length() int64 { return r.size }

// LoadAll reads the whole file h.
func LoadAll(ctx context.Context, be Backend, h Handle) ([]byte, error) {
	var out []byte
	err := be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		b, err := io.ReadAll(rd)
		out = b
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Path returns the slash-separated path of h inside a repository using the
// standard layout: config, data/xx/<id>, index/<id>, keys/<id>, ...
func Path(h Handle) string {
	switch h.Type {
	case core.ConfigFile:
		return "config"
	case core.PackFile:
		if len(h.Name) >= 2 {
			return "data/" + h.Name[:2] + "/" + h.Name
		}
	}
	return h.Type.String() + "/" + h.Name
}

// Dirs returns every directory of the standard layout (relative, slash
// separated), parents before children.
func Dirs() []string {
	dirs := []string{"data", "index", "keys", "locks", "snapshots"}
	for i := 0; i < 256; i++ {
		dirs = append(dirs, fmt.Sprintf("data/%02x", i))
	}
	return dirs
}

// FileAdopter is implemented by backends that can take over a finished
// temporary file without copying it: the local backend creates the file on
// the repository's own file system and renames it into place.
type FileAdopter interface {
	// CreateTemp returns a new empty temporary file for a future file of
	// type t. It is never listed.
	CreateTemp(t core.FileType) (*os.File, error)
	// Adopt makes the complete file f visible as h atomically (fsync,
	// no-replace rename, fsync directory) and closes f. On error the
	// temporary file is removed.
	Adopt(ctx context.Context, h Handle, f *os.File) error
}

// AdopterOf returns be's FileAdopter, looking through decorators that pass
// saves straight through (they implement FileAdopter() themselves).
func AdopterOf(be Backend) (FileAdopter, bool) {
	if a, ok := be.(FileAdopter); ok {
		return a, true
	}
	if p, ok := be.(interface{ FileAdopter() (FileAdopter, bool) }); ok {
		return p.FileAdopter()
	}
	return nil, false
}

// modTimer is a backend that reports when a file was last written (local
// disks); remote stores give no trustworthy time.
type modTimer interface {
	ModTime(ctx context.Context, h Handle) (time.Time, error)
}

// modTimerOf finds the backend under be's decorators (Unwrap) that reports
// file times.
func modTimerOf(be Backend) (modTimer, bool) {
	for be != nil {
		if mt, ok := be.(modTimer); ok {
			return mt, true
		}
		u, ok := be.(interface{ Unwrap() Backend })
		if !ok {
			return nil, false
		}
		be = u.Unwrap()
	}
	return nil, false
}

// HasModTime reports whether be, looking through decorators, reports file
// modification times.
func HasModTime(be Backend) bool {
	_, ok := modTimerOf(be)
	return ok
}

// ModTime returns the modification time of h from the backend under be's
// decorators that reports file times, or an error if none does.
func ModTime(ctx context.Context, be Backend, h Handle) (time.Time, error) {
	mt, ok := modTimerOf(be)
	if !ok {
		return time.Time{}, fmt.Errorf("modtime %v: not supported by %s", h, be.Location())
	}
	return mt.ModTime(ctx, h)
}

// ListConsistent reports whether be (looking through decorators) promises
// read-after-write listing: once Save returned, every List that starts
// afterwards includes the file, and once Remove returned, none does. Local
// file systems give this; object stores and remote servers may not, so
// callers that depend on it (the lock protocol's recheck) wait for such
// backends to settle instead.
func ListConsistent(be Backend) bool {
	for be != nil {
		if c, ok := be.(interface{ ListConsistent() bool }); ok {
			return c.ListConsistent()
		}
		u, ok := be.(interface{ Unwrap() Backend })
		if !ok {
			return false
		}
		be = u.Unwrap()
	}
	return false
}
