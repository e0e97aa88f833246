// Package retry wraps a backend.Backend so that failed requests are retried
// with exponential back-off and jitter.
//
// Permanent errors are returned at once: files that do not exist or already
// exist, a full disk, the caller's context ending, and any error that has a
// Permanent() bool method returning true (see Permanent). A context error
// from a deadline inside the wrapped backend, while the caller's context is
// live, is retried.
//
// Save rewinds the reader before every retry. If a retry finds the name
// taken although an earlier attempt of the same call failed, the earlier
// attempt landed and only its response was lost; the call then succeeds if
// the stored file is the one being saved (same size, or same bytes for the
// config), and fails otherwise.
//
// Load calls fn again on every retry (fn must be idempotent). A range that
// the backend rejects as reaching past the end of the file (an error
// wrapping io.ErrUnexpectedEOF before fn was called) is not retried; a
// download cut short while fn reads is. List is
// retried only as long as fn has not been called: once entries have been
// delivered, a failure is returned, never a partial listing as success.
package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// Options tune the retries. Zero fields take the defaults noted.
type Options struct {
	// MaxTries is the total number of attempts per call (default 10).
	MaxTries int
	// InitialDelay is the back-off before the first retry (default 500ms).
	// Each further retry doubles it, up to MaxDelay.
	InitialDelay time.Duration
	// MaxDelay caps a single back-off (default 1 minute).
	MaxDelay time.Duration
	// MaxElapsed stops retrying once this much time has passed since the
	// call started (default 15 minutes; negative means no limit).
	MaxElapsed time.Duration
	// StallTimeout cancels and retries an attempt that makes no progress
	// for this long: no body bytes read (Save, Load), no entry listed
	// (List), or no answer at all (Stat, Remove). For Load, time spent in
	// fn between reads counts too. Zero disables it.
	StallTimeout time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// Sleep waits for d or until ctx is done, returning ctx's error in the
	// latter case (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry, if set, is called before each back-off with the operation
	// ("save", "load", "stat", "list", "remove"), the handle (for list:
	// only the type), the number of the attempt that failed (1-based), its
	// error and the delay before the next attempt.
	OnRetry func(op string, h backend.Handle, attempt int, err error, delay time.Duration)
}

const (
	defaultMaxTries     = 10
	defaultInitialDelay = 500 * time.Millisecond
	defaultMaxDelay     = time.Minute
	defaultMaxElapsed   = 15 * time.Minute
)

// Backend retries the calls of the backend it wraps.
type Backend struct {
	be   backend.Backend
	opts Options

	// rngMu guards rng (jitter source).
	rngMu sync.Mutex
	rng   *rand.Rand
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Creator = (*Backend)(nil)
)

// New returns be wrapped with retries.
func New(be backend.Backend, opts Options) *Backend {
	if opts.MaxTries <= 0 {
		opts.MaxTries = defaultMaxTries
	}
	if opts.InitialDelay <= 0 {
		opts.InitialDelay = defaultInitialDelay
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = defaultMaxDelay
	}
	if opts.MaxDelay < opts.InitialDelay {
		opts.MaxDelay = opts.InitialDelay
	}
	if opts.MaxElapsed == 0 {
		opts.MaxElapsed = defaultMaxElapsed
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = backend.Sleep
	}
	return &Backend{be: be, opts: opts, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// permanentError marks an error as not worth retrying.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// Permanent marks err so that it is not retried (for example an error
// returned by a Load callback that a new download cannot fix). It returns
// nil for nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err is not worth retrying: it wraps
// backend.ErrNotExist (or fs.ErrNotExist), backend.ErrAlreadyExists,
// backend.ErrNoSpace, a context error, or an error whose Permanent method
// returns true.
func IsPermanent(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isPermanent(err)
}

// isPermanent is IsPermanent without the context errors: a deadline that
// expires inside the wrapped backend while the caller's context is still
// live is worth another attempt.
func isPermanent(err error) bool {
	return errors.Is(err, backend.ErrNotExist) || backend.IsNotExist(err) ||
		errors.Is(err, backend.ErrAlreadyExists) || errors.Is(err, backend.ErrNoSpace) ||
		markedPermanent(err)
}

// markedPermanent reports whether any error in err's tree has a Permanent
// method returning true.
func markedPermanent(err error) bool {
	if err == nil {
		return false
	}
	if p, ok := err.(interface{ Permanent() bool }); ok && p.Permanent() {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return markedPermanent(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if markedPermanent(e) {
				return true
			}
		}
	}
	return false
}

// ErrStalled is wrapped by errors of attempts cancelled by
// Options.StallTimeout for lack of progress; it is also their context's
// cancellation cause.
var ErrStalled = errors.New("request stalled")

// StallError reports an attempt cancelled by Options.StallTimeout.
type StallError struct {
	Op      string
	Timeout time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("%s: no progress for %v", e.Op, e.Timeout)
}

// Unwrap lets errors.Is(err, ErrStalled) match.
func (e *StallError) Unwrap() error { return ErrStalled }

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.be.Location() }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return b.be.Connections() }

