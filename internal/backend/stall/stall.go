// Package stall detects transfers that stop making progress (hazard H30):
// a read or write that moves no data for a configured time is aborted and
// fails with an error naming the operation, instead of hanging forever.
//
// It bounds stalls, not the duration of a transfer: a slow transfer that
// keeps moving data never fails, and time spent outside a watched
// operation (a slow consumer between two reads of a download) never counts.
//
// A Watchdog watches any number of concurrent operations on one transfer
// (an HTTP request, a connection). It is armed while at least one of them
// waits on the peer; its countdown restarts whenever it becomes armed and
// whenever data moves (a read or write returning no data is no progress).
// When the countdown runs out it calls its abort function once (which must
// unblock the waiting operations: cancel the request's context, close the
// connection) and from then on every watched operation fails with an
// *Error. Reader, ReadCloser, Writer and NewConn wrap the usual
// interfaces; Begin, Progress and End serve other shapes of operation
// (an HTTP round trip whose request body reads count as progress).
package stall

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ErrStalled is wrapped by every *Error.
var ErrStalled = errors.New("no data moved within the stall timeout")

// Error reports an operation aborted because no data moved for Limit.
type Error struct {
	Op    string // what stalled: "read", "write", "request", ...
	Limit time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s stalled: no data moved for %v", e.Op, e.Limit)
}

// Unwrap returns ErrStalled.
func (e *Error) Unwrap() error { return ErrStalled }

// Timeout reports true, so that code testing for net.Error timeouts sees
// a stall as one.
func (e *Error) Timeout() bool { return true }

// clock is time, replaceable in tests.
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) stopper
}

type stopper interface{ Stop() bool }

type realClock struct{}

func (realClock) Now() time.Time                              { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }

// Watchdog aborts the operations it watches when none of them made
// progress for its timeout. A nil *Watchdog watches nothing and never
// stalls; all its methods may be called.
type Watchdog struct {
	clock   clock
	timeout time.Duration
	abort   func()

	mu sync.Mutex // guards the fields below
	// waiting counts the operations between Begin and End.
	waiting int
	// deadline is when the watchdog fires unless data moves first
	// (meaningful while waiting > 0).
	deadline time.Time
	// timer is the pending check, or nil. It is not moved on every
	// restart: a check that finds the deadline moved schedules the next.
	timer   stopper
	stalled bool // the watchdog fired; abort has been called
	stopped bool // Stop was called
}

// New returns a watchdog that calls abort once if the operations it
// watches move no data for timeout. It returns nil (a watchdog that never
// fires) if timeout <= 0. abort must make the waiting operations return;
// it runs on a timer goroutine.
func New(timeout time.Duration, abort func()) *Watchdog {
	return newWatchdog(realClock{}, timeout, abort)
}

func newWatchdog(c clock, timeout time.Duration, abort func()) *Watchdog {
	if timeout <= 0 {
		return nil
	}
	return &Watchdog{clock: c, timeout: timeout, abort: abort}
}

// Timeout returns the watchdog's timeout (0 for nil).
func (w *Watchdog) Timeout() time.Duration {
	if w == nil {
		return 0
	}
	return w.timeout
}

// Begin marks the start of an operation that waits on the peer. If none
// was waiting the watchdog is armed with a full countdown; otherwise the
// countdown goes on. Every Begin needs an End.
func (w *Watchdog) Begin() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiting++
	if w.waiting == 1 {
		w.restartLocked()
	}
}

// Progress records that data moved: the countdown restarts (if an
// operation is waiting).
func (w *Watchdog) Progress() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting > 0 {
		w.restartLocked()
	}
}

// End marks the end of an operation started with Begin. With no operation
// left waiting the watchdog is idle: time does not count until the next
// Begin.
func (w *Watchdog) End() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting > 0 {
		w.waiting--
	}
}

// Stalled reports whether the watchdog fired.
func (w *Watchdog) Stalled() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stalled
}

// Err returns the error for op having stalled.
func (w *Watchdog) Err(op string) error {
	return &Error{Op: op, Limit: w.Timeout()}
}

