//go:build !amd64

package sha256x

var useNI = false

func blocks2(ha *[8]uint32, pa *byte, hb *[8]uint32, pb *byte, n int) {
	panic("sha256x: no two-lane SHA-256 on this platform")
}

func hasNI() bool { return false }

func blocks1(h *[8]uint32, p *byte, n int) {
	panic("sha256x: no SHA-NI SHA-256 on this platform")
}
