package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/minio/minio-go/v7"

	"github.com/cairn-backup/cairn/internal/backend"
)

// s3Error wraps an error from the S3 client with the backend sentinel it
// stands for (if any) and whether retrying is pointless.
type s3Error struct {
	err  error
	kind error // backend.ErrNotExist, backend.ErrNoSpace or nil
	perm bool
}

func (e *s3Error) Error() string { return e.err.Error() }

func (e *s3Error) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.err, e.kind}
}

// Permanent reports whether retrying cannot help (missing objects or
// buckets, refused credentials or permissions, invalid ranges).
func (e *s3Error) Permanent() bool { return e.perm }

// classify maps an S3 client error to the backend's sentinel errors. A
// missing bucket is a permanent error but not ErrNotExist, so that no
// caller can mistake it for an empty listing.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *s3Error
	if errors.As(err, &se) {
		return err
	}
	resp := minio.ToErrorResponse(err)
	e := &s3Error{err: err}
	switch {
	case resp.Code == "NoSuchKey", resp.StatusCode == http.StatusNotFound && (resp.Code == "" || resp.Code == "NotFound"):
		e.kind, e.perm = backend.ErrNotExist, true
	case resp.Code == "NoSuchBucket":
		e.err = fmt.Errorf("%w (the bucket does not exist)", err)
		e.perm = true
	case resp.StatusCode == http.StatusInsufficientStorage, resp.Code == "XMinioStorageFull", resp.Code == "QuotaExceeded":
		e.kind, e.perm = backend.ErrNoSpace, true
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden,
		resp.StatusCode == http.StatusMethodNotAllowed, resp.StatusCode == http.StatusRequestedRangeNotSatisfiable,
		resp.Code == "AccessDenied", resp.Code == "InvalidAccessKeyId", resp.Code == "SignatureDoesNotMatch",
		resp.Code == "InvalidBucketName", resp.Code == "InvalidArgument":
		e.perm = true
	}
	return e
}

// isNotFound reports whether err says the object does not exist.
func isNotFound(err error) bool {
	return errors.Is(classify(err), backend.ErrNotExist)
}

// ctxReader fails reads once ctx is done, even if the underlying reader
// would go on delivering data.
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

// errBodyLength reports a reader that delivered more or fewer bytes than
// its Length.
var errBodyLength = errors.New("reader length does not match its data")

// exactBody delivers exactly length bytes of rd. Before it hands out the
// final bytes it checks that rd really ends there, so a reader longer than
// its Length fails the upload before the server has a complete (but wrong)
// body; a shorter one fails with the body incomplete.
type exactBody struct {
	rd     io.Reader
	length int64
	n      int64
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
		if perr := probeEOF(r.rd); perr != nil {
			return 0, perr
		}
		return n, io.EOF
	}
	if err == io.EOF {
		return n, fmt.Errorf("%w: got %d bytes, want %d: %w", errBodyLength, r.n, r.length, io.ErrUnexpectedEOF)
	}
	return n, err
}

// probeEOF checks that rd has no more data.
func probeEOF(rd io.Reader) error {
	var one [1]byte
	for i := 0; i < 100; i++ {
		n, err := rd.Read(one[:])
		switch {
		case n > 0:
			return fmt.Errorf("%w: more data than its length", errBodyLength)
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
	return fmt.Errorf("%w: reader returns no data and no EOF", errBodyLength)
}

// exactReader delivers exactly remaining bytes: it stops there and turns
// an early EOF into io.ErrUnexpectedEOF.
type exactReader struct {
	rd        io.Reader
	remaining int64
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
		return n, fmt.Errorf("response body ended %d bytes early: %w", r.remaining, io.ErrUnexpectedEOF)
	}
	return n, err
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
