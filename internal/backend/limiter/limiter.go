// Package limiter wraps a backend.Backend with bandwidth limits for upload
// and download bodies (token buckets) and a bound on concurrent calls.
//
// Place it below the retry decorator (retry.New(limiter.New(be, ...))), so
// that back-off sleeps do not hold a connection slot.
package limiter

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// Backend limits the calls of the backend it wraps.
type Backend struct {
	be   backend.Backend
	up   *bucket // nil: unlimited
	down *bucket // nil: unlimited
	sem  chan struct{}
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Creator = (*Backend)(nil)
)

// New wraps be. uploadBytesPerSec and downloadBytesPerSec limit the bytes
// of Save and Load bodies per second (0 or less: unlimited).
// maxConcurrent bounds the calls in flight at once (0 or less: the wrapped
// backend's Connections()). A Load holds its slot while fn runs, and a List
// while it calls fn: fn must not wait for other calls of the same Backend
// when every slot may be taken.
func New(be backend.Backend, uploadBytesPerSec, downloadBytesPerSec int64, maxConcurrent int) *Backend {
	if maxConcurrent <= 0 {
		maxConcurrent = int(be.Connections())
	}
	if maxConcurrent <= 0 {
		maxConcurrent = 1
	}
	return &Backend{
		be:   be,
		up:   newBucket(uploadBytesPerSec),
		down: newBucket(downloadBytesPerSec),
		sem:  make(chan struct{}, maxConcurrent),
	}
}

func (b *Backend) acquire(ctx context.Context) error {
	select {
	case b.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Backend) release() { <-b.sem }

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.be.Location() }

// Connections implements backend.Backend: the bound on concurrent calls.
func (b *Backend) Connections() uint { return uint(cap(b.sem)) }

// Close implements backend.Backend.
func (b *Backend) Close() error { return b.be.Close() }

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() backend.Backend { return b.be }

// Create implements backend.Creator by forwarding to the wrapped backend
// (backends that need no creation step succeed at once).
func (b *Backend) Create(ctx context.Context) error {
	c, ok := b.be.(backend.Creator)
	if !ok {
		return nil
	}
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer b.release()
	return c.Create(ctx)
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	defer b.release()
	if b.up != nil {
		rd = &limitedRewindReader{RewindReader: rd, r: limitedReader{ctx: ctx, rd: rd, b: b.up}}
	}
	return b.be.Save(ctx, h, rd)
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer b.release()
	if b.down == nil {
		return b.be.Load(ctx, h, length, offset, fn)
	}
	return b.be.Load(ctx, h, length, offset, func(rd io.Reader) error {
		return fn(&limitedReader{ctx: ctx, rd: rd, b: b.down})
	})
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := b.acquire(ctx); err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, err)
	}
	defer b.release()
	return b.be.Stat(ctx, h)
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	defer b.release()
	return b.be.List(ctx, t, fn)
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("remove %v: %w", h, err)
	}
	defer b.release()
	return b.be.Remove(ctx, h)
}

// bucket is a token bucket shared by all transfers in one direction. Tokens
// may go negative: a reader takes what it read and then waits until the
// debt is paid back, so concurrent readers share the rate fairly.
type bucket struct {
	rate  float64 // bytes per second
	burst float64 // bucket capacity in bytes
	chunk int     // largest read passed through at once
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu     sync.Mutex // guards tokens and last
	tokens float64
	last   time.Time
}

func newBucket(rate int64) *bucket {
	if rate <= 0 {
		return nil
	}
	burst := min(max(rate/4, 4<<10), 256<<10)
	b := &bucket{
		rate:  float64(rate),
		burst: float64(burst),
		chunk: int(min(burst, 32<<10)),
		now:   time.Now,
		sleep: backend.Sleep,
	}
	b.tokens = b.burst
	b.last = b.now()
	return b
}

// take removes n tokens and waits until the bucket is out of debt.
func (b *bucket) take(ctx context.Context, n int) error {
	b.mu.Lock()
	now := b.now()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+el.Seconds()*b.rate)
	}
	b.last = now
	b.tokens -= float64(n)
	var wait time.Duration
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	return b.sleep(ctx, wait)
}

// limitedReader passes reads of rd through bucket b.
type limitedReader struct {
	ctx context.Context
	rd  io.Reader
	b   *bucket
}

func (r *limitedReader) Read(p []byte) (int, error) {
	if len(p) > r.b.chunk {
		p = p[:r.b.chunk]
	}
	n, err := r.rd.Read(p)
	if n > 0 {
		if werr := r.b.take(r.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// limitedRewindReader is a limitedReader over a RewindReader.
type limitedRewindReader struct {
	backend.RewindReader
	r limitedReader
}

func (r *limitedRewindReader) Read(p []byte) (int, error) { return r.r.Read(p) }
