// Package sha256x computes SHA-256 of two independent messages at once.
//
// On amd64 with the SHA extensions (SHA-NI), hashing one message is bound by
// the latency of the round instruction, not by how often it can start: the
// unit sits mostly idle. Write2 advances two messages block by block
// in one instruction stream, which on such cores costs little more than one
// message alone (see BenchmarkSum2). Elsewhere, and for what one message has
// left when the other is done, it hashes each message on its own with
// crypto/sha256 or an equivalent path; the results are always plain SHA-256.
package sha256x

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// Size is the length of a digest in bytes.
const Size = sha256.Size

const blockSize = 64

// iv is SHA-256's initial hash value (FIPS 180-4, 5.3.3).
var iv = [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}

// Digest is a running SHA-256. The zero value is not ready: use New or
// Reset. A Digest is used by one goroutine at a time.
type Digest struct {
	h   [8]uint32
	x   [blockSize]byte // x[:nx] is a partial block
	nx  int
	len uint64    // bytes written
	std hash.Hash // without SHA-NI: the digest itself (h, x unused)
}

// New returns a Digest ready for use.
func New() *Digest {
	d := new(Digest)
	d.Reset()
	return d
}

// Reset starts a new message.
func (d *Digest) Reset() {
	if !useNI {
		if d.std == nil {
			d.std = sha256.New()
		}
		d.std.Reset()
		return
	}
	d.h, d.nx, d.len, d.std = iv, 0, 0, nil
}

// Write adds p to the message.
func (d *Digest) Write(p []byte) {
	if d.std != nil {
		_, _ = d.std.Write(p)
		return
	}
	p = d.fill(p)
	if n := len(p) / blockSize; n > 0 {
		blocks1(&d.h, &p[0], n)
		d.len += uint64(n * blockSize)
		p = p[n*blockSize:]
	}
	if len(p) > 0 {
		d.nx = copy(d.x[:], p)
		d.len += uint64(len(p))
	}
}

// fill tops up a partial block from p (hashing it once complete) and
// returns the rest of p. Afterwards d.nx is 0 unless p was used up.
func (d *Digest) fill(p []byte) []byte {
	if d.nx == 0 {
		return p
	}
	n := copy(d.x[d.nx:], p)
	d.nx += n
	d.len += uint64(n)
	if d.nx == blockSize {
		blocks1(&d.h, &d.x[0], 1)
		d.nx = 0
	}
	return p[n:]
}

// Write2 adds pa to a's message and pb to b's (a and b distinct), hashing
// the blocks the two have in common side by side.
func Write2(a *Digest, pa []byte, b *Digest, pb []byte) {
	if a == b {
		panic("sha256x: Write2 with the same Digest twice")
	}
	if a.std != nil || b.std != nil {
		a.Write(pa)
		b.Write(pb)
		return
	}
	pa, pb = a.fill(pa), b.fill(pb)
	if n := min(len(pa), len(pb)) / blockSize; n > 0 && a.nx == 0 && b.nx == 0 {
		blocks2(&a.h, &pa[0], &b.h, &pb[0], n)
		a.len += uint64(n * blockSize)
		b.len += uint64(n * blockSize)
		pa, pb = pa[n*blockSize:], pb[n*blockSize:]
	}
	a.Write(pa)
	b.Write(pb)
}

// Sum returns the digest of the message written so far; d is unchanged.
func (d *Digest) Sum() [Size]byte {
	var out [Size]byte
	if d.std != nil {
		d.std.Sum(out[:0])
		return out
	}
	c := *d
	var pad [2 * blockSize]byte
	pad[0] = 0x80
	n := blockSize - c.nx // room left in the partial block
	if n < 9 {
		n += blockSize
	}
	binary.BigEndian.PutUint64(pad[n-8:], c.len*8)
	c.Write(pad[:n])
	for i, v := range c.h {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	return out
}
