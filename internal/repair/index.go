// Package repair rebuilds a repository's index from its pack files and
// rewrites snapshots so that they refer only to data the repository still
// holds (restic's `repair index` and `repair snapshots`).
package repair

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// MaxIndexBlobs is the most blobs a rebuilt index file holds (restic's
// limit for index files written during a backup). A single pack with more
// blobs still goes into one file, since a pack's entry is never split.
const MaxIndexBlobs = 50000

// IndexOptions tune RebuildIndex.
type IndexOptions struct {
	// ReadAllPacks reads the header of every pack instead of keeping the
	// entries of packs that the old index already describes consistently.
	ReadAllPacks bool
	// MaxIndexBlobs overrides MaxIndexBlobs (tests); 0 means the default.
	MaxIndexBlobs int
	// Log receives progress messages; nil discards them.
	Log func(format string, args ...any)
}

// PackError names a pack whose header could not be read.
type PackError struct {
	Pack core.ID
	Err  error
}

func (e PackError) Error() string { return fmt.Sprintf("pack %v: %v", e.Pack, e.Err) }

// IndexFileError names an old index file that could not be loaded.
type IndexFileError struct {
	File core.ID
	Err  error
}

func (e IndexFileError) Error() string { return fmt.Sprintf("index file %v: %v", e.File, e.Err) }

// IndexResult describes what RebuildIndex did.
type IndexResult struct {
	// OldIndexFiles are the index files that existed at the start (all
	// were replaced).
	OldIndexFiles core.IDs
	// DamagedIndexFiles could not be loaded; their packs were re-read.
	DamagedIndexFiles []IndexFileError
	// KeptPacks were taken over from the old index without reading them.
	KeptPacks int
	// ReadPacks had their header read.
	ReadPacks int
	// MissingPacks were listed in the old index but do not exist; their
	// entries were dropped.
	MissingPacks core.IDs
	// UnreadablePacks exist but their header could not be read; they are
	// not in the new index and were not deleted.
	UnreadablePacks []PackError
	// NewIndexFiles were written, in order.
	NewIndexFiles core.IDs
	// Packs and Blobs count what the new index describes.
	Packs, Blobs int
	// PendingMarks counts the prune marks (cairn_pending) carried over from
	// the old index; marks of packs not in the new index are dropped, and
	// with ReadAllPacks all are.
	PendingMarks int
	// DeletedIndexFiles are the old index files removed after the new ones
	// were written.
	DeletedIndexFiles core.IDs
}

// oldPack is what the old index files say about one pack.
type oldPack struct {
	blobs []pack.Blob // sorted by offset
	// inconsistent is set when index files disagree about the pack's blobs.
	inconsistent bool
}

