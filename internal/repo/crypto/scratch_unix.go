//go:build unix

package crypto

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// allocScratch returns n zeroed words of scrypt scratch memory mapped
// straight from the kernel, and the function that unmaps it. The 32 MiB
// lanes are then never part of the Go heap: the memory goes back to the
// kernel the moment a derivation ends, instead of inflating the heap (and
// the peak RSS) of the command that follows.
func allocScratch(n int) ([]uint32, func()) {
	b, err := unix.Mmap(-1, 0, n*4, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return make([]uint32, n), func() {}
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), n), func() { _ = unix.Munmap(b) }
}
