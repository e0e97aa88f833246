// Package bufpool recycles byte buffers by power-of-two size class, so hot
// paths (chunking, sealing, packing) do not allocate and zero fresh memory
// for every blob. A buffer must only be Put back once nothing references it
// any more (in particular, after a save of it has returned).
//
// Buffers are kept in two tiers. The first, off unless SetRetain enables
// it, is a free list per size class that survives garbage collections,
// bounded by a byte budget: the
// pipelines' working set (a few chunks per worker) stays allocated instead
// of being dropped at every collection, handed back to the kernel by the
// scavenger and faulted in again (measured: a full backup of the benchmark
// corpus allocated 1.2 GB through a plain sync.Pool, with 140-270 k page
// faults, which on VMs that return free memory to the host cost seconds of
// system time). Buffers beyond the budget go to a sync.Pool, which the
// collector may empty.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 12 // 4 KiB
	maxShift = 25 // 32 MiB
	nClasses = maxShift - minShift + 1
)

var (
	pools [nClasses]sync.Pool

	// mu guards free, retained and budget.
	mu sync.Mutex
	// free holds, per size class, buffers kept across collections.
	free [nClasses][][]byte
	// retained is the total capacity of the buffers in free.
	retained int
	// budget bounds retained (0: no free lists, only the sync.Pool).
	budget int
)

// SetRetain sets how many bytes of buffers the free lists may keep across
// garbage collections; 0 (the default) keeps none. Lowering it releases
// what is above the new budget. The caller should allow for the budget in
// its memory limit: retained buffers are live heap.
func SetRetain(n int) {
	mu.Lock()
	defer mu.Unlock()
	budget = max(n, 0)
	for c := nClasses - 1; c >= 0 && retained > budget; c-- {
		for len(free[c]) > 0 && retained > budget {
			k := len(free[c]) - 1
			retained -= cap(free[c][k])
			free[c][k] = nil
			free[c] = free[c][:k]
		}
	}
}

func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}

// Get returns a buffer of length n (contents undefined).
func Get(n int) []byte {
	c := class(n)
	if c >= nClasses {
		return make([]byte, n)
	}
	mu.Lock()
	if k := len(free[c]); k > 0 {
		b := free[c][k-1]
		free[c][k-1] = nil
		free[c] = free[c][:k-1]
		retained -= cap(b)
		mu.Unlock()
		return b[:n]
	}
	mu.Unlock()
	if b, ok := pools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(c+minShift))
}

// Put returns b to its size class. Buffers of odd capacity are dropped.
func Put(b []byte) {
	c := cap(b)
	if c < 1<<minShift || c&(c-1) != 0 {
		return
	}
	k := bits.Len(uint(c)) - 1 - minShift
	if k >= nClasses {
		return
	}
	b = b[:0]
	mu.Lock()
	if retained+c <= budget {
		free[k] = append(free[k], b)
		retained += c
		mu.Unlock()
		return
	}
	mu.Unlock()
	pools[k].Put(&b)
}
