package rclone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// permanentError marks an error that no retry can fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

func permanent(err error) error { return &permanentError{err: err} }

// errStalled is the cause of a request cancelled by the stall watchdog.
var errStalled = errors.New("request stalled: no data moved within the stall timeout")

// errBodyLength reports a reader that delivered more or fewer bytes than
// its Length.
var errBodyLength = errors.New("reader length does not match its data")

// exactBody delivers exactly length bytes of rd and checks that rd ends
// there before handing out the final bytes, so a longer reader fails the
// request before the server has a complete (but wrong) body.
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

// errBodyClosed is returned by reads of a request body after the request
// finished.
var errBodyClosed = errors.New("request body read after the request finished")

// guardedReader wraps a request body: it feeds the watchdog on every
// read, stops delivering once ctx is done, and refuses reads after close
// (the transport may still hold the body when the response arrived).
type guardedReader struct {
	mu     sync.Mutex // guards closed and serialises reads with close
	closed bool
	rd     io.Reader
	ctx    context.Context
	onRead func()
}

func (r *guardedReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errBodyClosed
	}
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	r.onRead()
	n, err := r.rd.Read(p)
	if cerr := r.ctx.Err(); cerr != nil {
		return 0, cerr
	}
	return n, err
}

// close waits for a read in progress and stops all later ones. A nil
// *guardedReader does nothing.
func (r *guardedReader) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// exactReader delivers exactly remaining bytes and turns an early EOF into
// io.ErrUnexpectedEOF.
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

// responseBody arms the watchdog only while a read waits on rclone, so a
// slow consumer never counts as a stall.
type responseBody struct {
	rc    io.ReadCloser
	watch *watchdog
}

func (r *responseBody) Read(p []byte) (int, error) {
	r.watch.arm()
	n, err := r.rc.Read(p)
	r.watch.disarm()
	return n, err
}

func (r *responseBody) Close() error { return r.rc.Close() }

// watchdog calls fire when armed for d without being disarmed or
// re-armed. A nil *watchdog does nothing.
type watchdog struct {
	d time.Duration
	t *time.Timer
}

func newWatchdog(d time.Duration, fire func()) *watchdog {
	if d <= 0 {
		return nil
	}
	t := time.AfterFunc(time.Hour, fire)
	t.Stop()
	return &watchdog{d: d, t: t}
}

func (w *watchdog) arm() {
	if w != nil {
		w.t.Reset(w.d)
	}
}

func (w *watchdog) disarm() {
	if w != nil {
		w.t.Stop()
	}
}

func (w *watchdog) stop() { w.disarm() }
