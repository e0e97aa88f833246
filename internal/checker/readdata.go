package checker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/repo/pack"
	"github.com/cairn-backup/cairn/internal/sha256x"
)

// SubsetKind says how a Subset selects packs.
type SubsetKind int

// Subset kinds.
const (
	SubsetAll     SubsetKind = iota // every pack (--read-data)
	SubsetBucket                    // n/t: packs whose first ID byte mod t is n-1
	SubsetPercent                   // a random percentage of packs, at least one
	SubsetSize                      // random packs up to a total size
)

// Subset is a parsed --read-data-subset value.
type Subset struct {
	Kind    SubsetKind
	N, T    uint    // SubsetBucket: group N (1-based) of T
	Percent float64 // SubsetPercent: 0 < Percent <= 100
	Bytes   int64   // SubsetSize
}

// String describes the subset as check's progress line does.
func (s Subset) String() string {
	switch s.Kind {
	case SubsetBucket:
		return fmt.Sprintf("group #%d of %d", s.N, s.T)
	case SubsetPercent:
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	case SubsetSize:
		return fmt.Sprintf("%d bytes", s.Bytes)
	}
	return "all"
}

// ParseSubset parses restic's --read-data-subset syntax: "n/t" (1 <= n <= t
// <= 256), "x%" (0 < x <= 100) or a size with an optional K, M, G or T
// suffix (powers of 1024).
func ParseSubset(s string) (Subset, error) {
	s = strings.TrimSpace(s)
	if a, b, ok := strings.Cut(s, "/"); ok {
		n, err1 := strconv.ParseUint(a, 10, 32)
		t, err2 := strconv.ParseUint(b, 10, 32)
		if err1 != nil || err2 != nil {
			return Subset{}, fmt.Errorf("read data subset %q: want n/t with two integers", s)
		}
		if t == 0 || t > 256 {
			return Subset{}, fmt.Errorf("read data subset %q: t must be between 1 and 256", s)
		}
		if n == 0 || n > t {
			return Subset{}, fmt.Errorf("read data subset %q: n must be between 1 and t", s)
		}
		return Subset{Kind: SubsetBucket, N: uint(n), T: uint(t)}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || !(v > 0 && v <= 100) {
			return Subset{}, fmt.Errorf("read data subset %q: percentage must be a number above 0 and at most 100", s)
		}
		return Subset{Kind: SubsetPercent, Percent: v}, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return Subset{}, fmt.Errorf("read data subset %q: %w", s, err)
	}
	if n <= 0 {
		return Subset{}, fmt.Errorf("read data subset %q: size must be positive", s)
	}
	return Subset{Kind: SubsetSize, Bytes: n}, nil
}

func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty size")
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'b', 'B':
		s = s[:len(s)-1]
	case 'k', 'K':
		mult, s = 1<<10, s[:len(s)-1]
	case 'm', 'M':
		mult, s = 1<<20, s[:len(s)-1]
	case 'g', 'G':
		mult, s = 1<<30, s[:len(s)-1]
	case 't', 'T':
		mult, s = 1<<40, s[:len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want n/t, x%% or a size such as 500M: %w", err)
	}
	if v > (1<<62)/mult {
		return 0, errors.New("size too large")
	}
	return v * mult, nil
}

// SelectPacks returns the indexed packs that sub selects, sorted. rnd picks
// the random subsets (nil: a random source). It should be called after
// CheckPacks: packs CheckPacks found missing are left out (they are already
// reported), and the size subset uses the listed sizes.
func (c *Checker) SelectPacks(sub Subset, rnd *rand.Rand) core.IDs {
	all := make(core.IDs, 0, len(c.indexedPacks))
	for id := range c.indexedPacks {
		if _, listed := c.packSizes[id]; c.packSizes != nil && !listed {
			continue
		}
		all = append(all, id)
	}
	sort.Sort(all)
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	var out core.IDs
	switch sub.Kind {
	case SubsetAll:
		return all
	case SubsetBucket:
		for _, id := range all {
			if uint(id[0])%sub.T == sub.N-1 {
				out = append(out, id)
			}
		}
	case SubsetPercent:
		n := int(float64(len(all)) * sub.Percent / 100)
		if n < 1 {
			n = 1
		}
		if n > len(all) {
			n = len(all)
		}
		rnd.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		out = append(out, all[:n]...)
	case SubsetSize:
		rnd.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		var total int64
		for _, id := range all {
			size := c.packSize(id)
			if total+size <= sub.Bytes {
				out = append(out, id)
				total += size
			}
		}
	}
	sort.Sort(out)
	return out
}

