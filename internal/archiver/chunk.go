package archiver

import (
	"io"

	"github.com/restic/chunker"
)

// chunkReader cuts a stream into content-defined chunks with the same
// boundaries as chunker.Chunker, but hands out each chunk in a pooled
// buffer sized to the chunk (not to the 8 MiB maximum), which keeps the
// memory of chunks in flight proportional to their real size.
type chunkReader struct {
	bc   *chunker.BaseChunker
	rd   io.Reader
	buf  []byte // read buffer
	bpos int
	bmax int
	eof  bool
}

const chunkReadSize = 512 << 10

func newChunkReader(pol chunker.Pol) *chunkReader {
	return &chunkReader{bc: chunker.NewBase(pol), buf: make([]byte, chunkReadSize)}
}

// reset starts a new stream with a fresh chunker state.
func (c *chunkReader) reset(rd io.Reader, pol chunker.Pol) {
	c.bc.Reset(pol)
	c.rd, c.bpos, c.bmax, c.eof = rd, 0, 0, false
}

// appendGrow appends b to dst, moving to a larger pooled buffer when full.
func appendGrow(dst, b []byte) []byte {
	if len(dst)+len(b) > cap(dst) {
		n := 2 * cap(dst)
		for n < len(dst)+len(b) {
			n *= 2
		}
		nd := getBuf(n)[:len(dst)]
		copy(nd, dst)
		putBuf(dst)
		dst = nd
	}
	return append(dst, b...)
}

// next returns the next chunk in a pooled buffer (the caller returns it
// with putBuf), or io.EOF after the last one.
func (c *chunkReader) next() ([]byte, error) {
	out := getBuf(1 << 20)[:0]
	for {
		if c.bpos >= c.bmax {
			if c.eof {
				if len(out) > 0 {
					return out, nil
				}
				putBuf(out)
				return nil, io.EOF
			}
			n, err := io.ReadFull(c.rd, c.buf)
			switch err {
			case nil:
			case io.EOF, io.ErrUnexpectedEOF:
				c.eof = true
			default:
				putBuf(out)
				return nil, err
			}
			c.bpos, c.bmax = 0, n
			continue
		}
		split := c.bc.NextSplitPoint(c.buf[c.bpos:c.bmax])
		if split < 0 {
			out = appendGrow(out, c.buf[c.bpos:c.bmax])
			c.bpos = c.bmax
			continue
		}
		out = appendGrow(out, c.buf[c.bpos:c.bpos+split])
		c.bpos += split
		return out, nil
	}
}
