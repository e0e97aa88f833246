// Package bufpool recycles byte buffers by power-of-two size class, so hot
// paths (chunking, sealing, packing) do not allocate and zero fresh memory
// for every blob. A buffer must only be Put back once nothing references it
// any more (in particular, after a save of it has returned).
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 12 // 4 KiB
	maxShift = 25 // 32 MiB
)

var pools [maxShift - minShift + 1]sync.Pool

func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}

// Get returns a buffer of length n (contents undefined).
func Get(n int) []byte {
	c := class(n)
	if c >= len(pools) {
		return make([]byte, n)
	}
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
	if k >= len(pools) {
		return
	}
	b = b[:0]
	pools[k].Put(&b)
}