func (c *Checker) packSize(id core.ID) int64 {
	if s, ok := c.packSizes[id]; ok {
		return s
	}
	return pack.PackSize(c.indexedPacks[id])
}

// ReadPacks reads every pack in ids in full (phase 5): the SHA-256 of the
// pack must equal its name, every indexed blob must decrypt, decompress and
// hash to its ID, the indexed blobs must neither overlap nor leave gaps, and
// the pack header must list exactly the indexed blobs. A pack that fails is
// read once more; packs that fail twice are reported and recorded in
// Stats().DamagedPack.
//
// Each of a fixed set of workers streams one pack at a time through buffers
// it reuses: every blob is decrypted in place, so memory stays bounded by
// the largest blob per worker. The two SHA-256 streams, the pack's and the
// blobs', are computed side by side (sha256x.Write2): a blob's encrypted
// bytes are hashed for the pack together with the previous blob's
// plaintext, which is then compared with its ID.
func (c *Checker) ReadPacks(ctx context.Context, ids core.IDs) error {
	if c.indexedPacks == nil {
		return errors.New("read packs: index not loaded")
	}
	workers := min(c.opts.ReadParallel, len(ids))
	bufSize, plainSize := c.bufferSizes(ids)
	// largest packs first, so that the workers finish close together
	order := append(core.IDs(nil), ids...)
	sort.SliceStable(order, func(i, j int) bool { return c.packSize(order[i]) > c.packSize(order[j]) })
	var next atomic.Int64 // index into order of the next pack to read
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			v := newPackVerifier(bufSize, plainSize)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(order) {
					return nil
				}
				if err := c.verifyPack(gctx, v, order[i]); err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("read packs: %w", err)
	}
	return nil
}

// bufferSizes returns the sizes of a ReadPacks worker's stream and
// decompression buffers for ids: room for the largest blob and the largest
// plaintext, so that the buffers are allocated once, not grown step by
// step, and at most maxKeptBuffer each.
func (c *Checker) bufferSizes(ids core.IDs) (bufSize, plainSize int) {
	var maxSealed, maxPlain int
	for _, id := range ids {
		for _, b := range c.indexedPacks[id] {
			maxSealed = max(maxSealed, int(b.Length))
			maxPlain = max(maxPlain, int(b.UncompressedLength))
		}
	}
	bufSize = min(max(minStreamBuffer, maxSealed+readAhead), maxKeptBuffer)
	if maxPlain > 0 {
		plainSize = min(maxPlain+plainSlack, maxKeptBuffer)
	}
	return bufSize, plainSize
}

// WorkingMemory returns about how much memory besides the loaded index
// CheckStructure and ReadPacks(ids) hold at most: the read workers'
// buffers (more only for blobs larger than 32 MiB) and the trees being
// decoded, each taken to need a few times its size.
func (c *Checker) WorkingMemory(ids core.IDs) int64 {
	bufSize, plainSize := c.bufferSizes(ids)
	// per worker: the stream buffer, two plaintext buffers and a piece
	read := int64(min(c.opts.ReadParallel, len(ids))) * (int64(bufSize) + 2*int64(plainSize) + pieceSize)
	var maxTree int64
	for _, blobs := range c.indexedPacks {
		for _, b := range blobs {
			if b.Type == core.TreeBlob {
				maxTree = max(maxTree, int64(b.Length), int64(b.UncompressedLength))
			}
		}
	}
	return read + int64(c.opts.Parallel)*4*maxTree
}

