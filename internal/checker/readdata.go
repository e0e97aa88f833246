package checker

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/repo/pack"
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
func (c *Checker) ReadPacks(ctx context.Context, ids core.IDs) error {
	if c.indexedPacks == nil {
		return errors.New("read packs: index not loaded")
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Parallel)
	for _, id := range ids {
		blobs := c.indexedPacks[id]
		g.Go(func() error {
			var probs []string
			var n int64
			for attempt := 0; attempt < 2; attempt++ {
				n, probs = c.readPack(gctx, id, blobs)
				if gctx.Err() != nil {
					return gctx.Err()
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
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("read packs: %w", err)
	}
	return nil
}

// readPack streams pack id once and returns the bytes read and the problems
// found (empty: the pack is sound).
func (c *Checker) readPack(ctx context.Context, id core.ID, blobs []pack.Blob) (int64, []string) {
	var probs []string
	var total int64
	h := backend.Handle{Type: core.PackFile, Name: id.String()}
	err := c.r.Backend().Load(ctx, h, 0, 0, func(rd io.Reader) error {
		// Load may call fn again on a retry: start afresh.
		probs = probs[:0]
		hash := sha256.New()
		br := bufio.NewReaderSize(io.TeeReader(rd, hash), 256<<10)
		var pos int64
		var buf, plain []byte
		for _, b := range blobs {
			off := int64(b.Offset)
			if off < pos {
				probs = append(probs, fmt.Sprintf("blob %v at offset %d overlaps the previous blob (ends at %d)", b.BlobHandle, off, pos))
				continue
			}
			if off > pos {
				probs = append(probs, fmt.Sprintf("gap of %d bytes before blob %v at offset %d", off-pos, b.BlobHandle, off))
				n, err := io.CopyN(io.Discard, br, off-pos)
				pos += n
				if err != nil {
					return readErr(err, "skip gap")
				}
			}
			if cap(buf) < int(b.Length) {
				buf = make([]byte, b.Length)
			}
			buf = buf[:b.Length]
			n, err := io.ReadFull(br, buf)
			pos += int64(n)
			if err != nil {
				return readErr(err, fmt.Sprintf("read blob %v", b.BlobHandle))
			}
			p, err := c.r.DecodeBlob(b, buf, plain)
			if err != nil {
				probs = append(probs, err.Error())
				continue
			}
			plain = p
		}
		rest, err := io.ReadAll(br)
		if err != nil {
			return readErr(err, "read pack header")
		}
		total = pos + int64(len(rest))
		if got := core.ID(hash.Sum(nil)); got != id {
			probs = append(probs, fmt.Sprintf("pack content hashes to %v, not to its name (the file is damaged)", got))
		}
		probs = append(probs, c.checkHeader(rest, blobs)...)
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return total, []string{ctx.Err().Error()}
		}
		return total, append(probs, fmt.Sprintf("cannot read: %v", err))
	}
	return total, probs
}

// errShort marks a pack that ends before the index says it should.
var errShort = errors.New("pack is shorter than the index says")

func readErr(err error, op string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: %w", op, errShort)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// checkHeader parses the trailing header from rest (everything after the
// last indexed blob) and compares it with the indexed blobs.
func (c *Checker) checkHeader(rest []byte, blobs []pack.Blob) []string {
	wantPlain := pack.HeaderPlaintextSize(blobs)
	wantLen := wantPlain + crypto.Extension
	if len(rest) < 4 {
		return []string{fmt.Sprintf("only %d bytes follow the last blob; no room for a header", len(rest))}
	}
	hlen := int64(binary.LittleEndian.Uint32(rest[len(rest)-4:]))
	var probs []string
	if hlen != int64(wantLen) {
		probs = append(probs, fmt.Sprintf("header length %d differs from the %d bytes the index implies", hlen, wantLen))
	}
	if hlen+4 > int64(len(rest)) || hlen < crypto.Extension {
		return append(probs, fmt.Sprintf("header length %d does not fit the %d bytes after the last blob", hlen, len(rest)))
	}
	if hlen+4 != int64(len(rest)) {
		probs = append(probs, fmt.Sprintf("%d unindexed bytes between the last blob and the header", int64(len(rest))-hlen-4))
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
