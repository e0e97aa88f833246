//go:build unix

package archiver

import "golang.org/x/sys/unix"

// newZeroBuf maps n bytes of read-only anonymous memory: all zero, never
// part of the Go heap (so it neither counts towards the garbage collector's
// goal nor the soft memory limit derived from the live heap), resident only
// as the kernel's shared zero page, and any write to it faults at once.
func newZeroBuf(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return make([]byte, n)
	}
	return b
}
