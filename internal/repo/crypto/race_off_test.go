//go:build !race

package crypto

// raceEnabled reports whether the race detector is on; the 1 GiB RFC 7914
// vector takes too long under it.
const raceEnabled = false
