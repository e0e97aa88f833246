package bufpool

import (
	"fmt"
	"sort"
	"unsafe"
)

// The arena tier serves large buffers (ArenaMin bytes and more) from one
// long-lived allocation, carved into extents of whole granules. Size
// classes cannot share memory: a free 2 MiB buffer cannot serve a 3 MiB
// request, so a backup's pipelines kept 2, 4, 8 and 16 MiB buffers of
// every class alive at once (measured: ~210 MiB of distinct buffers when
// nothing was dropped), or, within a memory limit, dropped them at every
// collection and faulted fresh ones in (130,000–240,000 page faults per
// full backup of the benchmark corpus). Extents are sized to the request
// (rounded up to a granule), shrink to what their user keeps (Trim), grow
// in place when the memory behind them is free (Grow), and coalesce when
// freed, so any free memory serves any size. The arena is live for the
// whole process: the collector never frees it and the runtime never hands
// its pages back, so they fault in once.
//
// A buffer from the arena must go back with Put exactly once, as the slice
// Get (or Grow, Trim) returned, re-sliced only at its end; anything else is
// a bug that would hand the same memory out twice, so Put panics on it. A
// buffer that is never put back only shrinks the arena (Get falls back to
// the size classes when the arena has no room).

const (
	granShift = 16 // 64 KiB granules
	gran      = 1 << granShift
	// ArenaMin is the smallest request the arena serves; smaller ones use
	// the size classes.
	ArenaMin = gran
)

// extent is a run of granules of the arena.
type extent struct{ start, n int32 }

var (
	// The following are guarded by mu.

	// arena is the memory of the arena tier (nil: no arena).
	arena []byte
	// arenaBase is the address of arena[0].
	arenaBase uintptr
	// freeExt lists the free extents, sorted by start, none adjacent to
	// another (they are coalesced).
	freeExt []extent
	// allocN[g] is the length in granules of the extent in use that starts
	// at granule g (0: none starts there).
	allocN []int32
	// arenaUsed is the number of granules in use, arenaPeak its maximum.
	arenaUsed, arenaPeak int
	// arenaMisses counts requests the arena had no room for.
	arenaMisses int
)

// SetArena gives the arena tier size bytes (rounded down to whole
// granules; 0 removes it). It reports false, and changes nothing, while
// buffers of the current arena are still in use. The caller should allow for
// size in its memory limit: the arena is live heap (its untouched pages
// cost no physical memory, and Get fills it from the lowest addresses).
func SetArena(size int) bool {
	mu.Lock()
	defer mu.Unlock()
	if arenaUsed > 0 {
		return false
	}
	n := size >> granShift
	if n <= 0 {
		arena, arenaBase, freeExt, allocN = nil, 0, nil, nil
		arenaPeak, arenaMisses = 0, 0
		return true
	}
	// granules aligned to their size (direct I/O wants 4 KiB)
	raw := make([]byte, (n+1)<<granShift)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(raw))) & (gran - 1))
	arena = raw[skip : skip+n<<granShift : skip+n<<granShift]
	arenaBase = uintptr(unsafe.Pointer(unsafe.SliceData(arena)))
	freeExt = []extent{{0, int32(n)}}
	allocN = make([]int32, n)
	arenaPeak, arenaMisses = 0, 0
	return true
}

// ArenaStats describes the arena tier.
type ArenaStats struct {
	Size, Used, Peak int // bytes
	Misses           int // requests it had no room for
}

// Arena reports the arena's size and use.
func Arena() ArenaStats {
	mu.Lock()
	defer mu.Unlock()
	return ArenaStats{len(arena), arenaUsed << granShift, arenaPeak << granShift, arenaMisses}
}

