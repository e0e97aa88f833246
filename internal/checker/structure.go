package checker

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/tree"
)

// treeRef is a tree to check and where it was first met.
type treeRef struct {
	id       core.ID
	snapshot core.ID
	path     string
}

// CheckStructure loads every snapshot listed by ListSnapshots and checks
// every tree reachable from them, each tree once (phase 4). Trees are
// processed level by level, in parallel within a level. A listed snapshot
// that a concurrent forget removed before it was loaded is skipped with a
// hint; one that is still listed but cannot be loaded is an error.
func (c *Checker) CheckStructure(ctx context.Context) error {
	if c.indexedPacks == nil {
		return errors.New("check structure: index not loaded")
	}
	seen := core.NewIDSet()
	var level []treeRef
	var mu sync.Mutex // guards seen and level while snapshots load
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Parallel)
	stillListed := c.snapshotRelister()
	for _, id := range c.snapshotIDs {
		g.Go(func() error {
			sn, err := c.r.LoadSnapshot(gctx, id)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				if backend.IsNotExist(err) {
					// a concurrent forget (shared lock) may remove a
					// listed snapshot: only one that is still listed
					// and cannot be found is an error
					listed, lerr := stillListed(gctx, id)
					if lerr != nil {
						return lerr
					}
					if !listed {
						c.mu.Lock()
						c.stats.Snapshots--
						c.mu.Unlock()
						c.report(Problem{Severity: SeverityHint, Kind: KindSnapshotRemoved, Snapshot: id,
							Message: fmt.Sprintf("snapshot %v was removed while the check ran (a concurrent forget); not checked", id)})
						return nil
					}
				}
				c.report(Problem{Severity: SeverityError, Kind: KindSnapshotDamaged, Snapshot: id,
					Message: fmt.Sprintf("snapshot %v cannot be loaded: %v", id, err)})
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			if !seen.Has(*sn.Tree) {
				seen.Insert(*sn.Tree)
				level = append(level, treeRef{id: *sn.Tree, snapshot: id, path: "/"})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("check structure: %w", err)
	}
	for len(level) > 0 {
		var next []treeRef
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(c.opts.Parallel)
		for _, ref := range level {
			g.Go(func() error {
				subs, err := c.checkTree(gctx, ref)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for _, s := range subs {
					if !seen.Has(s.id) {
						seen.Insert(s.id)
						next = append(next, s)
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("check structure: %w", err)
		}
		c.mu.Lock()
		c.stats.Trees += len(level)
		c.mu.Unlock()
		level = next
	}
	return nil
}

// snapshotRelister returns a function that reports whether a snapshot
// whose load found no file is still listed. Removed snapshots never come
// back, so a listing that lacks it settles the question; otherwise the
// snapshots are listed again (the earlier listing may predate the removal).
func (c *Checker) snapshotRelister() func(ctx context.Context, id core.ID) (bool, error) {
	var (
		mu     sync.Mutex // guards listed
		listed core.IDSet // the latest listing; nil before the first
	)
	return func(ctx context.Context, id core.ID) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		if listed != nil && !listed.Has(id) {
			return false, nil
		}
		ids, err := c.r.ListIDs(ctx, core.SnapshotFile)
		if err != nil {
			return false, fmt.Errorf("relist snapshots: %w", err)
		}
		listed = core.NewIDSet(ids...)
		return listed.Has(id), nil
	}
}

// checkTree loads and checks one tree and returns its subtrees. Problems
// are reported; the error is only for cancellation.
func (c *Checker) checkTree(ctx context.Context, ref treeRef) ([]treeRef, error) {
	prob := func(k Kind, blob core.ID, p string, format string, args ...any) {
		c.report(Problem{Severity: SeverityError, Kind: k, Snapshot: ref.snapshot, Tree: ref.id, Blob: blob, Path: p,
			Message: fmt.Sprintf(format, args...) + fmt.Sprintf(" (snapshot %v, tree %v, path %q)", ref.snapshot.Str(), ref.id.Str(), p)})
	}
	h := core.BlobHandle{ID: ref.id, Type: core.TreeBlob}
	if !c.r.Index().Has(h) {
		prob(KindTreeMissing, ref.id, ref.path, "tree %v not found in index", ref.id)
		return nil, nil
	}
	buf, err := c.r.LoadBlob(ctx, core.TreeBlob, ref.id, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		prob(KindTreeDamaged, ref.id, ref.path, "tree %v cannot be loaded: %v", ref.id, err)
		return nil, nil
	}
	t, err := tree.DecodeTree(buf)
	if err != nil {
		prob(KindTreeDamaged, ref.id, ref.path, "tree %v cannot be decoded: %v", ref.id, err)
		return nil, nil
	}
	var subs []treeRef
	idx := c.r.Index()
	for _, n := range t.Nodes {
		p := path.Join(ref.path, n.Name)
		if n.Name == "" {
			prob(KindNodeInvalid, core.ID{}, p, "node with an empty name")
			continue
		}
		switch n.Type {
		case tree.NodeFile:
			if n.Content == nil {
				prob(KindNodeInvalid, core.ID{}, p, "file %q has no content list (null)", n.Name)
				continue
			}
			for i, id := range n.Content {
				if id.IsNull() {
					prob(KindNodeInvalid, core.ID{}, p, "file %q: content blob %d has a null ID", n.Name, i)
					continue
				}
				if !idx.Has(core.BlobHandle{ID: id, Type: core.DataBlob}) {
					prob(KindBlobMissing, id, p, "file %q: data blob %d (%v) not found in index", n.Name, i, id)
				}
			}
		case tree.NodeDir:
			if n.Subtree == nil {
				prob(KindNodeInvalid, core.ID{}, p, "dir %q has no subtree", n.Name)
				continue
			}
			if n.Subtree.IsNull() {
				prob(KindNodeInvalid, core.ID{}, p, "dir %q has a null subtree ID", n.Name)
				continue
			}
			subs = append(subs, treeRef{id: *n.Subtree, snapshot: ref.snapshot, path: p})
		case tree.NodeSymlink, tree.NodeSocket, tree.NodeCharDev, tree.NodeDev, tree.NodeFifo, tree.NodeIrregular:
			// nothing to check
		default:
			prob(KindNodeInvalid, core.ID{}, p, "node %q has an invalid type %q", n.Name, n.Type)
		}
	}
	return subs, nil
}