// RebuildIndex writes a new index for every readable pack of r and then
// deletes the old index files. The caller must hold an exclusive lock.
//
// Packs the old index describes are kept as they are if the pack exists with
// exactly the size its indexed blobs imply and every index file listing it
// agrees on its blobs (unless ReadAllPacks). Every other pack has its header
// read. Entries for packs that no longer exist are dropped. Packs whose
// header cannot be read are reported in the result and left in place.
//
// The new index files are written completely before any old one is
// deleted, so an interruption leaves a repository whose index is at worst
// duplicated. On success r's in-memory index is the new index.
func RebuildIndex(ctx context.Context, r *repo.Repository, opts IndexOptions) (*IndexResult, error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	maxBlobs := opts.MaxIndexBlobs
	if maxBlobs <= 0 {
		maxBlobs = MaxIndexBlobs
	}
	res := &IndexResult{}

	oldFiles, err := r.ListIDs(ctx, core.IndexFile)
	if err != nil {
		return nil, fmt.Errorf("repair index: %w", err)
	}
	sort.Sort(oldFiles)
	res.OldIndexFiles = oldFiles

	logf("listing pack files\n")
	packSizes := make(map[core.ID]int64)
	err = r.List(ctx, core.PackFile, func(id core.ID, size int64) error {
		packSizes[id] = size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repair index: list packs: %w", err)
	}

	entries := make(map[core.ID][]pack.Blob) // the new index, by pack
	var pending map[core.ID]index.Pending    // prune's marks to carry over
	if !opts.ReadAllPacks {
		logf("loading %d index files\n", len(oldFiles))
		old, pend, damaged, err := loadOldIndex(ctx, r, oldFiles)
		if err != nil {
			return nil, err
		}
		res.DamagedIndexFiles = damaged
		pending = pend
		for _, d := range damaged {
			logf("ignoring damaged index file %v: %v\n", d.File.Str(), d.Err)
		}
		for id, op := range old {
			size, exists := packSizes[id]
			switch {
			case !exists:
				res.MissingPacks = append(res.MissingPacks, id)
			case op.inconsistent:
				logf("pack %v: index files disagree about its blobs, reading it again\n", id.Str())
			case pack.PackSize(op.blobs) != size:
				logf("pack %v: size %d does not match the indexed size %d, reading it again\n", id.Str(), size, pack.PackSize(op.blobs))
			default:
				entries[id] = op.blobs
			}
		}
		sort.Sort(res.MissingPacks)
		for _, id := range res.MissingPacks {
			logf("removing pack %v from the index: the pack file does not exist\n", id)
		}
		res.KeptPacks = len(entries)
	}

	var toRead core.IDs
	for id := range packSizes {
		if _, ok := entries[id]; !ok {
			toRead = append(toRead, id)
		}
	}
	sort.Sort(toRead)
	logf("reading the headers of %d pack files\n", len(toRead))
	read, unreadable, err := readHeaders(ctx, r, toRead, packSizes)
	if err != nil {
		return nil, err
	}
	for id, blobs := range read {
		entries[id] = blobs
	}
	res.ReadPacks = len(read)
	res.UnreadablePacks = unreadable
	for _, u := range unreadable {
		logf("pack %v cannot be read and is left out of the index: %v\n", u.Pack, u.Err)
	}

	// Write the new index, packs in ID order, at most maxBlobs per file.
	packIDs := make(core.IDs, 0, len(entries))
	for id := range entries {
		packIDs = append(packIDs, id)
	}
	sort.Sort(packIDs)
	r.SetIndex(index.NewMaster())
	var cur index.File
	// prune's pending-deletion marks survive for packs still indexed; the
	// others are dropped (a later prune marks them again if need be)
	for id, p := range pending {
		if _, ok := entries[id]; ok {
			cur.Pending = append(cur.Pending, p)
		}
	}
	sort.Slice(cur.Pending, func(i, j int) bool { return cur.Pending[i].Pack.String() < cur.Pending[j].Pack.String() })
	res.PendingMarks = len(cur.Pending)
	curBlobs := 0
	flush := func() error {
		if len(cur.Packs) == 0 {
			return nil
		}
		id, err := r.SaveIndexFile(ctx, &cur)
		if err != nil {
			return fmt.Errorf("repair index: write index file: %w", err)
		}
		res.NewIndexFiles = append(res.NewIndexFiles, id)
		cur = index.File{}
		curBlobs = 0
		return nil
	}
	for _, id := range packIDs {
		blobs := entries[id]
		if curBlobs > 0 && curBlobs+len(blobs) > maxBlobs {
			if err := flush(); err != nil {
				return res, err
			}
		}
		cur.Packs = append(cur.Packs, index.PackEntry{ID: id, Blobs: blobs})
		curBlobs += len(blobs)
		res.Packs++
		res.Blobs += len(blobs)
	}
	if err := flush(); err != nil {
		return res, err
	}
	logf("wrote %d new index files for %d packs (%d blobs)\n", len(res.NewIndexFiles), res.Packs, res.Blobs)

	// Only now remove the old index files.
	written := core.NewIDSet(res.NewIndexFiles...)
	var errs []error
	for _, id := range oldFiles {
		if written.Has(id) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		err := r.Backend().Remove(ctx, backend.Handle{Type: core.IndexFile, Name: id.String()})
		if err != nil {
			errs = append(errs, fmt.Errorf("remove old index file %v: %w", id.Str(), err))
			continue
		}
		res.DeletedIndexFiles = append(res.DeletedIndexFiles, id)
	}
	logf("deleted %d old index files\n", len(res.DeletedIndexFiles))
	if len(errs) > 0 {
		return res, fmt.Errorf("repair index: the new index is complete, but old index files remain: %w", errors.Join(errs...))
	}
	return res, nil
}

// loadOldIndex loads the given index files, tolerating damaged ones, and
// merges what they say per pack.
func loadOldIndex(ctx context.Context, r *repo.Repository, ids core.IDs) (map[core.ID]*oldPack, map[core.ID]index.Pending, []IndexFileError, error) {
	files := make([]*index.File, len(ids))
	var mu sync.Mutex // guards damaged
	var damaged []IndexFileError
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Connections() + 2)
	for i, id := range ids {
		g.Go(func() error {
			f, err := r.LoadIndexFile(gctx, id)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				if !errors.Is(err, repo.ErrInvalidData) && !backend.IsNotExist(err) {
					// an I/O problem, not damage: do not guess
					return fmt.Errorf("repair index: %w", err)
				}
				mu.Lock()
				damaged = append(damaged, IndexFileError{File: id, Err: err})
				mu.Unlock()
				return nil
			}
			files[i] = f
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, nil, err
	}
	sort.Slice(damaged, func(i, j int) bool { return damaged[i].File.String() < damaged[j].File.String() })
	old := make(map[core.ID]*oldPack)
	pending := make(map[core.ID]index.Pending)
	for _, f := range files {
		if f == nil {
			continue
		}
		for _, p := range f.Pending {
			if o, ok := pending[p.Pack]; !ok || p.Since.Before(o.Since) {
				pending[p.Pack] = p
			}
		}
		for _, pe := range f.Packs {
			bl := append([]pack.Blob(nil), pe.Blobs...)
			index.SortBlobs(bl)
			op, ok := old[pe.ID]
			if !ok {
				old[pe.ID] = &oldPack{blobs: bl, inconsistent: !consistentBlobs(bl)}
				continue
			}
			if !equalBlobs(op.blobs, bl) {
				op.inconsistent = true
			}
		}
	}
	return old, pending, damaged, nil
}

// consistentBlobs reports whether sorted blobs neither overlap nor leave
// gaps from offset 0, as a pack written by restic or cairn has them.
func consistentBlobs(blobs []pack.Blob) bool {
	var next uint64
	for _, b := range blobs {
		if uint64(b.Offset) != next {
			return false
		}
		next += uint64(b.Length)
	}
	return len(blobs) > 0
}

func equalBlobs(a, b []pack.Blob) bool {
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

// readHeaders reads the headers of packs in parallel. Unreadable packs are
// returned separately; an error means the operation could not go on.
func readHeaders(ctx context.Context, r *repo.Repository, ids core.IDs, sizes map[core.ID]int64) (map[core.ID][]pack.Blob, []PackError, error) {
	var mu sync.Mutex // guards out, bad
	out := make(map[core.ID][]pack.Blob, len(ids))
	var bad []PackError
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Connections())
	for _, id := range ids {
		g.Go(func() error {
			blobs, err := r.LoadPackHeader(gctx, id, sizes[id])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				if !errors.Is(err, pack.ErrInvalidPack) && !backend.IsNotExist(err) {
					// A read error is not proof of damage. Leaving the
					// pack out of the index would let a later prune
					// delete it, so stop instead.
					return fmt.Errorf("pack %v: %w", id.Str(), err)
				}
				bad = append(bad, PackError{Pack: id, Err: err})
				return nil
			}
			index.SortBlobs(blobs)
			out[id] = blobs
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, fmt.Errorf("repair index: read pack headers: %w", err)
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].Pack.String() < bad[j].Pack.String() })
	return out, bad, nil
}