// Stop ends the watching for good and releases the timer; the watchdog
// never fires after Stop returns, unless it had already begun to.
func (w *Watchdog) Stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}

func (w *Watchdog) restartLocked() {
	if w.stalled || w.stopped {
		return
	}
	w.deadline = w.clock.Now().Add(w.timeout)
	if w.timer == nil {
		w.timer = w.clock.AfterFunc(w.timeout, w.check)
	}
}

// check runs when a timer expires: it fires the watchdog if the deadline
// has passed with an operation waiting, and otherwise schedules the next
// check (if one is needed).
func (w *Watchdog) check() {
	w.mu.Lock()
	w.timer = nil
	if w.stalled || w.stopped || w.waiting == 0 {
		w.mu.Unlock()
		return
	}
	if now := w.clock.Now(); now.Before(w.deadline) {
		w.timer = w.clock.AfterFunc(w.deadline.Sub(now), w.check)
		w.mu.Unlock()
		return
	}
	w.stalled = true
	w.mu.Unlock()
	w.abort()
}

// watch runs f (one Read or Write) as an operation watched by w: it fails
// at once if w already fired, and if w fires meanwhile, the error
// (whatever the abort made f return) is replaced by the stall error.
func (w *Watchdog) watch(op string, f func([]byte) (int, error), p []byte) (int, error) {
	if w.Stalled() {
		return 0, w.Err(op)
	}
	w.Begin()
	n, err := f(p)
	if n > 0 {
		w.Progress()
	}
	w.End()
	if err != nil && w.Stalled() {
		err = w.Err(op)
	}
	return n, err
}

// Reader returns a reader whose every Read is an operation watched by w
// (op names it in errors). Time between reads does not count.
func (w *Watchdog) Reader(op string, r io.Reader) io.Reader {
	if w == nil {
		return r
	}
	return &reader{w: w, op: op, r: r}
}

// ReadCloser is Reader for an io.ReadCloser; Close is passed through.
func (w *Watchdog) ReadCloser(op string, rc io.ReadCloser) io.ReadCloser {
	if w == nil {
		return rc
	}
	return &readCloser{reader: reader{w: w, op: op, r: rc}, c: rc}
}

// Writer returns a writer whose every Write is an operation watched by w
// (op names it in errors).
func (w *Watchdog) Writer(op string, wr io.Writer) io.Writer {
	if w == nil {
		return wr
	}
	return &writer{w: w, op: op, wr: wr}
}

type reader struct {
	w  *Watchdog
	op string
	r  io.Reader
}

func (r *reader) Read(p []byte) (int, error) { return r.w.watch(r.op, r.r.Read, p) }

type readCloser struct {
	reader
	c io.Closer
}

func (r *readCloser) Close() error { return r.c.Close() }

type writer struct {
	w  *Watchdog
	op string
	wr io.Writer
}

func (w *writer) Write(p []byte) (int, error) { return w.w.watch(w.op, w.wr.Write, p) }

// NewConn returns c guarded by a stall timeout (or c itself if timeout <=
// 0): c is closed when no data moved in either direction for timeout
// while a Read or Write waited. Every byte read or written restarts the
// countdown for all operations, so a long upload keeps a pending read of
// the response alive; a connection with no Read or Write in progress (a
// slow consumer between reads) is never closed by it. Reads and writes on
// a stalled connection fail with an *Error ("read", "write").
func NewConn(c net.Conn, timeout time.Duration) net.Conn {
	if timeout <= 0 {
		return c
	}
	return newConn(realClock{}, c, timeout)
}

type conn struct {
	net.Conn
	w *Watchdog
}

func newConn(clk clock, c net.Conn, timeout time.Duration) *conn {
	return &conn{Conn: c, w: newWatchdog(clk, timeout, func() { _ = c.Close() })}
}

func (c *conn) Read(p []byte) (int, error)  { return c.w.watch("read", c.Conn.Read, p) }
func (c *conn) Write(p []byte) (int, error) { return c.w.watch("write", c.Conn.Write, p) }

// Close closes the connection and stops its watchdog.
func (c *conn) Close() error {
	c.w.Stop()
	return c.Conn.Close()
}
