package prune

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// Options select what prune repacks and deletes (restic's flags).
type Options struct {
	MaxUnused           string // "5%" (default), "unlimited", or a size
	MaxRepackSize       int64  // bytes; <0 unlimited
	RepackCacheableOnly bool
	RepackSmall         bool
	RepackUncompressed  bool
	DryRun              bool
	// Logf, if set, is told about each phase as it starts.
	Logf func(format string, args ...any)
	// RepackProgress, if set, is told how many of the packs to repack are
	// done.
	RepackProgress func(done, total int)
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// maxUnusedLimit turns --max-unused into a byte limit given the used bytes.
func maxUnusedLimit(s string, used int64) (int64, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		s = "5%"
	case s == "unlimited":
		return math.MaxInt64, nil
	}
	if strings.HasSuffix(s, "%") {
		p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || p < 0 || p >= 100 {
			return 0, fmt.Errorf("invalid --max-unused %q: want a percentage in [0, 100)", s)
		}
		lim := p / (100 - p) * float64(used)
		if lim >= math.MaxInt64 {
			return math.MaxInt64, nil // a float-to-int overflow would turn negative
		}
		return int64(lim), nil
	}
	n, err := ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("invalid --max-unused %q: %w", s, err)
	}
	return n, nil
}

// ParseSize parses a size with an optional k/m/g/t suffix (powers of 1024).
func ParseSize(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * mult, nil
}

type packInfo struct {
	id           core.ID
	size         int64 // computed from the index
	usedSize     int64
	unusedSize   int64
	usedBlobs    int
	unusedBlobs  int
	tpe          core.BlobType // InvalidBlob: mixed
	uncompressed bool
}

// Plan is what a prune will do.
type Plan struct {
	Remove            core.IDSet // packs without used blobs
	Repack            core.IDSet // packs whose used blobs are copied, then removed
	Keep              core.IDSet
	Orphans           core.IDSet              // packs in the backend but in no index
	Missing           core.IDSet              // packs in the index but not in the backend (unused ones only)
	keepBlobs         map[core.ID][]pack.Blob // per repacked pack: the blobs to copy
	UsedBytes         int64
	UnusedBytes       int64
	RemoveBytes       int64
	RepackBytes       int64
	RepackUnusedBytes int64
}

// ErrMissingData means a used blob is in no index: prune refuses to run.
type ErrMissingData struct{ Blobs []core.BlobHandle }

func (e *ErrMissingData) Error() string {
	return fmt.Sprintf("%d blobs used by snapshots are not in the index (data missing?): run `cairn check` and `cairn repair index`; refusing to prune", len(e.Blobs))
}

