//go:build !unix

package archiver

// newZeroBuf returns n zero bytes from the heap.
func newZeroBuf(n int) []byte { return make([]byte, n) }