// verifyPack reads pack id (twice if the first read finds problems),
// reports what it found and updates the statistics. The error is only for
// cancellation.
func (c *Checker) verifyPack(ctx context.Context, v *packVerifier, id core.ID) error {
	blobs := c.indexedPacks[id]
	var probs []string
	var n int64
	for attempt := 0; attempt < 2; attempt++ {
		n, probs = c.readPack(ctx, v, id, blobs)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(probs) == 0 {
			if attempt > 0 {
				c.report(Problem{Severity: SeverityHint, Kind: KindPackReadTransient, Pack: id,
					Message: fmt.Sprintf("pack %v failed to verify once but passed on a second read (flaky storage or network?)", id)})
			}
			break
		}
	}
	c.mu.Lock()
	c.stats.PacksRead++
	c.stats.BytesRead += n
	if len(probs) > 0 {
		c.stats.DamagedPack = append(c.stats.DamagedPack, id)
		sort.Sort(c.stats.DamagedPack)
	}
	c.mu.Unlock()
	for _, p := range probs {
		c.report(Problem{Severity: SeverityError, Kind: KindPackDamaged, Pack: id,
			Message: fmt.Sprintf("pack %v: %s", id, p)})
	}
	return nil
}

// defaultReadParallel is the number of ReadPacks workers for r: one per
// core, since verifying is CPU-bound (kernel readahead keeps sequential
// local reads ahead of it), or one per backend connection if there are
// more, so that a remote backend's latency is hidden.
func defaultReadParallel(r *repo.Repository) int {
	return max(runtime.GOMAXPROCS(0), r.Connections())
}

// packVerifier is one ReadPacks worker's reusable state.
type packVerifier struct {
	s packStream
	// plain are two plaintext buffers (decompressed or decrypted blobs)
	// and blob the SHA-256 of the blob in each: a blob's plaintext is
	// still being hashed while the next one is decoded into the other
	// buffer (readPack).
	plain [2][]byte
	blob  [2]*sha256x.Digest
	// piece and whole serve uncompressed blobs, decrypted and hashed a
	// piece at a time beside the pack's hash (readPack)
	piece []byte
	whole *sha256x.Digest
	// plainSize is the capacity plain gets when a blob needs more.
	plainSize int
}

// checkUncompressed hashes an uncompressed blob's encrypted bytes for the
// pack and its plaintext, decrypted a piece at a time, side by side, and
// compares the plaintext's hash with the blob's ID.
func (c *Checker) checkUncompressed(v *packVerifier, b pack.Blob, sealed []byte, probs *[]string) {
	v.whole.Reset()
	hashed := 0 // sealed bytes given to the pack hash
	last := crypto.PlaintextLength(len(sealed))
	err := c.r.OpenBlobPieces(b, sealed, v.piece, func(off int, plain []byte) {
		end := crypto.IVSize + off + len(plain)
		if off+len(plain) == last {
			end = len(sealed) // the MAC with the last piece
		}
		sha256x.Write2(v.s.hash, sealed[hashed:end], v.whole, plain)
		hashed = end
	})
	v.s.hash.Write(sealed[hashed:])
	if err != nil {
		*probs = append(*probs, err.Error())
		return
	}
	if core.ID(v.whole.Sum()) != b.ID {
		*probs = append(*probs, fmt.Sprintf("blob %v: content does not match its ID: %v", b.BlobHandle, repo.ErrInvalidData))
	}
}

// pieceSize is how much of an uncompressed blob is decrypted at a time.
const pieceSize = 64 << 10

// pendingBlob is a decoded blob whose plaintext is partly hashed.
type pendingBlob struct {
	blob *pack.Blob
	d    *sha256x.Digest // the plaintext's SHA-256 so far
	rest []byte          // plaintext not yet written to d
	slot int             // the packVerifier buffer holding the plaintext
}

// plainSlack is room past a plaintext's end that lets zstd use its fastest
// copies.
const plainSlack = 64

// newPackVerifier returns a worker's state; its buffers get bufSize and
// plainSize bytes when a blob first needs more.
func newPackVerifier(bufSize, plainSize int) *packVerifier {
	return &packVerifier{s: packStream{hash: sha256x.New(), bufSize: bufSize}, plainSize: plainSize,
		blob:  [2]*sha256x.Digest{sha256x.New(), sha256x.New()},
		piece: make([]byte, pieceSize), whole: sha256x.New()}
}

