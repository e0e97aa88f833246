package stall

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to; due timers run in
// the goroutine that calls Advance.
type fakeClock struct {
	mu     sync.Mutex // guards now, timers and every fakeTimer's done
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	when time.Time
	f    func()
	done bool // fired or stopped
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Advance moves the clock forward by d and runs the timers that are due,
// earliest first (including timers they schedule that are due too).
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.done && !t.when.After(c.now) && (next == nil || t.when.Before(next.when)) {
				next = t
			}
		}
		if next == nil {
			c.mu.Unlock()
			return
		}
		next.done = true
		c.mu.Unlock()
		next.f()
	}
}

// pending counts the timers that have neither fired nor been stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

const limit = time.Minute

// abortCounter is an abort function that records its calls and releases
// the operations blocked on it.
type abortCounter struct {
	calls   atomic.Int32
	once    sync.Once
	aborted chan struct{}
}

func newAbortCounter() *abortCounter { return &abortCounter{aborted: make(chan struct{})} }

func (a *abortCounter) abort() {
	a.calls.Add(1)
	a.once.Do(func() { close(a.aborted) })
}

func (a *abortCounter) fired() bool {
	select {
	case <-a.aborted:
		return true
	default:
		return false
	}
}

// newTestWatchdog returns a watchdog with the timeout limit on a fake
// clock, and its abort function's record.
func newTestWatchdog() (*fakeClock, *abortCounter, *Watchdog) {
	clk, a := newFakeClock(), newAbortCounter()
	return clk, a, newWatchdog(clk, limit, a.abort)
}

func checkStallError(t *testing.T, err error, op string) {
	t.Helper()
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("error %v does not wrap ErrStalled", err)
	}
	var se *Error
	if !errors.As(err, &se) || se.Op != op || se.Limit != limit {
		t.Fatalf("error %#v, want *Error for %q with limit %v", err, op, limit)
	}
	if msg := err.Error(); !strings.Contains(msg, op) || !strings.Contains(msg, "stalled") {
		t.Fatalf("message %q does not name the operation", msg)
	}
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatal("a stall is not a timeout")
	}
}

// TestStalledReaderFails: a read that gets no data for the timeout is
// aborted and fails with an error naming it; later reads fail at once.
func TestStalledReaderFails(t *testing.T) {
	clk, a, w := newTestWatchdog()
	entered := make(chan struct{})
	var calls atomic.Int32
	r := w.Reader("read response", readerFunc(func([]byte) (int, error) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-a.aborted
		return 0, errors.New("connection closed")
	}))
	errc := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 8))
		errc <- err
	}()
	<-entered
	clk.Advance(limit - time.Nanosecond)
	if a.fired() {
		t.Fatal("fired before the timeout")
	}
	clk.Advance(time.Nanosecond)
	checkStallError(t, <-errc, "read response")
	if !w.Stalled() {
		t.Error("Stalled false after firing")
	}
	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, ErrStalled) {
		t.Errorf("read after the stall: %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("underlying reader called %d times, want 1", n)
	}
	if n := a.calls.Load(); n != 1 {
		t.Errorf("abort called %d times", n)
	}
}

// TestSlowReaderDoesNotFail: a peer that takes half the timeout for every
// byte, for many times the timeout in all, is not a stall; neither is a
// consumer that waits long between reads.
func TestSlowReaderDoesNotFail(t *testing.T) {
	clk, a, w := newTestWatchdog()
	r := w.Reader("read", readerFunc(func(p []byte) (int, error) {
		clk.Advance(limit / 2) // the peer is slow...
		p[0] = 'x'             // ...but delivers
		return 1, nil
	}))
	buf := make([]byte, 4)
	for i := 0; i < 40; i++ {
		if _, err := r.Read(buf); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if i%10 == 9 {
			clk.Advance(10 * limit) // a slow consumer between reads
		}
	}
	if a.fired() || w.Stalled() {
		t.Fatal("a slow but progressing reader stalled")
	}
}

// TestZeroByteReadsAreNoProgress: reads that return no data do not keep
// the watchdog from firing.
func TestZeroByteReadsAreNoProgress(t *testing.T) {
	clk, a, w := newTestWatchdog()
	w.Begin() // an operation that stays waiting (e.g. the request)
	r := w.Reader("read", readerFunc(func([]byte) (int, error) {
		clk.Advance(limit / 4)
		return 0, nil
	}))
	var err error
	for i := 0; i < 8 && err == nil; i++ {
		_, err = r.Read(make([]byte, 1))
	}
	if !a.fired() {
		t.Fatal("empty reads kept the watchdog alive")
	}
	checkStallError(t, err, "read")
}

