package archiver

import (
	"errors"
	"io"
	"os"
	"sync"

	"github.com/restic/chunker"
	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/bufpool"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/fsnode"
	"github.com/cairn-backup/cairn/internal/rabin"
)

// chunk is one content-defined piece of a file.
type chunk struct {
	// data holds the bytes: a pooled buffer, or (zero set) a slice of
	// zeroBuf that must never be written or returned to the pool.
	data []byte
	id   core.ID // SHA-256 of data, unless needID
	sum  uint64  // check sum of data (core.HashChecked), unless needID
	zero bool    // the chunk lies in a hole of a sparse file: all zeros
	// needID: id is not computed yet (chunkReader.deferIDs); whoever
	// takes the chunk computes it with chunkID.
	needID bool
}

// release returns the chunk's buffer to the pool.
func (c chunk) release() {
	if !c.zero {
		putBuf(c.data)
	}
}

// zeroBuf backs the chunks cut from holes. It is never written, so its
// pages stay the kernel's shared zero page and cost no memory.
var zeroBuf = newZeroBuf(chunker.MaxSize)

// zeroIDs caches the IDs and check sums of all-zero chunks by length:
// sparse and preallocated files are full of them, and hashing them byte by
// byte is wasted work.
var zeroIDs sync.Map // int -> zeroSum

type zeroSum struct {
	id  core.ID
	sum uint64
}

func zeroID(n int) (core.ID, uint64) {
	if z, ok := zeroIDs.Load(n); ok {
		return z.(zeroSum).id, z.(zeroSum).sum
	}
	id, sum := core.HashChecked(zeroBuf[:n])
	zeroIDs.Store(n, zeroSum{id, sum})
	return id, sum
}

// chunkID returns the ID and check sum of data (core.HashChecked),
// short-cutting all-zero chunks. Both go to SaveBlobSum: the check sum is
// what the verification before upload compares the compressed blob with.
func chunkID(data []byte) (core.ID, uint64) {
	if isZeroChunk(data) {
		return zeroID(len(data))
	}
	return core.HashChecked(data)
}

const (
	// chunkPiece is how much is read at a time once a chunk has passed
	// the chunker's minimum size: bytes read past a cut are copied into
	// the next chunk's buffer, so smaller pieces mean fewer copied bytes.
	chunkPiece = 128 << 10
	// chunkBufSize is a new chunk buffer's capacity; chunks average about
	// 1.5 MiB, larger ones move to a larger buffer once.
	chunkBufSize = 2 << 20
	// preSkip is how many bytes of a chunk the chunker never looks at.
	preSkip = chunker.MinSize - 64
)

// hint is a chunk of the same file in the parent snapshot.
type hint struct {
	id   core.ID
	size int
}

// chunkReader cuts a file into content-defined chunks with exactly the
// boundaries of chunker.Chunker (found by package rabin, which searches
// many ranges of a chunk at once), with three savings over a plain read →
// chunk → copy loop:
//   - bytes are read straight into the chunk's own pooled buffer (sized to
//     the chunk, not to the 8 MiB maximum); only the bytes read past a cut
//     (at most one piece) are copied into the next chunk;
//   - holes of sparse files (SEEK_HOLE/SEEK_DATA) are neither read nor
//     hashed: a chunk lying in a hole is a slice of zeroBuf with a cached ID;
//   - with hints (the parent snapshot's chunks of a changed file), the next
//     chunk is first tried as the parent's next chunk: if the bytes hash to
//     its ID, the chunker would cut there too (it restarts at every cut and
//     only looks at the bytes before the cut), so the rolling hash is
//     skipped; after a mismatch the chunker runs until a chunk equals one of
//     the parent's again.
type chunkReader struct {
	tab *rabin.Table
	src io.ReaderAt
	f   *os.File // src as a file, for SEEK_HOLE/SEEK_DATA (nil: no holes)

	pos int64 // offset of the next byte not yet read
	eof bool
	// [pos, segEnd) is known to be a hole (segHole) or data.
	segEnd  int64
	segHole bool
	size    int64 // file size when opened (bounds the trailing hole)

	// carry holds bytes read past the last cut, not yet fed to the
	// chunker; they start the next chunk. carry is a pooled buffer.
	carry []byte

	hints    []hint
	hintPos  int               // next hint to try; -1 while resynchronising
	hintLast int               // index of the last hint matched (-1: none)
	hintAt   map[core.ID][]int // hint indexes by ID, ascending
	hintHits int               // chunks matched through hints (tests)

	// deferIDs leaves the IDs of chunks cut by the rolling hash to the
	// caller (chunk.needID), so that hashing can run on another core than
	// reading and chunking. Only without hints: resynchronising with the
	// parent's chunks needs every chunk's ID here. Set after reset.
	deferIDs bool
}

