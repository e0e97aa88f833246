//go:build !amd64

package crypto

const useIFMA = false

func polyBlocks(st *polyVec, pp *polyPowers, p *byte, groups int) {
	panic("crypto: no vector Poly1305 on this platform")
}
