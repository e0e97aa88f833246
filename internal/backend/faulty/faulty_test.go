package faulty_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/backendtest"
	"github.com/cairn-backup/cairn/internal/backend/faulty"
	"github.com/cairn-backup/cairn/internal/backend/mem"
	"github.com/cairn-backup/cairn/internal/core"
)

func handleFor(ft core.FileType, data []byte) backend.Handle {
	sum := sha256.Sum256(data)
	return backend.Handle{Type: ft, Name: hex.EncodeToString(sum[:])}
}

func payload(i int) []byte { return []byte(fmt.Sprintf("payload number %d with some padding", i)) }

// assertRate checks that hits out of n trials are within 5 standard
// deviations of n·p (the seed is fixed, so the outcome is reproducible).
func assertRate(t *testing.T, what string, hits, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(hits)-mean) > 5*sd {
		t.Errorf("%s: %d of %d, want about %.0f (p=%.2f)", what, hits, n, mean, p)
	}
}

func TestNoFaultsConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return faulty.New(mem.New(), faulty.Config{}, 1)
	})
}

func TestSaveErrBefore(t *testing.T) {
	const n, p = 2000, 0.2
	inner := mem.New()
	be := faulty.New(inner, faulty.Config{Save: faulty.OpFaults{ErrBefore: p}}, 42)
	ctx := context.Background()
	fails := 0
	for i := 0; i < n; i++ {
		data := payload(i)
		h := handleFor(core.PackFile, data)
		err := be.Save(ctx, h, backend.NewByteReader(data))
		_, serr := inner.Stat(ctx, h)
		if err != nil {
			fails++
			if !errors.Is(err, faulty.ErrInjected) {
				t.Fatalf("error %v does not wrap ErrInjected", err)
			}
			if !errors.Is(serr, backend.ErrNotExist) {
				t.Fatalf("Save failed before taking effect, but %v is stored", h)
			}
		} else if serr != nil {
			t.Fatalf("Save succeeded but %v is not stored: %v", h, serr)
		}
	}
	assertRate(t, "save errors before", fails, n, p)
	if s := be.Stats(); s[faulty.SaveErrBefore] != fails || s[faulty.SaveCalls] != n {
		t.Errorf("stats %v, want %d errors in %d calls", s, fails, n)
	}
}

func TestSaveErrAfter(t *testing.T) {
	const n, p = 2000, 0.3
	inner := mem.New()
	be := faulty.New(inner, faulty.Config{Save: faulty.OpFaults{ErrAfter: p}}, 43)
	ctx := context.Background()
	fails := 0
	for i := 0; i < n; i++ {
		data := payload(i)
		h := handleFor(core.IndexFile, data)
		err := be.Save(ctx, h, backend.NewByteReader(data))
		if err != nil {
			fails++
			if !errors.Is(err, faulty.ErrInjected) {
				t.Fatalf("error %v does not wrap ErrInjected", err)
			}
		}
		// Either way the file landed: the lost-response case.
		got, lerr := backend.LoadAll(ctx, inner, h)
		if lerr != nil || !bytes.Equal(got, data) {
			t.Fatalf("%v not stored completely: %v", h, lerr)
		}
	}
	assertRate(t, "save errors after", fails, n, p)
}

func TestSaveTruncate(t *testing.T) {
	const n, p = 2000, 0.25
	inner := mem.New()
	be := faulty.New(inner, faulty.Config{SaveTruncate: p}, 44)
	ctx := context.Background()
	fails := 0
	for i := 0; i < n; i++ {
		data := payload(i)
		h := handleFor(core.SnapshotFile, data)
		err := be.Save(ctx, h, backend.NewByteReader(data))
		_, serr := inner.Stat(ctx, h)
		if err != nil {
			fails++
			if !errors.Is(err, faulty.ErrInjected) || errors.Is(err, faulty.ErrTruncatedStored) {
				t.Fatalf("truncated save: %v", err)
			}
			if !errors.Is(serr, backend.ErrNotExist) {
				t.Fatalf("truncated upload of %v was stored", h)
			}
		} else if serr != nil {
			t.Fatalf("Save succeeded but %v is not stored: %v", h, serr)
		}
	}
	assertRate(t, "truncated saves", fails, n, p)
}

// sloppy is a broken backend that stores whatever body it receives.
type sloppy struct{ *mem.Backend }

func (s sloppy) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	buf, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	return s.Backend.Save(ctx, h, backend.NewByteReader(buf))
}

func TestSaveTruncateDetectsSloppyBackend(t *testing.T) {
	be := faulty.New(sloppy{mem.New()}, faulty.Config{SaveTruncate: 1}, 1)
	data := payload(1)
	err := be.Save(context.Background(), handleFor(core.PackFile, data), backend.NewByteReader(data))
	if !errors.Is(err, faulty.ErrTruncatedStored) {
		t.Fatalf("got %v, want ErrTruncatedStored", err)
	}
}