func TestStalledWriterFails(t *testing.T) {
	clk, a, w := newTestWatchdog()
	var n atomic.Int32
	wr := w.Writer("upload", writerFunc(func(p []byte) (int, error) {
		if n.Add(1) <= 3 {
			clk.Advance(limit / 2)
			return len(p), nil
		}
		// The peer stops accepting data.
		clk.Advance(limit)
		<-a.aborted
		return 0, io.ErrClosedPipe
	}))
	for i := 0; i < 3; i++ {
		if _, err := wr.Write([]byte("data")); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	_, err := wr.Write([]byte("data"))
	checkStallError(t, err, "upload")
}

// TestProgressKeepsOtherOperationsAlive: data moving in one operation
// restarts the countdown of another one that waits.
func TestProgressKeepsOtherOperationsAlive(t *testing.T) {
	clk, a, w := newTestWatchdog()
	w.Begin() // e.g. an HTTP request waiting for its response
	for i := 0; i < 10; i++ {
		clk.Advance(limit / 2)
		w.Progress() // e.g. the transport reading the request body
	}
	if a.fired() {
		t.Fatal("fired although data moved")
	}
	clk.Advance(limit)
	if !a.fired() || !w.Stalled() {
		t.Fatal("did not fire after the data stopped")
	}
	w.End()
	if a.calls.Load() != 1 {
		t.Errorf("abort called %d times", a.calls.Load())
	}
}

// TestIdleDoesNotCount: with no operation waiting, time passes freely,
// and a Begin after a long idle period gets the full timeout.
func TestIdleDoesNotCount(t *testing.T) {
	clk, a, w := newTestWatchdog()
	w.Begin()
	w.End()
	clk.Advance(100 * limit)
	w.Begin()
	clk.Advance(limit - time.Nanosecond)
	if a.fired() {
		t.Fatal("idle time counted")
	}
	clk.Advance(time.Nanosecond)
	if !a.fired() {
		t.Fatal("did not fire")
	}
}

func TestStop(t *testing.T) {
	clk, a, w := newTestWatchdog()
	w.Begin()
	w.Stop()
	if clk.pending() != 0 {
		t.Errorf("%d timers pending after Stop", clk.pending())
	}
	clk.Advance(10 * limit)
	w.Begin()
	clk.Advance(10 * limit)
	if a.fired() || w.Stalled() {
		t.Fatal("fired after Stop")
	}
}

func TestDisabled(t *testing.T) {
	w := New(0, func() { t.Error("abort called") })
	if w != nil {
		t.Fatal("New(0) is not nil")
	}
	if New(-time.Second, nil) != nil {
		t.Fatal("New(negative) is not nil")
	}
	w.Begin()
	w.Progress()
	w.End()
	w.Stop()
	if w.Stalled() || w.Timeout() != 0 {
		t.Error("nil watchdog stalled")
	}
	src := strings.NewReader("x")
	if w.Reader("r", src) != io.Reader(src) {
		t.Error("nil watchdog wraps readers")
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	if NewConn(c1, 0) != c1 {
		t.Error("NewConn with timeout 0 wraps")
	}
	_ = c1.Close()
}

// notifyConn signals when its first Read starts.
type notifyConn struct {
	net.Conn
	once    sync.Once
	reading chan struct{}
}

func (c *notifyConn) Read(p []byte) (int, error) {
	c.once.Do(func() { close(c.reading) })
	return c.Conn.Read(p)
}

// TestConn: writes keep a connection with a pending read alive; once
// nothing moves for the timeout the connection is closed and its pending
// and later operations fail with stall errors.
func TestConn(t *testing.T) {
	clk := newFakeClock()
	local, remote := net.Pipe()
	defer remote.Close()
	go func() { _, _ = io.Copy(io.Discard, remote) }() // reads, never answers
	nc := &notifyConn{Conn: local, reading: make(chan struct{})}
	c := newConn(clk, nc, limit)
	defer c.Close()

	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		errc <- err
	}()
	<-nc.reading
	for i := 0; i < 10; i++ {
		clk.Advance(limit / 2)
		if _, err := c.Write([]byte("request")); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if c.w.Stalled() {
		t.Fatal("stalled although writes moved data")
	}
	clk.Advance(limit)
	checkStallError(t, <-errc, "read")
	_, err := c.Write([]byte("more"))
	checkStallError(t, err, "write")
}

// TestConnSlowPeer: a peer that sends a byte every third of the timeout does not
// stall the connection.
func TestConnSlowPeer(t *testing.T) {
	clk := newFakeClock()
	local, remote := net.Pipe()
	defer remote.Close()
	c := newConn(clk, local, limit)
	defer c.Close()
	go func() {
		// Up to two of these advances can fall between two progress
		// marks of the reader (the write returns when the peer's read
		// does, before the reader records progress), so each is a third
		// of the limit: 30 of them are ten limits in all.
		for i := 0; i < 30; i++ {
			clk.Advance(limit / 3)
			if _, err := remote.Write([]byte{byte(i)}); err != nil {
				return
			}
		}
		_ = remote.Close()
	}()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 30 {
		t.Fatalf("read %d bytes: %v", len(got), err)
	}
	if c.w.Stalled() {
		t.Fatal("a slow peer stalled the connection")
	}
}

// TestConnRealClock: NewConn with a short timeout fails a read from a
// silent peer.
func TestConnRealClock(t *testing.T) {
	local, remote := net.Pipe()
	defer remote.Close()
	c := NewConn(local, 20*time.Millisecond)
	defer c.Close()
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("read from a silent peer: %v", err)
	}
}
