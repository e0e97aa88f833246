package rabin

import "golang.org/x/sys/cpu"

// vecHits runs the 64 chains described in lanes.go over blocks blocks of
// 64 steps (the first the warm-up) and returns the set of chains that met a
// boundary after it. Chain k's bytes start at stream + k·stride. scratch
// must hold vecScratch bytes.
//
//go:noescape
func vecHits(c *vecConsts, stream *byte, stride, blocks int, scratch *byte) uint64

// hasVec reports AVX-512 with the byte instructions (BW), byte permutes
// (VBMI) and GF(2^8) affine transforms (GFNI): Ice Lake and later Intel
// cores, AMD Zen 4 and later. x/sys/cpu also checks that the OS saves the
// 512-bit registers.
func hasVec() bool {
	x := &cpu.X86
	return x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VBMI && x.HasAVX512GFNI
}
