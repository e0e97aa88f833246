package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
)

// This file holds the readers and argument checks that the backend
// implementations share. The helpers return plain errors without an
// operation name; callers wrap them ("load %v: %w") and decide whether an
// error is worth retrying.

// ErrLengthMismatch is wrapped by errors of a reader that delivered more or
// fewer bytes than its announced length.
var ErrLengthMismatch = errors.New("reader length does not match its data")

// NewCtxReader returns a reader that fails once ctx is done, even if rd
// would go on delivering data: ctx is checked before and after each read,
// and a read that overlapped the cancellation hands out nothing.
func NewCtxReader(ctx context.Context, rd io.Reader) io.Reader {
	return &ctxReader{ctx: ctx, rd: rd}
}

type ctxReader struct {
	ctx context.Context
	rd  io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.rd.Read(p)
	if cerr := r.ctx.Err(); cerr != nil {
		return 0, cerr
	}
	return n, err
}

// NewExactBody returns an upload body that delivers exactly length bytes
// of rd. Before it hands out the final bytes it checks (with ProbeEOF) that
// rd really ends there, so a reader longer than its length fails the upload
// before the server has a complete but wrong body; a shorter one fails with
// an error wrapping ErrLengthMismatch and io.ErrUnexpectedEOF, leaving the
// body incomplete.
func NewExactBody(rd io.Reader, length int64) io.Reader {
	return &exactBody{rd: rd, length: length}
}

type exactBody struct {
	rd     io.Reader
	length int64
	n      int64 // bytes delivered so far
}

func (r *exactBody) Read(p []byte) (int, error) {
	if r.n >= r.length {
		return 0, io.EOF
	}
	if rem := r.length - r.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := r.rd.Read(p)
	r.n += int64(n)
	if r.n == r.length {
		if perr := ProbeEOF(r.rd); perr != nil {
			return 0, perr
		}
		return n, io.EOF
	}
	if err == io.EOF {
		return n, fmt.Errorf("%w: got %d bytes, want %d: %w", ErrLengthMismatch, r.n, r.length, io.ErrUnexpectedEOF)
	}
	return n, err
}

// probeAttempts bounds how many empty reads ProbeEOF tolerates.
const probeAttempts = 100

// ProbeEOF checks that rd has no more data: it reads one byte at a time
// until io.EOF. Data is an error wrapping ErrLengthMismatch, and so is a
// reader that keeps returning neither data nor EOF.
func ProbeEOF(rd io.Reader) error {
	var one [1]byte
	for i := 0; i < probeAttempts; i++ {
		n, err := rd.Read(one[:])
		switch {
		case n > 0:
			return fmt.Errorf("%w: more data than its length", ErrLengthMismatch)
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
	return fmt.Errorf("%w: reader returns no data and no EOF", ErrLengthMismatch)
}

// NewExactReader returns a reader of exactly n bytes of rd, for downloads:
// it stops after n bytes (reporting io.EOF with the last of them) and turns
// an early EOF of rd into an error wrapping io.ErrUnexpectedEOF that names
// what ended early ("file", "response body").
func NewExactReader(rd io.Reader, n int64, what string) io.Reader {
	return &exactReader{rd: rd, remaining: n, what: what}
}

type exactReader struct {
	rd        io.Reader
	remaining int64
	what      string
}

func (r *exactReader) Read(p []byte) (int, error) {
	if r.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.rd.Read(p)
	r.remaining -= int64(n)
	switch {
	case r.remaining == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, fmt.Errorf("%s ended %d bytes early: %w", r.what, r.remaining, io.ErrUnexpectedEOF)
	}
	return n, err
}

// UnexpectedEOF turns io.EOF into io.ErrUnexpectedEOF (for reads that must
// get a given number of bytes, such as skipping to an offset) and returns
// any other error unchanged.
func UnexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ParseContentRange parses an HTTP Content-Range header of the form
// "bytes START-END/TOTAL"; TOTAL may be "*", returned as -1. END must not
// precede START, with one exception: servers such as rclone describe an
// empty range at the very end of a file as "bytes N-(N-1)/N", which is
// accepted only when TOTAL is N.
func ParseContentRange(s string) (start, end, total int64, ok bool) {
	spec, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(spec, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, z, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(z, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start-1 {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t <= end {
			return 0, 0, 0, false
		}
		total = t
	}
	if end == start-1 && total != start {
		return 0, 0, 0, false // empty, but not at the end of the file
	}
	return start, end, total, true
}

// CheckSave validates the arguments of Save: a well-formed handle and a
// reader with a non-negative length, which it returns.
func CheckSave(h Handle, rd RewindReader) (int64, error) {
	if err := h.Valid(); err != nil {
		return 0, err
	}
	length := rd.Length()
	if length < 0 {
		return 0, fmt.Errorf("negative length %d", length)
	}
	return length, nil
}

// CheckLoad validates the arguments of Load: a well-formed handle and a
// non-negative offset and length.
func CheckLoad(h Handle, length int, offset int64) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if offset < 0 || length < 0 {
		return fmt.Errorf("invalid range offset %d length %d", offset, length)
	}
	return nil
}

// CheckListType validates the type argument of List: one of
// core.AllFileTypes.
func CheckListType(t core.FileType) error {
	if !slices.Contains(core.AllFileTypes, t) {
		return fmt.Errorf("invalid file type %v", t)
	}
	return nil
}

// LoadRange returns how many bytes a Load of length bytes (0: to the end)
// at offset reads from a file of size bytes. An offset past the end is an
// error; a range that runs past the end is an error wrapping
// io.ErrUnexpectedEOF. Reading nothing at the very end is valid.
func LoadRange(size int64, length int, offset int64) (int64, error) {
	if offset > size {
		return 0, fmt.Errorf("offset %d beyond end of %d-byte file", offset, size)
	}
	n := size - offset
	if length > 0 {
		if int64(length) > n {
			return 0, fmt.Errorf("range %d+%d beyond end of %d-byte file: %w", offset, length, size, io.ErrUnexpectedEOF)
		}
		n = int64(length)
	}
	return n, nil
}

// ListConfig implements List for the config file on top of stat (usually
// the backend's own Stat): it calls fn once if the config exists and not at
// all if it does not. Any other error is returned, never read as an empty
// listing.
func ListConfig(ctx context.Context, stat func(context.Context, Handle) (FileInfo, error), fn func(FileInfo) error) error {
	fi, err := stat(ctx, Handle{Type: core.ConfigFile})
	if IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %v: %w", core.ConfigFile, err)
	}
	return fn(fi)
}

// Sleep waits for d or until ctx is done, whichever comes first; it
// returns ctx's error in the latter case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OpenCreate opens a backend with open and creates its repository (or
// bucket) with Create, closing it again if Create fails.
func OpenCreate[B interface {
	Backend
	Creator
}](ctx context.Context, open func(context.Context) (B, error)) (B, error) {
	var zero B
	b, err := open(ctx)
	if err != nil {
		return zero, err
	}
	if err := b.Create(ctx); err != nil {
		_ = b.Close()
		return zero, err
	}
	return b, nil
}
