//go:build !unix

package crypto

// allocScratch returns n zeroed words of scrypt scratch memory.
func allocScratch(n int) ([]uint32, func()) { return make([]uint32, n), func() {} }
