package crypto

import "golang.org/x/sys/cpu"

// polyBlocks runs Poly1305's lanes over groups×128 bytes at p (the layout
// is described in poly.go): each group adds eight blocks to the eight lanes and
// multiplies by r^8, except the last group, which multiplies lane j by
// r^(8-j) instead. st starts zero.
//
//go:noescape
func polyBlocks(st *polyVec, pp *polyPowers, p *byte, groups int)

// useIFMA selects the vector Poly1305 (AVX-512 with the 52-bit integer
// multiply-add, Ice Lake and later, Zen 4 and later).
var useIFMA = cpu.X86.HasAVX512F && cpu.X86.HasAVX512IFMA