// maxKeptBuffer bounds the buffers a worker keeps between packs; a larger
// one (a huge blob or a long unindexed tail) is dropped after its pack.
const maxKeptBuffer = 32 << 20

// readPack streams pack id once and returns the bytes read and the problems
// found (empty: the pack is sound).
func (c *Checker) readPack(ctx context.Context, v *packVerifier, id core.ID, blobs []pack.Blob) (int64, []string) {
	var probs []string
	s := &v.s
	defer func() {
		s.rd = nil
		if cap(s.buf) > maxKeptBuffer {
			s.buf = nil
		}
		for i := range v.plain {
			if cap(v.plain[i]) > maxKeptBuffer {
				v.plain[i] = nil
			}
		}
	}()
	h := backend.Handle{Type: core.PackFile, Name: id.String()}
	err := c.r.Backend().Load(ctx, h, 0, 0, func(rd io.Reader) error {
		// Load may call fn again on a retry: start afresh.
		probs = probs[:0]
		s.reset(rd)
		// The blobs' SHA-256 runs side by side with the pack's
		// (sha256x.Write2). An uncompressed blob is decrypted a piece at a
		// time, each piece hashed together with the pack's bytes it came
		// from. A compressed blob is decoded in place into one of two
		// alternating buffers; pend is the last one, whose plaintext may
		// not be fully hashed yet. Blob k's encrypted bytes must be hashed
		// for the pack before they are decrypted: they are paired with
		// pend's rest; after decoding, what is left of pend is paired with
		// blob k's plaintext, whose rest becomes the new pend (an
		// uncompressed blob in between leaves pend waiting).
		var pend *pendingBlob
		finish := func(p *pendingBlob) {
			p.d.Write(p.rest)
			if core.ID(p.d.Sum()) != p.blob.ID {
				probs = append(probs, fmt.Sprintf("blob %v: content does not match its ID: %v", p.blob.BlobHandle, repo.ErrInvalidData))
			}
		}
		// fail ends the pack early: the pending blob is still judged
		fail := func(err error, op string) error {
			if pend != nil {
				finish(pend)
				pend = nil
			}
			return readErr(err, op)
		}
		for i := range blobs {
			b := blobs[i]
			off := int64(b.Offset)
			if off < s.pos {
				probs = append(probs, fmt.Sprintf("blob %v at offset %d overlaps the previous blob (ends at %d)", b.BlobHandle, off, s.pos))
				continue
			}
			if off > s.pos {
				probs = append(probs, fmt.Sprintf("gap of %d bytes before blob %v at offset %d", off-s.pos, b.BlobHandle, off))
				if err := s.skip(off - s.pos); err != nil {
					return fail(err, "skip gap")
				}
			}
			if size, ok := c.packSizes[id]; ok && off+int64(b.Length) > size {
				// the read would fail anyway; do not allocate for it
				return fail(io.ErrUnexpectedEOF, fmt.Sprintf("read blob %v", b.BlobHandle))
			}
			sealed, err := s.next(int(b.Length))
			if err != nil {
				return fail(err, fmt.Sprintf("read blob %v", b.BlobHandle))
			}
			if !b.IsCompressed() {
				c.checkUncompressed(v, b, sealed, &probs)
				continue
			}
			if pend != nil {
				n := min(len(sealed), len(pend.rest))
				sha256x.Write2(s.hash, sealed[:n], pend.d, pend.rest[:n])
				pend.rest = pend.rest[n:]
				s.hash.Write(sealed[n:])
			} else {
				s.hash.Write(sealed)
			}
			slot := 0
			if pend != nil {
				slot = 1 - pend.slot
			}
			if need := int(b.UncompressedLength) + plainSlack; cap(v.plain[slot]) < need {
				v.plain[slot] = make([]byte, 0, max(need, v.plainSize))
			}
			plain, dst, err := c.r.DecodeBlobUnchecked(b, sealed, v.plain[slot])
			v.plain[slot] = dst
			if err != nil {
				probs = append(probs, err.Error())
				continue
			}
			cur := &pendingBlob{blob: &blobs[i], d: v.blob[slot], rest: plain, slot: slot}
			cur.d.Reset()
			if pend != nil {
				n := min(len(pend.rest), len(plain))
				sha256x.Write2(pend.d, pend.rest, cur.d, plain[:n])
				cur.rest = plain[n:]
				pend.rest = nil
				finish(pend)
			}
			pend = cur
		}
		if pend != nil {
			finish(pend)
			pend = nil
		}
		rest, dropped, err := s.rest(maxHeaderTail)
		if err != nil {
			return readErr(err, "read pack header")
		}
		if got := core.ID(s.hash.Sum()); got != id {
			probs = append(probs, fmt.Sprintf("pack content hashes to %v, not to its name (the file is damaged)", got))
		}
		probs = append(probs, c.checkHeader(rest, dropped, blobs)...)
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return s.pos, []string{ctx.Err().Error()}
		}
		return s.pos, append(probs, fmt.Sprintf("cannot read: %v", err))
	}
	return s.pos, probs
}

