// Package faulty wraps a backend.Backend with seeded, reproducible fault
// injection: errors before or after an operation took effect (the latter is
// the classic lost response), delays, uploads cut off in transit, truncated
// or bit-flipped downloads, and named crash points. It models an unreliable
// network or server in front of a correct backend: the wrapped backend
// itself stays atomic, so a cut-off upload must fail and never be stored.
//
// Decisions are drawn from one mutex-guarded random source seeded by the
// caller, in call order: a single goroutine issuing the same calls sees the
// same faults for the same seed.
package faulty

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// OpFaults are the probabilities (0 to 1) of faults for one operation.
type OpFaults struct {
	// ErrBefore fails the call without performing the operation.
	ErrBefore float64
	// ErrAfter performs the operation and then reports a failure. For
	// List, the failure comes after a random number of entries (possibly
	// all of them) were delivered.
	ErrAfter float64
	// Delay sleeps a random duration up to Config.MaxDelay first.
	Delay float64
}

// Config selects the faults to inject.
type Config struct {
	Save, Load, Stat, List, Remove OpFaults

	// SaveTruncate cuts an upload off in transit: the wrapped backend gets
	// a body that ends early (while Length still announces the full size)
	// and must refuse it.
	SaveTruncate float64
	// LoadTruncate makes fn see the requested data cut short, ending with a
	// clean EOF, as from a broken proxy.
	LoadTruncate float64
	// LoadBitFlip flips one random bit of the data fn sees.
	LoadBitFlip float64

	// MaxDelay bounds injected delays (default 10ms).
	MaxDelay time.Duration
	// Sleep waits for d or until ctx is done (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error

	// OnOp, if set, is called at every crash point (see the Point
	// constants) with the handle concerned (for List: only its type). A
	// non-nil error aborts the call with that error; at an "after" point
	// the operation has already taken effect. Tests use it to simulate a
	// crash at a precise moment, or to count operations.
	OnOp func(op string, h backend.Handle) error
}

// Crash points passed to Config.OnOp.
const (
	PointSaveBefore   = "save:before"
	PointSaveAfter    = "save:after"
	PointLoadBefore   = "load:before"
	PointLoadAfter    = "load:after"
	PointStatBefore   = "stat:before"
	PointStatAfter    = "stat:after"
	PointListBefore   = "list:before"
	PointListAfter    = "list:after"
	PointRemoveBefore = "remove:before"
	PointRemoveAfter  = "remove:after"
)

// Fault names one kind of injected fault, for Stats.
type Fault string

// Faults counted by Stats. Calls counts every call of an operation, faulty
// or not; the others count injected faults.
const (
	SaveCalls     Fault = "save.calls"
	SaveErrBefore Fault = "save.err-before"
	SaveErrAfter  Fault = "save.err-after"
	SaveDelay     Fault = "save.delay"
	SaveTruncate  Fault = "save.truncate"

	LoadCalls     Fault = "load.calls"
	LoadErrBefore Fault = "load.err-before"
	LoadErrAfter  Fault = "load.err-after"
	LoadDelay     Fault = "load.delay"
	LoadTruncate  Fault = "load.truncate"
	LoadBitFlip   Fault = "load.bitflip"

	StatCalls     Fault = "stat.calls"
	StatErrBefore Fault = "stat.err-before"
	StatErrAfter  Fault = "stat.err-after"
	StatDelay     Fault = "stat.delay"

	ListCalls     Fault = "list.calls"
	ListErrBefore Fault = "list.err-before"
	ListErrAfter  Fault = "list.err-after"
	ListDelay     Fault = "list.delay"

	RemoveCalls     Fault = "remove.calls"
	RemoveErrBefore Fault = "remove.err-before"
	RemoveErrAfter  Fault = "remove.err-after"
	RemoveDelay     Fault = "remove.delay"
)

// ErrInjected is wrapped by every error this package injects.
var ErrInjected = errors.New("injected fault")

