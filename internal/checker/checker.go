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
//
// A check holds only a shared lock (docs/concurrency.md, section 9), so
// backups, forgets and prune marks may run alongside it. The checker
// accepts what they legitimately leave: packs uploaded but not indexed yet
// (or marked pending deletion) are hints, index files replaced by a prune
// mark are re-listed, snapshots removed by a forget are skipped, and
// snapshots written after ListSnapshots are not checked (their data may not
// be indexed when LoadIndex runs).
package checker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
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
	KindSnapshotRemoved   Kind = "snapshot_removed"      // hint: a listed snapshot was removed (concurrent forget)
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
	Snapshots  int // snapshots checked (listed, less those a concurrent forget removed)
	IndexFiles int
	Packs      int // packs in the index
	// OrphanedPacks counts packs in the backend but in no index (hints).
	OrphanedPacks int
	Trees         int // distinct trees checked
	PacksRead     int
	BytesRead     int64
	Errors        int
	Hints         int
	DamagedPack   core.IDs // packs that failed ReadPacks, sorted
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
	// pending holds the packs a cairn prune marked for deletion, by the
	// loaded index files; set by LoadIndex.
	pending map[core.ID]index.Pending
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
//
// check runs under a shared lock, so a concurrent prune mark may replace
// index files while they are loaded: it writes the files that replace them
// first and then deletes them. A listed file that has vanished when it is
// loaded is therefore not damage: the listing is taken again (as
// repo.LoadIndex does), files loaded earlier that are no longer listed are
// dropped (their replacements are listed), and the new files are loaded.
func (c *Checker) LoadIndex(ctx context.Context) error {
	loaded := make(map[core.ID]*index.File)
	damaged := core.NewIDSet()
	var ids core.IDs
	for attempt := 1; ; attempt++ {
		var err error
		ids, err = c.r.ListIDs(ctx, core.IndexFile)
		if err != nil {
			return fmt.Errorf("check: load index: %w", err)
		}
		sort.Sort(ids)
		vanished, err := c.loadIndexFiles(ctx, ids, loaded, damaged)
		if err != nil {
			return fmt.Errorf("check: load index: %w", err)
		}
		listed := core.NewIDSet(ids...)
		for id := range loaded {
			if !listed.Has(id) {
				delete(loaded, id) // replaced by a concurrent prune
			}
		}
		if vanished == 0 {
			break
		}
		if attempt == indexListAttempts {
			return fmt.Errorf("check: load index: index files keep vanishing while they are loaded (%d in the last of %d listings)", vanished, attempt)
		}
	}
	files := make([]*index.File, 0, len(ids))
	kept := ids[:0:0]
	for _, id := range ids {
		if f, ok := loaded[id]; ok {
			files = append(files, f)
			kept = append(kept, id)
		}
	}
	c.mu.Lock()
	c.stats.IndexFiles = len(kept) + len(damaged)
	c.mu.Unlock()
	if len(damaged) > 0 {
		return fmt.Errorf("check: %d of %d index files damaged: %w", len(damaged), len(kept)+len(damaged), ErrIndexDamaged)
	}
	ids = kept

	m := index.NewMaster()
	// per pack: the index files listing it, the first blob list seen, and
	// every blob entry any listing gave
	type seen struct {
		files []core.ID
		blobs []pack.Blob
		union map[core.BlobHandle][]pack.Blob
	}
	packs := make(map[core.ID]*seen)
	incomplete := core.NewIDSet() // packs reported as split (a hint)
	conflict := core.NewIDSet()   // packs reported as conflicting (an error)
	for i, f := range files {
		m.AddFile(ids[i], f)
		for _, pe := range f.Packs {
			bl := append([]pack.Blob(nil), pe.Blobs...)
			index.SortBlobs(bl)
			s, ok := packs[pe.ID]
			if !ok {
				s = &seen{files: []core.ID{ids[i]}, blobs: bl, union: make(map[core.BlobHandle][]pack.Blob, len(bl))}
				packs[pe.ID] = s
				for _, b := range bl {
					s.union[b.BlobHandle] = append(s.union[b.BlobHandle], b)
				}
				continue
			}
			s.files = append(s.files, ids[i])
			if sameBlobs(s.blobs, bl) {
				continue
			}
			// Listings that only split the pack's blobs between them
			// (restic#5212) lose nothing: the index merges them (a hint).
			// Listings that place one blob differently cannot both be right
			// (an error; repair index re-reads the pack header).
			clash := false
			for _, b := range bl {
				known := s.union[b.BlobHandle]
				if len(known) > 0 && !slices.Contains(known, b) {
					clash = true
				}
				if !slices.Contains(known, b) {
					s.union[b.BlobHandle] = append(known, b)
				}
			}
			switch {
			case clash && !conflict.Has(pe.ID):
				conflict.Insert(pe.ID)
				c.report(Problem{Severity: SeverityError, Kind: KindIncompletePack, Pack: pe.ID, Index: ids[i],
					Message: fmt.Sprintf("pack %v: index file %v places a blob differently from an earlier listing in %v (conflicting pack entries)",
						pe.ID, ids[i].Str(), s.files[0].Str())})
			case !clash && !incomplete.Has(pe.ID) && !conflict.Has(pe.ID):
				incomplete.Insert(pe.ID)
				c.report(Problem{Severity: SeverityHint, Kind: KindIncompletePack, Pack: pe.ID, Index: ids[i],
					Message: fmt.Sprintf("pack %v: its blobs are split between index files %v and %v (incomplete pack entries; read together, nothing is missing)",
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
				Message: fmt.Sprintf("pack %v is listed in %d index files (%s): a prune that is running or was interrupted leaves this; otherwise run `cairn repair index` to clean up",
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
	c.pending = m.Pending()
	c.mu.Lock()
	c.stats.Packs = len(c.indexedPacks)
	c.mu.Unlock()
	return nil
}

// indexListAttempts bounds how often LoadIndex lists the index files when
// listed files keep vanishing (each prune mark replaces them once).
const indexListAttempts = 5

// loadIndexFiles loads the files of ids that are neither in loaded nor in
// damaged, adding them to one or the other; damaged files are reported. It
// returns how many had vanished (not found) when they were loaded.
func (c *Checker) loadIndexFiles(ctx context.Context, ids core.IDs, loaded map[core.ID]*index.File, damaged core.IDSet) (int, error) {
	var mu sync.Mutex // guards loaded, damaged and vanished
	vanished := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Parallel)
	for _, id := range ids {
		mu.Lock()
		_, done := loaded[id]
		done = done || damaged.Has(id)
		mu.Unlock()
		if done {
			continue
		}
		g.Go(func() error {
			f, err := c.r.LoadIndexFile(gctx, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				loaded[id] = f
			case gctx.Err() != nil:
				return gctx.Err()
			case backend.IsNotExist(err):
				vanished++
			default:
				damaged.Insert(id)
				c.report(Problem{Severity: SeverityError, Kind: KindIndexDamaged, Index: id,
					Message: fmt.Sprintf("index file %v is damaged: %v", id, err)})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return vanished, nil
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
	// Packs in no index are not errors: a backup that is still running
	// (check holds only a shared lock) or that was interrupted uploaded
	// them before writing its index, and a prune mark may have recorded
	// them as pending deletion.
	var orphans core.IDs
	for id := range sizes {
		if _, ok := c.indexedPacks[id]; !ok {
			orphans = append(orphans, id)
		}
	}
	sort.Sort(orphans)
	c.mu.Lock()
	c.stats.OrphanedPacks = len(orphans)
	c.mu.Unlock()
	for _, id := range orphans {
		msg := fmt.Sprintf("pack %v is not referenced in any index (orphaned: the upload of a backup that is running or was interrupted); `cairn prune` removes it once unused", id)
		if p, ok := c.pending[id]; ok {
			msg = fmt.Sprintf("pack %v is not referenced in any index and was marked for deletion by `cairn prune` at %s (pending deletion)",
				id, p.Since.UTC().Format(time.RFC3339))
		}
		c.report(Problem{Severity: SeverityHint, Kind: KindOrphanedPack, Pack: id, Message: msg})
	}
	return nil
}
