// Package prune removes unreferenced data from a repository: restic's
// one-phase prune under an exclusive lock, and cairn's default two-phase
// prune (mark under a shared lock, sweep under a brief exclusive lock)
// described in docs/concurrency.md.
package prune

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

// UsedBlobs walks every tree reachable from the snapshots and returns the
// set of tree and data blobs they reference. Any tree that cannot be loaded
// is an error: deleting with an incomplete used set would lose data.
func UsedBlobs(ctx context.Context, r *repo.Repository, snaps []*snapshot.Snapshot) (core.BlobSet, error) {
	used := core.NewBlobSet()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex // guards used
	var wg sync.WaitGroup
	// sem bounds concurrent tree loads; goroutines wait on it (a goroutine
	// per pending tree), so nested visits never deadlock.
	sem := make(chan struct{}, r.Connections()+runtime.GOMAXPROCS(0))
	var visit func(id core.ID)
	visit = func(id core.ID) {
		h := core.BlobHandle{ID: id, Type: core.TreeBlob}
		mu.Lock()
		if used.Has(h) {
			mu.Unlock()
			return
		}
		used.Insert(h)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			subtrees, err := loadTreeRefs(ctx, r, id, used, &mu)
			<-sem
			if err != nil {
				cancel(err)
				return
			}
			for _, s := range subtrees {
				visit(s)
			}
		}()
	}
	for _, sn := range snaps {
		visit(*sn.Tree)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return used, nil
}

func loadTreeRefs(ctx context.Context, r *repo.Repository, id core.ID, used core.BlobSet, mu *sync.Mutex) ([]core.ID, error) {
	buf, err := r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		return nil, fmt.Errorf("load tree %v: %w", id.Str(), err)
	}
	t, err := tree.DecodeTree(buf)
	if err != nil {
		return nil, fmt.Errorf("decode tree %v: %w", id.Str(), err)
	}
	var subtrees []core.ID
	mu.Lock()
	defer mu.Unlock()
	for _, n := range t.Nodes {
		switch n.Type {
		case tree.NodeFile:
			for _, c := range n.Content {
				used.Insert(core.BlobHandle{ID: c, Type: core.DataBlob})
			}
		case tree.NodeDir:
			if n.Subtree == nil {
				return nil, fmt.Errorf("tree %v: directory %q has no subtree", id.Str(), n.Name)
			}
			subtrees = append(subtrees, *n.Subtree)
		}
	}
	return subtrees, nil
}
