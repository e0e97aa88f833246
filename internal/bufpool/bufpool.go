// Package bufpool recycles byte buffers, so hot paths (chunking, sealing,
// packing) do not allocate and zero fresh memory for every blob. A buffer
// must only be Put back once nothing references it any more (in
// particular, after a save of it has returned).
//
// Buffers of ArenaMin bytes and more come from one long-lived arena while
// SetArena has made one and it has room (arena.go): a backup's pipelines
// do. Other buffers are recycled by power-of-two size class through a
// sync.Pool, which the collector may empty (measured: a full backup of the
// benchmark corpus through the size classes alone allocated 1.2 GB, with
// 140-270 k page faults, which on VMs that return free memory to the host
// cost seconds of system time).
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

	// mu guards the arena's state (arena.go).
	mu sync.Mutex
)

func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}

// Get returns a buffer of length n (contents undefined).
func Get(n int) []byte {
	if n >= ArenaMin {
		mu.Lock()
		if arena != nil {
			if b := arenaGet(n); b != nil {
				mu.Unlock()
				return b
			}
		}
		mu.Unlock()
	}
	c := class(n)
	if c >= nClasses {
		return make([]byte, n)
	}
	if b, ok := pools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(c+minShift))
}

// Put returns b to the arena or its size class. Buffers of odd capacity
// from outside the arena are dropped.
func Put(b []byte) {
	c := cap(b)
	if c < 1<<minShift {
		return
	}
	if c >= ArenaMin {
		mu.Lock()
		done := arenaPut(b)
		mu.Unlock()
		if done {
			return
		}
	}
	k := bits.Len(uint(c)) - 1 - minShift
	if c&(c-1) != 0 || k >= nClasses {
		return
	}
	b = b[:0]
	pools[k].Put(&b)
}