func newChunkReader(pol chunker.Pol) (*chunkReader, error) {
	tab, err := rabin.For(pol)
	if err != nil {
		return nil, err
	}
	return &chunkReader{tab: tab}, nil
}

// reset starts a new file. sparse enables hole detection (for files whose
// allocated blocks are fewer than their size); hints may be nil.
func (c *chunkReader) reset(src io.ReaderAt, size int64, sparse bool, hints []hint) {
	if c.carry != nil {
		putBuf(c.carry)
	}
	*c = chunkReader{tab: c.tab, src: src, size: size, hints: hints, hintLast: -1}
	if f, ok := src.(*os.File); ok && sparse {
		c.f = f
	}
	if len(hints) > 0 {
		c.hintAt = make(map[core.ID][]int, len(hints))
		for i, h := range hints {
			c.hintAt[h.id] = append(c.hintAt[h.id], i)
		}
	}
}

// close releases buffers held between chunks.
func (c *chunkReader) close() {
	if c.carry != nil {
		putBuf(c.carry)
		c.carry = nil
	}
	c.src, c.f, c.hints, c.hintAt = nil, nil, nil, nil
}

// segment makes sure [c.pos, c.segEnd) describes the bytes at c.pos.
func (c *chunkReader) segment() error {
	if c.pos < c.segEnd {
		return nil
	}
	if c.f == nil {
		c.segEnd, c.segHole = 1<<62, false
		return nil
	}
	fd := int(c.f.Fd())
	hole, err := unix.Seek(fd, c.pos, unix.SEEK_HOLE)
	switch {
	case errors.Is(err, unix.ENXIO): // at or beyond the end
		c.segEnd, c.segHole = 1<<62, false
		return nil
	case seekHoleUnsupported(err):
		c.f = nil // no hole support here: read everything
		c.segEnd, c.segHole = 1<<62, false
		return nil
	case err != nil:
		return &os.PathError{Op: "seek hole", Path: c.f.Name(), Err: err}
	}
	if hole > c.pos {
		c.segEnd, c.segHole = hole, false
		return nil
	}
	data, err := unix.Seek(fd, c.pos, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO): // a hole up to the end of the file
		end := c.size
		if fi, serr := c.f.Stat(); serr == nil {
			end = fi.Size()
		}
		if end <= c.pos {
			c.segEnd, c.segHole = 1<<62, false // read: it will report EOF
			return nil
		}
		c.segEnd, c.segHole = end, true
	case err != nil:
		return &os.PathError{Op: "seek data", Path: c.f.Name(), Err: err}
	default:
		c.segEnd, c.segHole = data, true
	}
	return nil
}

// grow makes room for n more bytes in buf (a pooled buffer): in place when
// the arena has the memory after it free, else by moving to a buffer twice
// as large (at least chunkBufSize).
func grow(buf []byte, n int) []byte {
	if len(buf)+n <= cap(buf) {
		return buf
	}
	return bufpool.Grow(buf, len(buf)+n, max(2*cap(buf), chunkBufSize))
}