// Close implements backend.Backend.
func (b *Backend) Close() error { return b.be.Close() }

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() backend.Backend { return b.be }

// Create implements backend.Creator by retrying the wrapped backend's
// Create; backends that need no creation step succeed at once.
func (b *Backend) Create(ctx context.Context) error {
	c, ok := b.be.(backend.Creator)
	if !ok {
		return nil
	}
	return b.run(ctx, "create", backend.Handle{}, func(ctx context.Context, _ *watchdog) error {
		return c.Create(ctx)
	})
}

// delay returns the jittered back-off after the given failed attempt:
// uniformly random in [d/2, d] where d = InitialDelay·2^(attempt-1),
// capped at MaxDelay.
func (b *Backend) delay(attempt int) time.Duration {
	d := b.opts.InitialDelay
	for i := 1; i < attempt && d < b.opts.MaxDelay; i++ {
		d *= 2
	}
	if d > b.opts.MaxDelay {
		d = b.opts.MaxDelay
	}
	b.rngMu.Lock()
	j := b.rng.Int64N(int64(d/2) + 1)
	b.rngMu.Unlock()
	return d/2 + time.Duration(j)
}

// run calls attempt until it succeeds, fails permanently, or the retry
// budget is spent. attempt gets a per-attempt context and a watchdog to
// report progress to (nil without StallTimeout).
func (b *Backend) run(ctx context.Context, op string, h backend.Handle, attempt func(ctx context.Context, w *watchdog) error) error {
	start := b.opts.Now()
	for n := 1; ; n++ {
		err := b.attempt(ctx, op, attempt)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || isPermanent(err) {
			return err
		}
		if n >= b.opts.MaxTries {
			return fmt.Errorf("%s %v: giving up after %d attempts: %w", op, h, n, err)
		}
		d := b.delay(n)
		if b.opts.MaxElapsed > 0 && b.opts.Now().Sub(start)+d > b.opts.MaxElapsed {
			return fmt.Errorf("%s %v: giving up after %d attempts in %v: %w", op, h, n, b.opts.Now().Sub(start), err)
		}
		if b.opts.OnRetry != nil {
			b.opts.OnRetry(op, h, n, err, d)
		}
		if serr := b.opts.Sleep(ctx, d); serr != nil {
			return fmt.Errorf("%s %v: %w (while waiting to retry after: %v)", op, h, serr, err)
		}
	}
}

// attempt runs one attempt, under a stall watchdog if configured.
func (b *Backend) attempt(ctx context.Context, op string, fn func(ctx context.Context, w *watchdog) error) error {
	if b.opts.StallTimeout <= 0 {
		return fn(ctx, nil)
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := newWatchdog(b.opts.StallTimeout, func() { cancel(ErrStalled) })
	defer w.stop()
	err := fn(actx, w)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), ErrStalled) {
		return fmt.Errorf("%w (attempt error: %v)", &StallError{Op: op, Timeout: b.opts.StallTimeout}, err)
	}
	return err
}

// watchdog calls fire once no progress was reported for timeout.
type watchdog struct {
	timeout time.Duration
	last    atomic.Int64 // UnixNano of the last progress
	// mu guards timer and stopped.
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	fire    func()
}

func newWatchdog(timeout time.Duration, fire func()) *watchdog {
	w := &watchdog{timeout: timeout, fire: fire}
	w.last.Store(time.Now().UnixNano())
	w.mu.Lock()
	w.timer = time.AfterFunc(timeout, w.check)
	w.mu.Unlock()
	return w
}

// progress records that the attempt moved forward.
func (w *watchdog) progress() {
	if w != nil {
		w.last.Store(time.Now().UnixNano())
	}
}

func (w *watchdog) check() {
	idle := time.Since(time.Unix(0, w.last.Load()))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if idle < w.timeout {
		w.timer.Reset(w.timeout - idle)
		return
	}
	w.stopped = true
	w.fire()
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
}

// progressReader reports reads to a watchdog.
type progressReader struct {
	rd io.Reader
	w  *watchdog
}

