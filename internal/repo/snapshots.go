package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

// SaveSnapshot stores sn and sets its ID.
func (r *Repository) SaveSnapshot(ctx context.Context, sn *snapshot.Snapshot) (core.ID, error) {
	if sn.Tree == nil || sn.Tree.IsNull() {
		return core.ID{}, fmt.Errorf("save snapshot: no root tree (refusing to write a snapshot with a null tree)")
	}
	id, err := r.SaveJSONUnpacked(ctx, core.SnapshotFile, sn)
	if err != nil {
		return core.ID{}, fmt.Errorf("save snapshot: %w", err)
	}
	sn.SetID(id)
	return id, nil
}

// LoadSnapshot loads snapshot id.
func (r *Repository) LoadSnapshot(ctx context.Context, id core.ID) (*snapshot.Snapshot, error) {
	buf, err := r.LoadUnpacked(ctx, core.SnapshotFile, id)
	if err != nil {
		return nil, err
	}
	sn, err := DecodeSnapshot(buf)
	if err != nil {
		return nil, fmt.Errorf("snapshot %v: %w", id.Str(), err)
	}
	sn.SetID(id)
	return sn, nil
}

// DecodeSnapshot parses snapshot JSON, requiring a root tree.
func DecodeSnapshot(buf []byte) (*snapshot.Snapshot, error) {
	var sn snapshot.Snapshot
	if err := json.Unmarshal(buf, &sn); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w: %w", ErrInvalidData, err)
	}
	if sn.Tree == nil || sn.Tree.IsNull() {
		return nil, fmt.Errorf("decode snapshot: no root tree: %w", ErrInvalidData)
	}
	return &sn, nil
}

// SnapshotLoadError names a snapshot file that could not be loaded.
type SnapshotLoadError struct {
	ID  core.ID
	Err error
}

func (e *SnapshotLoadError) Error() string {
	return fmt.Sprintf("snapshot %v: %v", e.ID.Str(), e.Err)
}
func (e *SnapshotLoadError) Unwrap() error { return e.Err }

// LoadAllSnapshots loads every snapshot. Snapshots that fail to load are
// returned as errors alongside the ones that loaded.
func (r *Repository) LoadAllSnapshots(ctx context.Context) ([]*snapshot.Snapshot, []error, error) {
	ids, err := r.ListIDs(ctx, core.SnapshotFile)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex // guards out, errs
	var out []*snapshot.Snapshot
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Connections() + 2)
	for _, id := range ids {
		g.Go(func() error {
			sn, err := r.LoadSnapshot(gctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				errs = append(errs, &SnapshotLoadError{ID: id, Err: err})
				return nil
			}
			out = append(out, sn)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	snapshot.SortByTime(out)
	return out, errs, nil
}

// FindSnapshot resolves "latest", "latest:<n>"-free prefixes or full IDs,
// optionally restricted by f (for "latest").
func (r *Repository) FindSnapshot(ctx context.Context, s string, f snapshot.Filter) (*snapshot.Snapshot, error) {
	if s == "latest" || s == "" {
		all, _, err := r.LoadAllSnapshots(ctx)
		if err != nil {
			return nil, err
		}
		var best *snapshot.Snapshot
		for _, sn := range all {
			if f.Matches(sn) && (best == nil || !sn.Time.Before(best.Time)) {
				best = sn
			}
		}
		if best == nil {
			return nil, fmt.Errorf("no snapshot found matching the filter")
		}
		return best, nil
	}
	s, _, _ = strings.Cut(s, ":") // "id:subfolder" is handled by callers
	id, err := r.FindFile(ctx, core.SnapshotFile, s)
	if err != nil {
		return nil, fmt.Errorf("find snapshot %q: %w", s, err)
	}
	return r.LoadSnapshot(ctx, id)
}