// ErrTruncatedStored is wrapped by the error reported when the wrapped
// backend accepted an upload that was cut off: a contract violation.
var ErrTruncatedStored = errors.New("backend stored a truncated upload")

// Backend injects faults into the calls of the backend it wraps.
type Backend struct {
	be  backend.Backend
	cfg Config

	// mu guards rng and stats.
	mu    sync.Mutex
	rng   *rand.Rand
	stats map[Fault]int
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Creator = (*Backend)(nil)
)

// New wraps be with the faults of cfg, drawn from a source seeded by seed.
func New(be backend.Backend, cfg Config, seed int64) *Backend {
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 10 * time.Millisecond
	}
	if cfg.Sleep == nil {
		cfg.Sleep = backend.Sleep
	}
	return &Backend{
		be:    be,
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
		stats: make(map[Fault]int),
	}
}

// Stats returns how often each fault was injected (and each operation
// called) so far.
func (b *Backend) Stats() map[Fault]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[Fault]int, len(b.stats))
	for k, v := range b.stats {
		out[k] = v
	}
	return out
}

func (b *Backend) count(f Fault) {
	b.mu.Lock()
	b.stats[f]++
	b.mu.Unlock()
}

// roll reports whether an event of probability p happens, counting it as f.
// It draws from the source only when 0 < p < 1, so that disabled faults do
// not shift the sequence of the enabled ones.
func (b *Backend) roll(p float64, f Fault) bool {
	if p <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	hit := p >= 1 || b.rng.Float64() < p
	if hit {
		b.stats[f]++
	}
	return hit
}

// intN draws a uniform integer in [0, n).
func (b *Backend) intN(n int64) int64 {
	if n <= 1 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rng.Int64N(n)
}

func injected(what string, h backend.Handle) error {
	return fmt.Errorf("faulty: %s %v: %w", what, h, ErrInjected)
}

func (b *Backend) point(name string, h backend.Handle) error {
	if b.cfg.OnOp == nil {
		return nil
	}
	if err := b.cfg.OnOp(name, h); err != nil {
		return fmt.Errorf("faulty: crash point %s %v: %w", name, h, err)
	}
	return nil
}

// before runs the common prologue of an operation: the crash point, an
// optional delay and an optional error.
func (b *Backend) before(ctx context.Context, point string, h backend.Handle, f OpFaults, delay, errBefore Fault) error {
	if err := b.point(point, h); err != nil {
		return err
	}
	if b.roll(f.Delay, delay) {
		d := time.Duration(b.intN(int64(b.cfg.MaxDelay) + 1))
		if err := b.cfg.Sleep(ctx, d); err != nil {
			return err
		}
	}
	if b.roll(f.ErrBefore, errBefore) {
		return injected("error before "+point, h)
	}
	return nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return "faulty:" + b.be.Location() }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return b.be.Connections() }

// Close implements backend.Backend.
func (b *Backend) Close() error { return b.be.Close() }

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() backend.Backend { return b.be }

// Create implements backend.Creator by forwarding to the wrapped backend
// (backends that need no creation step succeed at once).
func (b *Backend) Create(ctx context.Context) error {
	if c, ok := b.be.(backend.Creator); ok {
		return c.Create(ctx)
	}
	return nil
}

// cutReader delivers only the first n bytes of rd, then a clean EOF, while
// still announcing rd's full length.
type cutReader struct {
	backend.RewindReader
	n, pos int64
}