// GetArena returns a buffer of length n from the arena, aligned to
// ArenaMin bytes, or nil when there is no arena or it has no room. Put it
// back with Put.
func GetArena(n int) []byte {
	if n <= 0 {
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	if arena == nil {
		return nil
	}
	return arenaGet(n)
}

// granules returns how many granules hold n bytes.
func granules(n int) int { return (n + gran - 1) >> granShift }

// arenaGet returns a buffer of length n and capacity n rounded up to a
// granule from the arena, or nil when no free extent is large enough. It
// takes the smallest extent that fits (the lowest of equals), so large
// free runs stay whole. Called with mu held.
func arenaGet(n int) []byte {
	k := granules(n)
	best := -1
	for i, e := range freeExt {
		if int(e.n) >= k && (best < 0 || e.n < freeExt[best].n) {
			best = i
			if int(e.n) == k {
				break
			}
		}
	}
	if best < 0 {
		arenaMisses++
		return nil
	}
	e := &freeExt[best]
	s := int(e.start)
	if int(e.n) == k {
		freeExt = append(freeExt[:best], freeExt[best+1:]...)
	} else {
		e.start += int32(k)
		e.n -= int32(k)
	}
	allocN[s] = int32(k)
	arenaUsed += k
	arenaPeak = max(arenaPeak, arenaUsed)
	off := s << granShift
	return arena[off : off+n : off+k<<granShift]
}

// arenaExtent returns the first granule and the granule count of b's
// extent when b's memory lies in the arena (ok false otherwise). It panics
// when b is in the arena but is not an extent in use as Get handed it out.
// Called with mu held, which it releases before panicking.
func arenaExtent(b []byte, op string) (g, k int, ok bool) {
	if arena == nil || cap(b) == 0 {
		return 0, 0, false
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - arenaBase
	if off >= uintptr(len(arena)) { // below the base wraps around
		return 0, 0, false
	}
	g, k = int(off>>granShift), cap(b)>>granShift
	if off&(gran-1) != 0 || cap(b)&(gran-1) != 0 || allocN[g] != int32(k) {
		mu.Unlock() // the panic may be recovered: leave the pool usable
		panic(fmt.Sprintf("bufpool: %s of a buffer the arena did not hand out as it is (put twice, or re-sliced at its start): offset %d, capacity %d", op, off, cap(b)))
	}
	return g, k, true
}

// freeFrom returns the index of the first free extent that starts at or
// after granule g. Called with mu held.
func freeFrom(g int) int {
	return sort.Search(len(freeExt), func(i int) bool { return int(freeExt[i].start) >= g })
}

// arenaFree returns granules [g, g+k) to the free extents. Called with mu
// held.
func arenaFree(g, k int) {
	arenaUsed -= k
	i := freeFrom(g)
	joinPrev := i > 0 && int(freeExt[i-1].start+freeExt[i-1].n) == g
	joinNext := i < len(freeExt) && int(freeExt[i].start) == g+k
	switch {
	case joinPrev && joinNext:
		freeExt[i-1].n += int32(k) + freeExt[i].n
		freeExt = append(freeExt[:i], freeExt[i+1:]...)
	case joinPrev:
		freeExt[i-1].n += int32(k)
	case joinNext:
		freeExt[i].start = int32(g)
		freeExt[i].n += int32(k)
	default:
		freeExt = append(freeExt, extent{})
		copy(freeExt[i+1:], freeExt[i:])
		freeExt[i] = extent{int32(g), int32(k)}
	}
}

// arenaPut frees b's extent if b lies in the arena.
func arenaPut(b []byte) bool {
	g, k, ok := arenaExtent(b, "Put")
	if !ok {
		return false
	}
	allocN[g] = 0
	arenaFree(g, k)
	return true
}

// Trim gives back the memory of b beyond keep bytes (at least len(b)) when
// b is an arena buffer, and returns b with its capacity reduced to match;
// other buffers are returned as they are. For a buffer that will be held
// for a while with less in it than was asked for (a chunk after its cut,
// a compressed blob).
func Trim(b []byte, keep int) []byte {
	keep = max(keep, len(b), 1)
	mu.Lock()
	g, k, ok := arenaExtent(b, "Trim")
	if !ok {
		mu.Unlock()
		return b
	}
	nk := granules(keep)
	if nk >= k {
		mu.Unlock()
		return b
	}
	allocN[g] = int32(nk)
	allocN[g+nk] = 0
	arenaFree(g+nk, k-nk)
	mu.Unlock()
	return b[: len(b) : nk<<granShift]
}

// Grow returns b with room for at least need bytes (its contents and
// length kept): b itself when it has the room; an arena buffer extended in
// place when the memory after it is free; otherwise a new buffer of at least
// max(need, moveCap) bytes that b was copied into (b is put back). b must
// be a buffer from Get (or nil).
func Grow(b []byte, need, moveCap int) []byte {
	if need <= cap(b) {
		return b
	}
	mu.Lock()
	if g, k, ok := arenaExtent(b, "Grow"); ok {
		end, nk := g+k, granules(need)
		take := nk - k
		if i := freeFrom(end); i < len(freeExt) && int(freeExt[i].start) == end && int(freeExt[i].n) >= take {
			if int(freeExt[i].n) == take {
				freeExt = append(freeExt[:i], freeExt[i+1:]...)
			} else {
				freeExt[i].start += int32(take)
				freeExt[i].n -= int32(take)
			}
			allocN[g] = int32(nk)
			arenaUsed += take
			arenaPeak = max(arenaPeak, arenaUsed)
			mu.Unlock()
			off := g << granShift
			return arena[off : off+len(b) : off+nk<<granShift]
		}
	}
	mu.Unlock()
	nb := Get(max(need, moveCap))[:len(b)]
	copy(nb, b)
	Put(b)
	return nb
}
