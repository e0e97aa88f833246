// Package checker verifies a repository the way `restic check` does: the
// index files, the pack files against the index, every snapshot and every
// tree reachable from it, and optionally the content of the pack files.
//
// The phases are methods of Checker and run in this order: ListSnapshots,
// LoadIndex, CheckPacks, CheckStructure, and optionally ReadPacks, which
// may also run concurrently with CheckStructure (they share only the
// loaded index). Every
// problem is reported as a Problem through the Report callback; a method
// returns an error only when it cannot go on (listing failed, cancelled, or
// LoadIndex found damaged index files). The checker never uses a cache: it
// reads every file from the backend.
package checker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// Severity says whether a problem makes the repository erroneous.
type Severity string

// Severities.
const (
	SeverityError Severity = "error"
	SeverityHint  Severity = "hint"
)

// Kind classifies a problem.
type Kind string

// Problem kinds.
const (
	KindIndexDamaged      Kind = "index_damaged"         // an index file fails to load or decode
	KindIncompletePack    Kind = "incomplete_pack_entry" // a pack's blob lists differ across index files
	KindDuplicatePack     Kind = "duplicate_pack"        // hint: a pack is listed in several index files
	KindMixedPack         Kind = "mixed_pack"            // hint: a pack holds data and tree blobs
	KindMissingPack       Kind = "missing_pack"          // indexed pack not in the backend
	KindTruncatedPack     Kind = "truncated_pack"        // pack size differs from the index-computed size
	KindOrphanedPack      Kind = "orphaned_pack"         // hint: pack in no index
	KindSnapshotDamaged   Kind = "snapshot_damaged"      // a snapshot fails to load
	KindTreeMissing       Kind = "tree_missing"          // a referenced tree is not in the index
	KindTreeDamaged       Kind = "tree_damaged"          // a tree fails to load or decode
	KindNodeInvalid       Kind = "node_invalid"          // a node breaks the structural rules
	KindBlobMissing       Kind = "blob_missing"          // a file's data blob is not in the index
	KindPackDamaged       Kind = "pack_damaged"          // --read-data found a damaged pack
	KindPackReadTransient Kind = "pack_read_retried"     // hint: a pack failed once and passed on retry
)

// Problem is one finding of the checker. Null IDs and empty strings mean
// "not applicable".
type Problem struct {
	Severity Severity
	Kind     Kind
	Index    core.ID // index file
	Pack     core.ID
	Snapshot core.ID
	Tree     core.ID
	Blob     core.ID
	Path     string // path inside the snapshot
	Message  string
}

func (p Problem) String() string { return p.Message }

// IsError reports whether p counts as an error.
func (p Problem) IsError() bool { return p.Severity == SeverityError }

// ErrIndexDamaged is returned by LoadIndex when index files are damaged;
// the check cannot go on reliably (restic stops there too).
var ErrIndexDamaged = errors.New("index is damaged; run `cairn repair index` (or `restic repair index`)")

// Options tune a check.
type Options struct {
	// Report receives every problem. Calls are serialised. May be nil.
	Report func(Problem)
	// Parallel bounds concurrent backend requests and decoders
	// (default: r.Connections() + GOMAXPROCS).
	Parallel int
	// ReadParallel is how many packs ReadPacks reads at once, each with
	// buffers as large as its largest blob (default: see New).
	ReadParallel int
}

// Stats counts what a check covered.
type Stats struct {
	Snapshots   int
	IndexFiles  int
	Packs       int // packs in the index
	Trees       int // distinct trees checked
	PacksRead   int
	BytesRead   int64
	Errors      int
	Hints       int
	DamagedPack core.IDs // packs that failed ReadPacks, sorted
}

// Checker runs the phases of a check on one repository.
type Checker struct {
	r    *repo.Repository
	opts Options

	mu sync.Mutex // guards stats and serialises opts.Report calls
	// stats is what Stats returns.
	stats Stats

	snapshotIDs core.IDs
	// indexedPacks maps each indexed pack to its blobs (sorted by offset);
	// set by LoadIndex.
	indexedPacks map[core.ID][]pack.Blob
	// packSizes holds the backend's size of every listed pack; set by
	// CheckPacks.
	packSizes map[core.ID]int64
}

// New returns a checker for r.
func New(r *repo.Repository, opts Options) *Checker {
	if opts.Parallel <= 0 {
		opts.Parallel = r.Connections() + runtime.GOMAXPROCS(0)
	}
	if opts.ReadParallel <= 0 {
		opts.ReadParallel = defaultReadParallel(r)
	}
	return &Checker{r: r, opts: opts}
}

func (c *Checker) report(p Problem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.IsError() {
		c.stats.Errors++
	} else {
		c.stats.Hints++
	}
	if c.opts.Report != nil {
		c.opts.Report(p)
	}
}

// Stats returns the counters so far.
func (c *Checker) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.DamagedPack = append(core.IDs(nil), s.DamagedPack...)
	return s
}

// ListSnapshots lists the snapshot files (phase 1: before the index is
// loaded, so that snapshots added later by a concurrent backup, whose data
// may not be indexed yet, are not checked).
func (c *Checker) ListSnapshots(ctx context.Context) (core.IDs, error) {
	ids, err := c.r.ListIDs(ctx, core.SnapshotFile)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	sort.Sort(ids)
	c.snapshotIDs = ids
	c.mu.Lock()
	c.stats.Snapshots = len(ids)
	c.mu.Unlock()
	return ids, nil
}