func TestLoadTruncateAndBitFlip(t *testing.T) {
	const n = 2000
	const pt, pf = 0.2, 0.3
	inner := mem.New()
	data := bytes.Repeat([]byte("0123456789abcdef"), 64)
	h := handleFor(core.PackFile, data)
	if err := inner.Save(context.Background(), h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	be := faulty.New(inner, faulty.Config{LoadTruncate: pt, LoadBitFlip: pf}, 45)
	truncated, flipped := 0, 0
	for i := 0; i < n; i++ {
		got, err := backend.LoadAll(context.Background(), be, h)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > len(data) {
			t.Fatalf("load grew the data to %d bytes", len(got))
		}
		want := data[:len(got)]
		if len(got) < len(data) {
			truncated++
		}
		diff := 0
		for j := range got {
			diff += bits.OnesCount8(got[j] ^ want[j])
		}
		switch diff {
		case 0:
		case 1:
			flipped++
		default:
			t.Fatalf("load differs in %d bits, want at most 1", diff)
		}
	}
	assertRate(t, "truncated loads", truncated, n, pt)
	// A flip can land in the cut-off part only if it is drawn after the
	// cut, which it is not: it always hits the data fn sees.
	assertRate(t, "bit flips", flipped, n, pf)
	// The stored file is untouched.
	got, err := backend.LoadAll(context.Background(), inner, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored data changed: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	const n, p = 2000, 0.2
	inner := mem.New()
	data := payload(7)
	h := handleFor(core.IndexFile, data)
	if err := inner.Save(context.Background(), h, backend.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	be := faulty.New(inner, faulty.Config{Load: faulty.OpFaults{ErrBefore: p, ErrAfter: p}}, 46)
	before, after := 0, 0
	for i := 0; i < n; i++ {
		called := false
		err := be.Load(context.Background(), h, 0, 0, func(rd io.Reader) error { called = true; return nil })
		switch {
		case err == nil:
			if !called {
				t.Fatal("successful Load did not call fn")
			}
		case !errors.Is(err, faulty.ErrInjected):
			t.Fatalf("Load: %v", err)
		case called:
			after++
		default:
			before++
		}
	}
	assertRate(t, "load errors before", before, n, p)
	assertRate(t, "load errors after", after, n, (1-p)*p)
}

func TestStatRemoveListErrors(t *testing.T) {
	const n, p = 1500, 0.25
	inner := mem.New()
	ctx := context.Background()
	var hs []backend.Handle
	for i := 0; i < n; i++ {
		data := payload(i)
		h := handleFor(core.LockFile, data)
		if err := inner.Save(ctx, h, backend.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	be := faulty.New(inner, faulty.Config{
		Stat:   faulty.OpFaults{ErrBefore: p},
		Remove: faulty.OpFaults{ErrAfter: p},
		List:   faulty.OpFaults{ErrBefore: p, ErrAfter: p},
	}, 47)
	statFails := 0
	for _, h := range hs {
		if _, err := be.Stat(ctx, h); err != nil {
			if !errors.Is(err, faulty.ErrInjected) {
				t.Fatal(err)
			}
			statFails++
		}
	}
	assertRate(t, "stat errors", statFails, n, p)

	const lists = 1000
	listBefore, listAfter := 0, 0
	for i := 0; i < lists; i++ {
		seen := 0
		prev := be.Stats()[faulty.ListErrBefore]
		err := be.List(ctx, core.LockFile, func(backend.FileInfo) error { seen++; return nil })
		switch {
		case err == nil:
			if seen != n {
				t.Fatalf("successful List delivered %d of %d entries", seen, n)
			}
		case !errors.Is(err, faulty.ErrInjected):
			t.Fatal(err)
		case be.Stats()[faulty.ListErrBefore] > prev:
			if seen != 0 {
				t.Fatalf("List failing before listing delivered %d entries", seen)
			}
			listBefore++
		default:
			if seen >= n {
				t.Fatalf("List failing midway delivered all %d entries", seen)
			}
			listAfter++
		}
	}
	assertRate(t, "list errors before", listBefore, lists, p)
	assertRate(t, "list errors after", listAfter, lists, (1-p)*p)

	removeFails := 0
	for _, h := range hs {
		err := be.Remove(ctx, h)
		if err != nil {
			if !errors.Is(err, faulty.ErrInjected) {
				t.Fatal(err)
			}
			removeFails++
		}
		if _, err := inner.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
			t.Fatalf("Remove %v did not take effect: %v", h, err)
		}
	}
	assertRate(t, "remove errors after", removeFails, n, p)
}

func TestDelay(t *testing.T) {
	const n, p = 1000, 0.4
	const maxDelay = 50 * time.Millisecond
	var mu sync.Mutex
	var delays []time.Duration
	cfg := faulty.Config{
		Stat:     faulty.OpFaults{Delay: p},
		MaxDelay: maxDelay,
		Sleep: func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			delays = append(delays, d)
			mu.Unlock()
			return nil
		},
	}
	be := faulty.New(mem.New(), cfg, 48)
	for i := 0; i < n; i++ {
		if _, err := be.Stat(context.Background(), handleFor(core.PackFile, payload(i))); !errors.Is(err, backend.ErrNotExist) {
			t.Fatal(err)
		}
	}
	assertRate(t, "delays", len(delays), n, p)
	var sum time.Duration
	for _, d := range delays {
		if d < 0 || d > maxDelay {
			t.Fatalf("delay %v outside [0, %v]", d, maxDelay)
		}
		sum += d
	}
	if mean := sum / time.Duration(len(delays)); mean < maxDelay/4 || mean > 3*maxDelay/4 {
		t.Errorf("mean delay %v, want about %v", mean, maxDelay/2)
	}
	// A real delay honours cancellation.
	be = faulty.New(mem.New(), faulty.Config{Stat: faulty.OpFaults{Delay: 1}, MaxDelay: time.Hour}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := be.Stat(ctx, handleFor(core.PackFile, payload(1))); !errors.Is(err, context.Canceled) {
		t.Fatalf("delayed Stat with a cancelled context: %v", err)
	}
}

// outcomes runs a fixed sequence of calls and records which failed.
func outcomes(seed int64) string {
	cfg := faulty.Config{
		Save:         faulty.OpFaults{ErrBefore: 0.1, ErrAfter: 0.1},
		SaveTruncate: 0.1,
		Load:         faulty.OpFaults{ErrBefore: 0.1},
		LoadBitFlip:  0.2,
		Remove:       faulty.OpFaults{ErrAfter: 0.2},
	}
	be := faulty.New(mem.New(), cfg, seed)
	ctx := context.Background()
	var out []byte
	for i := 0; i < 300; i++ {
		data := payload(i)
		h := handleFor(core.PackFile, data)
		mark := func(err error) {
			if err != nil {
				out = append(out, 'x')
			} else {
				out = append(out, '.')
			}
		}
		mark(be.Save(ctx, h, backend.NewByteReader(data)))
		got, err := backend.LoadAll(ctx, be, h)
		if err == nil && !bytes.Equal(got, data) {
			out = append(out, 'f')
		} else {
			mark(err)
		}
		if i%3 == 0 {
			mark(be.Remove(ctx, h))
		}
	}
	return string(out)
}

func TestDeterministic(t *testing.T) {
	a, b, c := outcomes(7), outcomes(7), outcomes(8)
	if a != b {
		t.Error("same seed, different faults")
	}
	if a == c {
		t.Error("different seeds, identical faults")
	}
	if !bytes.ContainsAny([]byte(a), "xf") {
		t.Error("no faults injected at all")
	}
}

func TestCrashPoints(t *testing.T) {
	ctx := context.Background()
	var points []string
	crash := errors.New("simulated crash")
	crashAt := ""
	inner := mem.New()
	be := faulty.New(inner, faulty.Config{OnOp: func(op string, h backend.Handle) error {
		points = append(points, op)
		if op == crashAt {
			return crash
		}
		return nil
	}}, 1)
	data := payload(1)
	h := handleFor(core.SnapshotFile, data)

	crashAt = faulty.PointSaveBefore
	if err := be.Save(ctx, h, backend.NewByteReader(data)); !errors.Is(err, crash) {
		t.Fatalf("crash before save: %v", err)
	}
	if _, err := inner.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
		t.Fatal("save happened despite a crash before it")
	}
	crashAt = faulty.PointSaveAfter
	if err := be.Save(ctx, h, backend.NewByteReader(data)); !errors.Is(err, crash) {
		t.Fatalf("crash after save: %v", err)
	}
	if _, err := inner.Stat(ctx, h); err != nil {
		t.Fatal("a crash after save lost the file")
	}
	crashAt = faulty.PointRemoveAfter
	if err := be.Remove(ctx, h); !errors.Is(err, crash) {
		t.Fatalf("crash after remove: %v", err)
	}
	if _, err := inner.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
		t.Fatal("remove did not happen before the crash point after it")
	}
	crashAt = ""
	_, _ = be.Stat(ctx, h)
	_ = be.List(ctx, core.SnapshotFile, func(backend.FileInfo) error { return nil })
	_ = be.Save(ctx, h, backend.NewByteReader(data))
	_, _ = backend.LoadAll(ctx, be, h)
	_, _ = be.Stat(ctx, h)
	want := []string{
		"save:before",
		"save:before", "save:after",
		"remove:before", "remove:after",
		"stat:before", // missing file: no after point
		"list:before", "list:after",
		"save:before", "save:after",
		"load:before", "load:after",
		"stat:before", "stat:after",
	}
	if fmt.Sprint(points) != fmt.Sprint(want) {
		t.Errorf("crash points\n got %v\nwant %v", points, want)
	}
}
