package limiter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/backendtest"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

func handleFor(ft core.FileType, data []byte) backend.Handle {
	sum := sha256.Sum256(data)
	return backend.Handle{Type: ft, Name: hex.EncodeToString(sum[:])}
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return New(mem.New(), 400<<20, 400<<20, 4)
	})
}

// fakeClock makes a bucket's sleeps advance time instantly.
type fakeClock struct {
	mu    sync.Mutex // guards now and slept
	now   time.Time
	slept time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.slept += d
	return ctx.Err()
}

func useFakeClock(b *bucket) *fakeClock {
	c := &fakeClock{now: time.Unix(1_000_000, 0)}
	b.now, b.sleep = c.Now, c.Sleep
	b.last = c.now
	return c
}

func TestRates(t *testing.T) {
	ctx := context.Background()
	const up, down = 100 << 10, 300 << 10
	l := New(mem.New(), up, down, 2)
	upClock, downClock := useFakeClock(l.up), useFakeClock(l.down)

	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	h := handleFor(core.PackFile, data)
	if err := l.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	// The first burst is free; the rest flows at the rate.
	check := func(what string, c *fakeClock, rate int64, burst float64, chunk int) {
		t.Helper()
		want := time.Duration((float64(len(data)) - burst) / float64(rate) * float64(time.Second))
		slack := time.Duration(float64(chunk) / float64(rate) * float64(time.Second))
		if c.slept < want-slack || c.slept > want+slack {
			t.Errorf("%s of %d bytes at %d B/s waited %v, want %v ± %v", what, len(data), rate, c.slept, want, slack)
		}
	}
	check("upload", upClock, up, l.up.burst, l.up.chunk)
	if downClock.slept != 0 {
		t.Errorf("upload used the download bucket")
	}
	got, err := backend.LoadAll(ctx, l, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load: %v", err)
	}
	check("download", downClock, down, l.down.burst, l.down.chunk)

	// Unlimited directions add no wrapper.
	u := New(mem.New(), 0, -1, 0)
	if u.up != nil || u.down != nil {
		t.Error("non-positive rates must mean unlimited")
	}
	if u.Connections() != mem.New().Connections() {
		t.Errorf("Connections %d, want the wrapped backend's", u.Connections())
	}
}

func TestRateRefills(t *testing.T) {
	ctx := context.Background()
	b := newBucket(1000)
	c := useFakeClock(b)
	// Drain the burst, then idle: the bucket refills up to the burst only.
	if err := b.take(ctx, int(b.burst)); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.now = c.now.Add(time.Hour)
	c.mu.Unlock()
	if err := b.take(ctx, int(b.burst)); err != nil {
		t.Fatal(err)
	}
	if c.slept != 0 {
		t.Fatalf("waited %v after a full refill", c.slept)
	}
	if err := b.take(ctx, 500); err != nil {
		t.Fatal(err)
	}
	if c.slept != 500*time.Millisecond {
		t.Fatalf("waited %v for 500 bytes at 1000 B/s with an empty bucket, want 500ms", c.slept)
	}
}

func TestRateWaitHonoursContext(t *testing.T) {
	l := New(mem.New(), 1, 0, 1) // one byte per second
	data := bytes.Repeat([]byte{1}, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Save(ctx, handleFor(core.PackFile, data), backend.NewByteReader(data)) }()
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Save at 1 B/s with a cancelled context succeeded")
	}
}

// gate counts calls in flight and blocks them until released.
type gate struct {
	*mem.Backend
	mu       sync.Mutex // guards inflight and max
	inflight int
	max      int
	entered  chan struct{}
	release  chan struct{}
}

func (g *gate) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	g.mu.Lock()
	g.inflight++
	if g.inflight > g.max {
		g.max = g.inflight
	}
	g.mu.Unlock()
	g.entered <- struct{}{}
	<-g.release
	g.mu.Lock()
	g.inflight--
	g.mu.Unlock()
	return backend.FileInfo{}, nil
}

func TestConcurrencyBound(t *testing.T) {
	const bound, callers = 3, 12
	g := &gate{Backend: mem.New(), entered: make(chan struct{}, callers), release: make(chan struct{})}
	l := New(g, 0, 0, bound)
	if l.Connections() != bound {
		t.Fatalf("Connections %d, want %d", l.Connections(), bound)
	}
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Stat(context.Background(), handleFor(core.PackFile, []byte("x"))); err != nil {
				t.Error(err)
			}
		}()
	}
	// Wait until the bound is reached; then a call waiting for a slot
	// gives up when its context ends.
	for i := 0; i < bound; i++ {
		<-g.entered
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Stat(ctx, handleFor(core.PackFile, []byte("y"))); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat waiting for a slot with a cancelled context: %v", err)
	}
	// Let the calls through one at a time.
	for i := 0; i < callers; i++ {
		g.release <- struct{}{}
		if i < callers-bound {
			<-g.entered
		}
	}
	wg.Wait()
	if g.max != bound {
		t.Fatalf("%d calls were in flight at once, want %d", g.max, bound)
	}
}

func TestLoadHoldsSlotDuringFn(t *testing.T) {
	ctx := context.Background()
	m := mem.New()
	data := []byte("slot")
	h := handleFor(core.IndexFile, data)
	if err := m.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	l := New(m, 0, 1<<30, 1)
	err := l.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		// The only slot is taken: another call must wait (here: give up).
		tctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := l.Stat(tctx, h); !errors.Is(err, context.Canceled) {
			t.Errorf("Stat during a Load's fn: %v", err)
		}
		_, err := io.ReadAll(rd)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