// LoadIndex loads every index file into a fresh master index, which then
// replaces r's index (phase 2). Every damaged index file is reported; if any
// is damaged, LoadIndex returns an error wrapping ErrIndexDamaged. It
// reports packs listed by several index files, packs holding both blob
// types, and packs whose blob lists differ between index files.
func (c *Checker) LoadIndex(ctx context.Context) error {
	ids, err := c.r.ListIDs(ctx, core.IndexFile)
	if err != nil {
		return fmt.Errorf("check: load index: %w", err)
	}
	sort.Sort(ids)
	files := make([]*index.File, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Parallel)
	damaged := 0
	var dmu sync.Mutex // guards damaged
	for i, id := range ids {
		g.Go(func() error {
			f, err := c.r.LoadIndexFile(gctx, id)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				dmu.Lock()
				damaged++
				dmu.Unlock()
				c.report(Problem{Severity: SeverityError, Kind: KindIndexDamaged, Index: id,
					Message: fmt.Sprintf("index file %v is damaged: %v", id, err)})
				return nil
			}
			files[i] = f
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("check: load index: %w", err)
	}
	c.mu.Lock()
	c.stats.IndexFiles = len(ids)
	c.mu.Unlock()
	if damaged > 0 {
		return fmt.Errorf("check: %d of %d index files damaged: %w", damaged, len(ids), ErrIndexDamaged)
	}

	m := index.NewMaster()
	// per pack: the index files listing it and the first blob list seen
	type seen struct {
		files []core.ID
		blobs []pack.Blob
	}
	packs := make(map[core.ID]*seen)
	incomplete := core.NewIDSet()
	for i, f := range files {
		m.AddFile(ids[i], f)
		for _, pe := range f.Packs {
			bl := append([]pack.Blob(nil), pe.Blobs...)
			index.SortBlobs(bl)
			s, ok := packs[pe.ID]
			if !ok {
				packs[pe.ID] = &seen{files: []core.ID{ids[i]}, blobs: bl}
				continue
			}
			s.files = append(s.files, ids[i])
			if !sameBlobs(s.blobs, bl) && !incomplete.Has(pe.ID) {
				incomplete.Insert(pe.ID)
				c.report(Problem{Severity: SeverityError, Kind: KindIncompletePack, Pack: pe.ID, Index: ids[i],
					Message: fmt.Sprintf("pack %v: blob lists differ between index files %v and %v (incomplete pack entry)",
						pe.ID, s.files[0].Str(), ids[i].Str())})
			}
		}
	}
	packIDs := make(core.IDs, 0, len(packs))
	for id := range packs {
		packIDs = append(packIDs, id)
	}
	sort.Sort(packIDs)
	for _, id := range packIDs {
		s := packs[id]
		if len(s.files) > 1 && !incomplete.Has(id) {
			names := make([]string, len(s.files))
			for i, f := range s.files {
				names[i] = f.Str()
			}
			c.report(Problem{Severity: SeverityHint, Kind: KindDuplicatePack, Pack: id,
				Message: fmt.Sprintf("pack %v is listed in %d index files (%s); run `cairn repair index` to clean up",
					id, len(s.files), strings.Join(names, ", "))})
		}
		var hasData, hasTree bool
		for _, b := range s.blobs {
			hasData = hasData || b.Type == core.DataBlob
			hasTree = hasTree || b.Type == core.TreeBlob
		}
		if hasData && hasTree {
			c.report(Problem{Severity: SeverityHint, Kind: KindMixedPack, Pack: id,
				Message: fmt.Sprintf("pack %v holds both data and tree blobs (mixed pack); `cairn prune` separates them", id)})
		}
	}
	c.r.SetIndex(m)
	c.indexedPacks = m.PackContents()
	c.mu.Lock()
	c.stats.Packs = len(c.indexedPacks)
	c.mu.Unlock()
	return nil
}

func sameBlobs(a, b []pack.Blob) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// CheckPacks compares the backend's pack listing with the index (phase 3):
// missing packs and packs whose size differs from the size their indexed
// blobs imply are errors; packs in no index are hints.
func (c *Checker) CheckPacks(ctx context.Context) error {
	if c.indexedPacks == nil {
		return errors.New("check packs: index not loaded")
	}
	sizes := make(map[core.ID]int64)
	err := c.r.List(ctx, core.PackFile, func(id core.ID, size int64) error {
		sizes[id] = size
		return nil
	})
	if err != nil {
		return fmt.Errorf("check packs: list: %w", err)
	}
	c.packSizes = sizes
	indexed := make(core.IDs, 0, len(c.indexedPacks))
	for id := range c.indexedPacks {
		indexed = append(indexed, id)
	}
	sort.Sort(indexed)
	for _, id := range indexed {
		size, ok := sizes[id]
		if !ok {
			c.report(Problem{Severity: SeverityError, Kind: KindMissingPack, Pack: id,
				Message: fmt.Sprintf("pack %v does not exist (it is in the index but missing from the repository)", id)})
			continue
		}
		want := pack.PackSize(c.indexedPacks[id])
		if size != want {
			what := "is truncated"
			if size > want {
				what = "is larger than expected"
			}
			c.report(Problem{Severity: SeverityError, Kind: KindTruncatedPack, Pack: id,
				Message: fmt.Sprintf("pack %v %s: size %d, the index implies %d (truncated or damaged pack)", id, what, size, want)})
		}
	}
	var orphans core.IDs
	for id := range sizes {
		if _, ok := c.indexedPacks[id]; !ok {
			orphans = append(orphans, id)
		}
	}
	sort.Sort(orphans)
	for _, id := range orphans {
		c.report(Problem{Severity: SeverityHint, Kind: KindOrphanedPack, Pack: id,
			Message: fmt.Sprintf("pack %v is not referenced in any index (orphaned); run `cairn prune` to remove it", id)})
	}
	return nil
}