// maxHeaderTail is the most of a pack's tail kept in memory to find the
// header in: the largest valid header plus room for unindexed bytes.
const maxHeaderTail = pack.MaxHeaderSize + 1<<20

const (
	// readAhead is how much more than the next blob one read asks for, so
	// runs of small blobs (trees, small files) need few reads.
	readAhead = 256 << 10
	// minStreamBuffer is a packStream's initial buffer size.
	minStreamBuffer = 1 << 20
)

// packStream reads a pack front to back and hands out contiguous ranges of
// it from one reused buffer: a blob is copied only when it straddles the end
// of what an earlier read brought in. Every byte goes to hash once: skip and
// rest hash what they consume; the caller of next hashes the range next
// returns before it modifies it or calls the stream again (so that it can
// pair the pack's hash with another, sha256x.Write2).
type packStream struct {
	rd   io.Reader
	hash *sha256x.Digest
	buf  []byte // buf[r:w] is read but not yet handed out or hashed
	r, w int
	pos  int64 // pack offset of buf[r]: bytes handed out or skipped so far
	// bufSize is the size buf gets when it must grow for a blob that fits.
	bufSize int
}

func (s *packStream) reset(rd io.Reader) {
	s.rd = rd
	s.hash.Reset()
	s.r, s.w, s.pos = 0, 0, 0
}