func (r *progressReader) Read(p []byte) (int, error) {
	n, err := r.rd.Read(p)
	if n > 0 {
		r.w.progress()
	}
	return n, err
}

// progressRewindReader is a progressReader over a RewindReader.
type progressRewindReader struct {
	backend.RewindReader
	w *watchdog
}

func (r *progressRewindReader) Read(p []byte) (int, error) {
	n, err := r.RewindReader.Read(p)
	if n > 0 {
		r.w.progress()
	}
	return n, err
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := h.Valid(); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	tries := 0
	var earlier error // error of an earlier failed attempt of this call
	return b.run(ctx, "save", h, func(ctx context.Context, w *watchdog) error {
		tries++
		if tries > 1 {
			if err := rd.Rewind(); err != nil {
				return Permanent(fmt.Errorf("save %v: rewind for retry: %w", h, err))
			}
		}
		var r backend.RewindReader = rd
		if w != nil {
			r = &progressRewindReader{RewindReader: rd, w: w}
		}
		err := b.be.Save(ctx, h, r)
		if err == nil {
			return nil
		}
		if earlier != nil && errors.Is(err, backend.ErrAlreadyExists) {
			if ok, verr := b.landed(ctx, h, rd); verr != nil {
				return fmt.Errorf("save %v: %w (after an earlier attempt failed: %v)", h, verr, earlier)
			} else if ok {
				return nil
			}
			return fmt.Errorf("%w (an earlier attempt failed with %v, and the stored file differs)", err, earlier)
		}
		earlier = err
		return err
	})
}

// landed reports whether the file stored under h is the one rd holds. For
// content-addressed files the size suffices (the name is the hash of the
// content); the config is compared byte for byte.
func (b *Backend) landed(ctx context.Context, h backend.Handle, rd backend.RewindReader) (bool, error) {
	fi, err := b.be.Stat(ctx, h)
	if err != nil {
		return false, fmt.Errorf("stat to verify an earlier attempt: %w", err)
	}
	if fi.Size != rd.Length() {
		return false, nil
	}
	if h.Type != core.ConfigFile {
		return true, nil
	}
	if err := rd.Rewind(); err != nil {
		return false, fmt.Errorf("rewind: %w", err)
	}
	want, err := io.ReadAll(rd)
	if err != nil {
		return false, fmt.Errorf("read: %w", err)
	}
	got, err := backend.LoadAll(ctx, b.be, h)
	if err != nil {
		return false, fmt.Errorf("load to verify an earlier attempt: %w", err)
	}
	return bytes.Equal(got, want), nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	return b.run(ctx, "load", h, func(ctx context.Context, w *watchdog) error {
		called := false
		err := b.be.Load(ctx, h, length, offset, func(rd io.Reader) error {
			called = true
			if w != nil {
				rd = &progressReader{rd: rd, w: w}
			}
			return fn(rd)
		})
		if err != nil && !called && errors.Is(err, io.ErrUnexpectedEOF) {
			// The backend refused the range before sending anything: the
			// file is shorter than requested, and will stay so.
			return Permanent(err)
		}
		return err
	})
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	var fi backend.FileInfo
	err := b.run(ctx, "stat", h, func(ctx context.Context, _ *watchdog) error {
		var err error
		fi, err = b.be.Stat(ctx, h)
		return err
	})
	return fi, err
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	return b.run(ctx, "remove", h, func(ctx context.Context, _ *watchdog) error {
		return b.be.Remove(ctx, h)
	})
}

// callbackError carries an error returned by the caller's List fn.
type callbackError struct{ err error }

func (e *callbackError) Error() string   { return e.err.Error() }
func (e *callbackError) Unwrap() error   { return e.err }
func (e *callbackError) Permanent() bool { return true }

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	called := false
	err := b.run(ctx, "list", backend.Handle{Type: t}, func(ctx context.Context, w *watchdog) error {
		err := b.be.List(ctx, t, func(fi backend.FileInfo) error {
			called = true
			w.progress()
			if err := fn(fi); err != nil {
				return &callbackError{err: err}
			}
			return nil
		})
		if err != nil && called {
			var ce *callbackError
			if !errors.As(err, &ce) {
				// Entries were already delivered: a retry would repeat
				// them, so the listing fails as a whole.
				return Permanent(fmt.Errorf("list %v: failed after entries were delivered: %w", t, err))
			}
		}
		return err
	})
	var ce *callbackError
	if errors.As(err, &ce) {
		return ce.err
	}
	return err
}
