package sha256x

import "golang.org/x/sys/cpu"

// blocks2 hashes n 64-byte blocks at pa into ha and n at pb into hb.
//
//go:noescape
func blocks2(ha *[8]uint32, pa *byte, hb *[8]uint32, pb *byte, n int)

// blocks1 hashes n 64-byte blocks at p into h.
//
//go:noescape
func blocks1(h *[8]uint32, p *byte, n int)

func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// hasNI reports the SHA extensions (CPUID.(EAX=7,ECX=0):EBX bit 29) and
// the SSSE3/SSE4.1 instructions blocks2 also uses.
func hasNI() bool {
	if !cpu.X86.HasSSSE3 || !cpu.X86.HasSSE41 {
		return false
	}
	if max, _, _, _ := cpuid(0, 0); max < 7 {
		return false
	}
	_, b, _, _ := cpuid(7, 0)
	return b&(1<<29) != 0
}

// useNI selects the two-lane SHA-NI path (tests may turn it off).
var useNI = hasNI()
