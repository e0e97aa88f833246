package server

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

var (
	// errHashMismatch: the body's SHA-256 is not the object name.
	errHashMismatch = errors.New("uploaded content does not match its name")
	// errTruncated: the body ended before Content-Length bytes.
	errTruncated = errors.New("upload truncated")
	// errTooLong: the body went on past Content-Length bytes.
	errTooLong = errors.New("upload longer than Content-Length")
	// errRewind: the backend tried to re-read a request body.
	errRewind = errors.New("cannot rewind an HTTP request body after reading started")
)

// verifyReader is the backend.RewindReader handed to Backend.Save for an
// upload. It streams the request body, counting and hashing it, and instead
// of a clean io.EOF it returns an error when the body is shorter or longer
// than announced or (for objects) when its SHA-256 differs from the name.
// The check also fires the moment the announced length is reached, so a
// backend that reads exactly Length() bytes without waiting for EOF still
// sees the error. A backend that gets an error from its reader must discard
// what it wrote, so a bad upload never becomes visible.
//
// It is used by one goroutine at a time (the backend's Save).
type verifyReader struct {
	rd      io.Reader
	length  int64
	n       int64
	h       hash.Hash // nil when the content is not named by its hash (config)
	want    core.ID
	started bool
	done    bool
	err     error // first error handed out; nil while the body is good
}

var _ backend.RewindReader = (*verifyReader)(nil)

// newVerifyReader verifies rd against length and, if name is not empty,
// against the ID name.
func newVerifyReader(rd io.Reader, length int64, name string) (*verifyReader, error) {
	v := &verifyReader{rd: rd, length: length}
	if name != "" {
		id, err := core.ParseID(name)
		if err != nil {
			return nil, fmt.Errorf("verify upload: %w", err)
		}
		v.h = sha256.New()
		v.want = id
	}
	return v, nil
}

func (v *verifyReader) fail(err error) error {
	if v.err == nil {
		v.err = err
	}
	return v.err
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.done {
		return 0, io.EOF
	}
	v.started = true
	// Ask for one byte more than remains, to notice an overlong body.
	if rem := v.length - v.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := v.rd.Read(p)
	if int64(n) > v.length-v.n {
		return 0, v.fail(fmt.Errorf("%w: more than %d bytes", errTooLong, v.length))
	}
	v.n += int64(n)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	if v.n == v.length {
		if v.h != nil {
			var got core.ID
			v.h.Sum(got[:0])
			if got != v.want {
				return n, v.fail(fmt.Errorf("%w: SHA-256 is %v", errHashMismatch, got))
			}
		}
		v.done = true
		return n, io.EOF
	}
	switch {
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return n, v.fail(fmt.Errorf("%w: got %d of %d bytes", errTruncated, v.n, v.length))
	case err != nil:
		return n, v.fail(fmt.Errorf("%w after %d of %d bytes: %w", errTruncated, v.n, v.length, err))
	}
	return n, nil
}

// Rewind succeeds only before the first read: a request body cannot be
// read twice.
func (v *verifyReader) Rewind() error {
	if v.started {
		return errRewind
	}
	return nil
}

// Length returns the announced Content-Length.
func (v *verifyReader) Length() int64 { return v.length }

// complete reports whether the whole body was read and verified.
func (v *verifyReader) complete() bool { return v.done && v.err == nil }