// fill makes at least n bytes available in buf[r:w]. It moves what is
// buffered to the front and grows buf only when it must.
func (s *packStream) fill(n int) error {
	if s.w-s.r >= n {
		return nil
	}
	if len(s.buf) < n {
		size := max(minStreamBuffer, n+readAhead)
		if n <= s.bufSize {
			size = max(size, s.bufSize)
		}
		nb := make([]byte, size)
		s.w = copy(nb, s.buf[s.r:s.w])
		s.r, s.buf = 0, nb
	} else if len(s.buf)-s.r < n {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	for s.w-s.r < n {
		end := min(len(s.buf), max(s.r+n, s.w+readAhead))
		m, err := s.rd.Read(s.buf[s.w:end])
		s.w += m
		if err != nil {
			if s.w-s.r >= n {
				return nil // EOF (or an error) after enough bytes: the next read sees it again
			}
			return err
		}
	}
	return nil
}

// next returns the next n bytes of the pack. The slice is valid until the
// next call; the caller must feed it to s.hash before it modifies it or
// calls the stream again.
func (s *packStream) next(n int) ([]byte, error) {
	if err := s.fill(n); err != nil {
		return nil, err
	}
	b := s.buf[s.r : s.r+n : s.r+n]
	s.r += n
	s.pos += int64(n)
	return b, nil
}

// skip reads and hashes n bytes without handing them out.
func (s *packStream) skip(n int64) error {
	for n > 0 {
		k := int(min(n, int64(max(len(s.buf), minStreamBuffer))))
		if err := s.fill(k); err != nil {
			return err
		}
		s.hash.Write(s.buf[s.r : s.r+k])
		s.r += k
		s.pos += int64(k)
		n -= int64(k)
	}
	return nil
}

// rest reads the pack to its end and returns its last bytes, at most max
// of them, and how many bytes before those it read but did not keep.
func (s *packStream) rest(maxLen int) ([]byte, int64, error) {
	var dropped int64
	for {
		if s.w == len(s.buf) {
			switch {
			case s.w-s.r > maxLen:
				// keep the newest maxLen bytes only
				drop := s.w - s.r - maxLen
				dropped += int64(drop)
				s.pos += int64(drop)
				s.hash.Write(s.buf[s.r : s.r+drop])
				s.r += drop
				s.w = copy(s.buf, s.buf[s.r:s.w])
				s.r = 0
			case s.r > 0:
				s.w = copy(s.buf, s.buf[s.r:s.w])
				s.r = 0
			default:
				nb := make([]byte, max(minStreamBuffer, 2*len(s.buf)))
				s.w = copy(nb, s.buf[s.r:s.w])
				s.r, s.buf = 0, nb
			}
		}
		m, err := s.rd.Read(s.buf[s.w:])
		s.w += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, dropped, err
		}
	}
	if over := s.w - s.r - maxLen; over > 0 {
		dropped += int64(over)
		s.pos += int64(over)
		s.hash.Write(s.buf[s.r : s.r+over])
		s.r += over
	}
	b := s.buf[s.r:s.w]
	s.hash.Write(b)
	s.pos += int64(len(b))
	s.r = s.w
	return b, dropped, nil
}

// errShort marks a pack that ends before the index says it should.
var errShort = errors.New("pack is shorter than the index says")

func readErr(err error, op string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: %w", op, errShort)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// checkHeader parses the trailing header from rest (the end of the pack after
// the last indexed blob, less dropped bytes before it that were not kept)
// and compares it with the indexed blobs.
func (c *Checker) checkHeader(rest []byte, dropped int64, blobs []pack.Blob) []string {
	wantPlain := pack.HeaderPlaintextSize(blobs)
	wantLen := wantPlain + crypto.Extension
	if len(rest) < 4 {
		return []string{fmt.Sprintf("only %d bytes follow the last blob; no room for a header", dropped+int64(len(rest)))}
	}
	hlen := int64(binary.LittleEndian.Uint32(rest[len(rest)-4:]))
	var probs []string
	if hlen != int64(wantLen) {
		probs = append(probs, fmt.Sprintf("header length %d differs from the %d bytes the index implies", hlen, wantLen))
	}
	if hlen+4 > int64(len(rest)) || hlen < crypto.Extension {
		return append(probs, fmt.Sprintf("header length %d does not fit the %d bytes after the last blob", hlen, dropped+int64(len(rest))))
	}
	if extra := dropped + int64(len(rest)) - hlen - 4; extra != 0 {
		probs = append(probs, fmt.Sprintf("%d unindexed bytes between the last blob and the header", extra))
	}
	plain, err := c.r.Key().Open(nil, rest[int64(len(rest))-4-hlen:len(rest)-4])
	if err != nil {
		return append(probs, fmt.Sprintf("header cannot be decrypted: %v", err))
	}
	hdr, err := pack.DecodeHeader(plain)
	if err != nil {
		return append(probs, fmt.Sprintf("header cannot be decoded: %v", err))
	}
	if len(hdr) != len(blobs) {
		probs = append(probs, fmt.Sprintf("header lists %d blobs, the index %d", len(hdr), len(blobs)))
	}
	for i := 0; i < len(hdr) && i < len(blobs); i++ {
		if hdr[i] != blobs[i] {
			h, b := hdr[i], blobs[i]
			probs = append(probs, fmt.Sprintf("header entry %d (%v offset %d length %d uncompressed %d) differs from the index (%v offset %d length %d uncompressed %d)",
				i, h.BlobHandle, h.Offset, h.Length, h.UncompressedLength, b.BlobHandle, b.Offset, b.Length, b.UncompressedLength))
		}
	}
	return probs
}