func (r *cutReader) Read(p []byte) (int, error) {
	if r.pos >= r.n {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n-r.pos {
		p = p[:r.n-r.pos]
	}
	k, err := r.RewindReader.Read(p)
	r.pos += int64(k)
	return k, err
}

func (r *cutReader) Rewind() error { r.pos = 0; return r.RewindReader.Rewind() }

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	b.count(SaveCalls)
	if err := b.before(ctx, PointSaveBefore, h, b.cfg.Save, SaveDelay, SaveErrBefore); err != nil {
		return err
	}
	if rd.Length() > 0 && b.roll(b.cfg.SaveTruncate, SaveTruncate) {
		n := b.intN(rd.Length())
		err := b.be.Save(ctx, h, &cutReader{RewindReader: rd, n: n})
		switch {
		case err == nil:
			return fmt.Errorf("faulty: save %v: upload cut off after %d of %d bytes: %w", h, n, rd.Length(), ErrTruncatedStored)
		case errors.Is(err, backend.ErrAlreadyExists):
			// The backend refused before reading the body.
			return err
		}
		return fmt.Errorf("faulty: save %v: upload cut off after %d of %d bytes: %w (backend said: %v)", h, n, rd.Length(), ErrInjected, err)
	}
	if err := b.be.Save(ctx, h, rd); err != nil {
		return err
	}
	if b.roll(b.cfg.Save.ErrAfter, SaveErrAfter) {
		return injected("response lost after save", h)
	}
	return b.point(PointSaveAfter, h)
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	b.count(LoadCalls)
	if err := b.before(ctx, PointLoadBefore, h, b.cfg.Load, LoadDelay, LoadErrBefore); err != nil {
		return err
	}
	truncate := b.cfg.LoadTruncate > 0
	flip := b.cfg.LoadBitFlip > 0
	err := b.be.Load(ctx, h, length, offset, func(rd io.Reader) error {
		if !truncate && !flip {
			return fn(rd)
		}
		buf, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if len(buf) > 0 && b.roll(b.cfg.LoadTruncate, LoadTruncate) {
			buf = buf[:b.intN(int64(len(buf)))]
		}
		if len(buf) > 0 && b.roll(b.cfg.LoadBitFlip, LoadBitFlip) {
			bit := b.intN(int64(len(buf)) * 8)
			buf = bytes.Clone(buf)
			buf[bit/8] ^= 1 << (bit % 8)
		}
		return fn(bytes.NewReader(buf))
	})
	if err != nil {
		return err
	}
	if b.roll(b.cfg.Load.ErrAfter, LoadErrAfter) {
		return injected("error after load", h)
	}
	return b.point(PointLoadAfter, h)
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	b.count(StatCalls)
	if err := b.before(ctx, PointStatBefore, h, b.cfg.Stat, StatDelay, StatErrBefore); err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := b.be.Stat(ctx, h)
	if err != nil {
		return fi, err
	}
	if b.roll(b.cfg.Stat.ErrAfter, StatErrAfter) {
		return backend.FileInfo{}, injected("error after stat", h)
	}
	return fi, b.point(PointStatAfter, h)
}

// errListCut stops the wrapped List when an injected failure is due.
var errListCut = errors.New("listing cut")

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	b.count(ListCalls)
	h := backend.Handle{Type: t}
	if err := b.before(ctx, PointListBefore, h, b.cfg.List, ListDelay, ListErrBefore); err != nil {
		return err
	}
	cut := int64(-1)
	if b.roll(b.cfg.List.ErrAfter, ListErrAfter) {
		cut = b.intN(64)
	}
	delivered := int64(0)
	err := b.be.List(ctx, t, func(fi backend.FileInfo) error {
		if delivered == cut {
			return errListCut
		}
		delivered++
		return fn(fi)
	})
	if errors.Is(err, errListCut) || (err == nil && cut >= 0) {
		return fmt.Errorf("faulty: list %v failed after %d entries: %w", t, delivered, ErrInjected)
	}
	if err != nil {
		return err
	}
	return b.point(PointListAfter, h)
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	b.count(RemoveCalls)
	if err := b.before(ctx, PointRemoveBefore, h, b.cfg.Remove, RemoveDelay, RemoveErrBefore); err != nil {
		return err
	}
	if err := b.be.Remove(ctx, h); err != nil {
		return err
	}
	if b.roll(b.cfg.Remove.ErrAfter, RemoveErrAfter) {
		return injected("response lost after remove", h)
	}
	return b.point(PointRemoveAfter, h)
}