// makePlan classifies packs as restic's prune does. contents are the
// indexed packs with their blobs, listed the packs present in the backend
// with their sizes, pending the packs excluded from consideration (marked
// already; they are neither repacked nor re-marked).
func makePlan(contents map[core.ID][]pack.Blob, listed map[core.ID]int64, used core.BlobSet, v2 bool, opts Options) (*Plan, error) {
	p := &Plan{Remove: core.NewIDSet(), Repack: core.NewIDSet(), Keep: core.NewIDSet(), Orphans: core.NewIDSet(), Missing: core.NewIDSet(), keepBlobs: map[core.ID][]pack.Blob{}}
	// which copy of every used blob is kept: prefer packs with more used
	// bytes (so nearly-full packs stay as they are), ties by ID
	usedIn := map[core.ID]int64{}
	for pid, blobs := range contents {
		for _, b := range blobs {
			if used.Has(b.BlobHandle) {
				usedIn[pid] += int64(b.Length)
			}
		}
	}
	keeper := map[core.BlobHandle]core.ID{}
	for pid, blobs := range contents {
		if _, ok := listed[pid]; !ok {
			continue // a missing pack cannot keep anything
		}
		for _, b := range blobs {
			if !used.Has(b.BlobHandle) {
				continue
			}
			cur, ok := keeper[b.BlobHandle]
			if !ok || usedIn[pid] > usedIn[cur] || (usedIn[pid] == usedIn[cur] && pid.String() > cur.String()) {
				keeper[b.BlobHandle] = pid
			}
		}
	}
	var missing []core.BlobHandle
	for h := range used {
		if _, ok := keeper[h]; !ok {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		return nil, &ErrMissingData{Blobs: missing}
	}
	infos := map[core.ID]*packInfo{}
	for pid, blobs := range contents {
		pi := &packInfo{id: pid, size: pack.PackSize(blobs)}
		pi.usedSize = int64(pack.HeaderOverhead + pack.HeaderPlaintextSize(blobs))
		for i, b := range blobs {
			if i == 0 {
				pi.tpe = b.Type
			} else if pi.tpe != b.Type {
				pi.tpe = core.InvalidBlob
			}
			if !b.IsCompressed() {
				pi.uncompressed = true
			}
			if keeper[b.BlobHandle] == pid {
				pi.usedSize += int64(b.Length)
				pi.usedBlobs++
			} else {
				pi.unusedSize += int64(b.Length)
				pi.unusedBlobs++
			}
		}
		infos[pid] = pi
		if _, ok := listed[pid]; !ok {
			if pi.usedBlobs > 0 {
				return nil, fmt.Errorf("pack %v holds used blobs but is missing from the backend", pid.Str())
			}
			p.Missing.Insert(pid)
			continue
		}
		if sz := listed[pid]; sz != pi.size && pi.usedBlobs > 0 {
			return nil, fmt.Errorf("pack %v has size %d, the index says %d: run `cairn repair index`", pid.Str(), sz, pi.size)
		}
	}
	for pid := range listed {
		if _, ok := contents[pid]; !ok {
			p.Orphans.Insert(pid)
		}
	}
	// target size: 4/5 of the pack size at the 3rd percentile, at least 4 MiB
	var sizes []int64
	for _, pi := range infos {
		sizes = append(sizes, pi.size)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	target := int64(4 << 20)
	if len(sizes) > 0 {
		if s := sizes[len(sizes)*3/100]; s > target {
			target = s
		}
	}
	target = target * 4 / 5

	var candidates, small []*packInfo
	for _, pi := range infos {
		p.UsedBytes += pi.usedSize
		p.UnusedBytes += pi.unusedSize
		if p.Missing.Has(pi.id) {
			continue
		}
		mustCompress := v2 && pi.uncompressed && (pi.tpe == core.TreeBlob || opts.RepackUncompressed)
		switch {
		case pi.usedBlobs == 0:
			p.Remove.Insert(pi.id)
			p.RemoveBytes += pi.size
		case opts.RepackCacheableOnly && pi.tpe == core.DataBlob:
			p.Keep.Insert(pi.id)
		case pi.unusedBlobs == 0 && pi.tpe != core.InvalidBlob && !mustCompress:
			if pi.size >= target {
				p.Keep.Insert(pi.id)
			} else {
				small = append(small, pi)
			}
		default:
			candidates = append(candidates, pi)
		}
	}
	if len(small) >= 10 || (opts.RepackSmall && len(small) >= 2) {
		candidates = append(candidates, small...)
	} else {
		for _, pi := range small {
			p.Keep.Insert(pi.id)
		}
	}
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if (a.tpe != core.DataBlob) != (b.tpe != core.DataBlob) {
			return a.tpe != core.DataBlob
		}
		if (a.size < target) != (b.size < target) {
			return a.size < target
		}
		if x, y := a.unusedSize*b.usedSize, b.unusedSize*a.usedSize; x != y {
			return x > y
		}
		return a.id.String() < b.id.String()
	})
	maxUnused, err := maxUnusedLimit(opts.MaxUnused, p.UsedBytes)
	if err != nil {
		return nil, err
	}
	remaining := p.UnusedBytes - func() int64 {
		var n int64
		for id := range p.Remove {
			n += infos[id].unusedSize
		}
		return n
	}()
	maxRepack := opts.MaxRepackSize
	if maxRepack < 0 {
		maxRepack = math.MaxInt64
	}
	for _, pi := range candidates {
		mustCompress := v2 && pi.uncompressed && (pi.tpe == core.TreeBlob || opts.RepackUncompressed)
		switch {
		case p.RepackBytes+pi.size >= maxRepack:
			p.Keep.Insert(pi.id)
		case pi.tpe != core.DataBlob || mustCompress:
			p.repack(pi, contents, keeper)
			remaining -= pi.unusedSize
		case remaining < maxUnused && pi.size >= target:
			p.Keep.Insert(pi.id)
		default:
			p.repack(pi, contents, keeper)
			remaining -= pi.unusedSize
		}
	}
	return p, nil
}

func (p *Plan) repack(pi *packInfo, contents map[core.ID][]pack.Blob, keeper map[core.BlobHandle]core.ID) {
	p.Repack.Insert(pi.id)
	p.RepackBytes += pi.size
	p.RepackUnusedBytes += pi.unusedSize
	var keep []pack.Blob
	for _, b := range contents[pi.id] {
		if keeper[b.BlobHandle] == pi.id {
			keep = append(keep, b)
		}
	}
	p.keepBlobs[pi.id] = keep
}
