package bufpool

import (
	"runtime"
	"sync"
	"testing"
)

func TestGetPut(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 4097, 1 << 20, 5<<20 + 3, 1 << 25, 1<<25 + 1} {
		b := Get(n)
		if len(b) != n {
			t.Fatalf("Get(%d) has length %d", n, len(b))
		}
		if n <= 1<<25 && cap(b)&(cap(b)-1) != 0 {
			t.Fatalf("Get(%d) capacity %d is not a power of two", n, cap(b))
		}
		Put(b)
		c := Get(n)
		if len(c) != n {
			t.Fatal("reused buffer has the wrong length")
		}
	}
	Put(make([]byte, 100, 100)) // odd capacity: ignored
}

func BenchmarkGetPut(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Put(Get(1 << 20))
	}
}

// TestRetainSurvivesGC: with a budget, buffers put back are handed out
// again after garbage collections (a sync.Pool alone may lose them), and
// the free lists never hold more than the budget.
func TestRetainSurvivesGC(t *testing.T) {
	SetRetain(3 << 20)
	defer SetRetain(0)
	a, b := Get(1<<20), Get(1<<20)
	c := Get(2 << 20)
	pa, pb := &a[:1][0], &b[:1][0]
	Put(a)
	Put(b)
	Put(c) // over the budget (1+1+2 MiB > 3 MiB): goes to the sync.Pool
	mu.Lock()
	if retained != 2<<20 || len(free[class(1<<20)]) != 2 || len(free[class(2<<20)]) != 0 {
		t.Errorf("retained %d bytes, free lists %d/%d; want 2 MiB in two 1 MiB buffers",
			retained, len(free[class(1<<20)]), len(free[class(2<<20)]))
	}
	mu.Unlock()
	runtime.GC()
	runtime.GC()
	x, y := Get(1<<20-5), Get(1<<20)
	got := map[*byte]bool{&x[:1][0]: true, &y[:1][0]: true}
	if !got[pa] || !got[pb] {
		t.Error("retained buffers were not handed out again after GC")
	}
	if len(x) != 1<<20-5 {
		t.Errorf("length %d", len(x))
	}
	Put(x)
	Put(y)
	SetRetain(1 << 20) // lowering releases what is above
	mu.Lock()
	if retained != 1<<20 {
		t.Errorf("after SetRetain(1 MiB) %d bytes retained", retained)
	}
	mu.Unlock()
	SetRetain(0)
	mu.Lock()
	if retained != 0 {
		t.Errorf("after SetRetain(0) %d bytes retained", retained)
	}
	mu.Unlock()
	Put(Get(1 << 20))
	mu.Lock()
	if retained != 0 {
		t.Errorf("budget 0 retained %d bytes", retained)
	}
	mu.Unlock()
}

// TestRetainConcurrent: concurrent Get/Put with a small budget keep the
// books straight (run with -race).
func TestRetainConcurrent(t *testing.T) {
	SetRetain(1 << 20)
	defer SetRetain(0)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				b := Get(4096 << (i % 6))
				b[0] = byte(i)
				Put(b)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	sum := 0
	for c := range free {
		for _, b := range free[c] {
			sum += cap(b)
		}
	}
	if sum != retained || retained > 1<<20 {
		t.Errorf("free lists hold %d bytes, books say %d, budget 1 MiB", sum, retained)
	}
}
