//go:build !amd64

package rabin

func vecHits(c *vecConsts, stream *byte, stride, blocks int, scratch *byte) uint64 {
	panic("rabin: no vector search on this platform")
}

func hasVec() bool { return false }