// fill appends up to n bytes at c.pos to buf (hole bytes as zeros) and
// returns it; fewer bytes only at the end of the file.
func (c *chunkReader) fill(buf []byte, n int) ([]byte, error) {
	for n > 0 && !c.eof {
		if err := c.segment(); err != nil {
			return buf, err
		}
		k := int(min(int64(n), c.segEnd-c.pos))
		buf = grow(buf, k)
		dst := buf[len(buf) : len(buf)+k]
		if c.segHole {
			clear(dst)
			buf = buf[:len(buf)+k]
			c.pos += int64(k)
			n -= k
			continue
		}
		m, err := c.src.ReadAt(dst, c.pos)
		buf = buf[:len(buf)+m]
		c.pos += int64(m)
		n -= m
		if err == io.EOF || (err == nil && m == 0) {
			c.eof = true
		} else if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// takeCarry returns the carried bytes as the start of a new chunk buffer.
func (c *chunkReader) takeCarry() []byte {
	b := c.carry
	c.carry = nil
	return b
}

// cut ends the chunk at out[:n], whose ID is id; the rest of out becomes
// the carry. The carry gets a buffer of its own size (at most a piece): the
// reader may wait a long time for a chunk slot before the next chunk needs
// room, and only then does grow move it into a chunk-sized buffer.
func (c *chunkReader) cut(out []byte, n int, id core.ID, sum uint64) chunk {
	if rest := out[n:]; len(rest) > 0 {
		c.carry = append(getBuf(len(rest))[:0], rest...)
	}
	return chunk{data: bufpool.Trim(out[:n], n), id: id, sum: sum}
}

// next returns the next chunk (release it when done), or io.EOF.
func (c *chunkReader) next() (chunk, error) {
	out := c.takeCarry()
	if c.hintPos >= 0 && c.hintPos < len(c.hints) {
		h := c.hints[c.hintPos]
		c.hintPos++
		var err error
		if out, err = c.fill(out, h.size-len(out)); err != nil {
			putBuf(out)
			return chunk{}, err
		}
		if len(out) >= h.size {
			if id, sum := chunkID(out[:h.size]); id == h.id {
				c.hintLast = c.hintPos - 1
				c.hintHits++
				return c.cut(out, h.size, id, sum), nil
			}
		}
		c.hintPos = -1 // not the parent's chunk: chunk for real from here
	}
	fed := 0  // bytes of out already searched for a cut
	zlen := 0 // while out is nil: hole bytes already searched
	for {
		if fed < len(out) {
			if n := c.tab.Cut(out, fed); n >= 0 {
				if c.deferIDs && c.hintAt == nil {
					ch := c.cut(out, n, core.ID{}, 0)
					ch.needID = true
					return ch, nil
				}
				id, sum := chunkID(out[:n])
				return c.resync(c.cut(out, n, id, sum)), nil
			}
			fed = len(out)
		}
		if c.eof {
			switch {
			case len(out) > 0:
				out = bufpool.Trim(out, len(out))
				if c.deferIDs && c.hintAt == nil {
					return chunk{data: out, needID: true}, nil
				}
				id, sum := chunkID(out)
				return c.resync(chunk{data: out, id: id, sum: sum}), nil
			case zlen > 0:
				putBuf(out)
				id, sum := zeroID(zlen)
				return chunk{data: zeroBuf[:zlen], id: id, sum: sum, zero: true}, nil
			}
			putBuf(out)
			return chunk{}, io.EOF
		}
		if err := c.segment(); err != nil {
			putBuf(out)
			return chunk{}, err
		}
		have := max(len(out), zlen)
		want := chunkPiece
		if have < preSkip {
			want = max(want, preSkip-have)
		}
		if c.segHole && len(out) == 0 {
			// still all hole: search zeros without touching memory
			k := int(min(int64(want), c.segEnd-c.pos, int64(len(zeroBuf)-zlen)))
			if n := c.tab.Cut(zeroBuf[:zlen+k], zlen); n >= 0 {
				c.pos += int64(n - zlen)
				zlen = n
				putBuf(out)
				id, sum := zeroID(zlen)
				return chunk{data: zeroBuf[:zlen], id: id, sum: sum, zero: true}, nil
			}
			zlen += k
			c.pos += int64(k)
			continue
		}
		if out == nil {
			out = getBuf(chunkBufSize)[:0]
		}
		if zlen > 0 {
			// the chunk started in a hole and now has data: materialise
			out = grow(out, zlen)[:zlen]
			clear(out)
			fed, zlen = len(out), 0
		}
		var err error
		if out, err = c.fill(out, want); err != nil {
			putBuf(out)
			return chunk{}, err
		}
	}
}

// resync re-enters hint mode after a chunk that equals one of the
// parent's: the parent's following chunks are tried next.
func (c *chunkReader) resync(ch chunk) chunk {
	if c.hintPos >= 0 || c.hintAt == nil {
		return ch
	}
	idx, ok := c.hintAt[ch.id]
	if !ok {
		return ch
	}
	// the first occurrence after the last match: chunks repeat (zeros)
	i := idx[0]
	for _, j := range idx {
		if j > c.hintLast {
			i = j
			break
		}
	}
	c.hintPos, c.hintLast = i+1, i
	return ch
}

// isZeroChunk reports whether chunkID takes data's ID from the cache of
// all-zero chunks.
func isZeroChunk(data []byte) bool {
	return len(data) >= 4096 && len(data) <= len(zeroBuf) && isZero(data)
}

// isZero reports whether b is all zeros.
func isZero(b []byte) bool { return fsnode.IsZero(b) }
