package repair

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

// RepairedTag is added to snapshots rewritten by RepairSnapshot when the
// original is kept.
const RepairedTag = "repaired"

// ChangeKind says what was done to one node.
type ChangeKind string

// The changes RepairSnapshot makes (messages as restic prints them).
const (
	// ChangeMissingContent: a file's content referred to data blobs the
	// index does not know; they were dropped, the file is shorter.
	ChangeMissingContent ChangeKind = "removed missing content"
	// ChangeFixedSize: a file's size did not match its content.
	ChangeFixedSize ChangeKind = "fixed incorrect size"
	// ChangeInvalidType: a node of an unknown or irregular type was removed.
	ChangeInvalidType ChangeKind = "removed node with invalid type"
	// ChangeEmptyDir: a directory whose tree could not be loaded became an
	// empty directory.
	ChangeEmptyDir ChangeKind = "replaced with empty directory"
	// ChangeRootUnreadable: the snapshot's root tree could not be loaded;
	// nothing of the snapshot can be kept.
	ChangeRootUnreadable ChangeKind = "not readable"
)

// Change is one repair inside a snapshot.
type Change struct {
	Path string // absolute path inside the snapshot, "/" for the root
	Kind ChangeKind
	Err  error // for ChangeEmptyDir and ChangeRootUnreadable: why
}

func (c Change) String() string {
	kind := "file"
	if c.Kind == ChangeEmptyDir || c.Kind == ChangeRootUnreadable {
		kind = "dir"
	}
	return fmt.Sprintf("%s %q: %s", kind, c.Path, c.Kind)
}

// SnapshotOptions tune RepairSnapshot.
type SnapshotOptions struct {
	DryRun bool // compute the changes, write and delete nothing
	Forget bool // remove the damaged original after saving the repaired copy
}

// SnapshotResult is the outcome for one snapshot.
type SnapshotResult struct {
	Snapshot core.ID
	Changes  []Change
	// Modified is set when the snapshot needed repair (in a dry run: would
	// be modified).
	Modified bool
	// NewSnapshot is the repaired copy (null in a dry run or when the root
	// is unreadable).
	NewSnapshot core.ID
	// RemovedOriginal is set when the damaged snapshot was deleted.
	RemovedOriginal bool
	// RootUnreadable is set when the root tree could not be loaded: no copy
	// is written; with Forget the snapshot is deleted.
	RootUnreadable bool
}

// rewritten is the memoised outcome of rewriting one tree.
type rewritten struct {
	id      core.ID  // the repaired tree (equal to the old ID if unchanged)
	changes []Change // relative to the tree's own path, i.e. starting with "/"
	failed  error    // set when the tree itself could not be loaded
}

// SnapshotRepairer rewrites the trees of damaged snapshots. Results for
// trees are remembered, so snapshots sharing trees are repaired fast. It is
// not safe for concurrent use.
type SnapshotRepairer struct {
	r    *repo.Repository
	opts SnapshotOptions
	memo map[core.ID]rewritten
	// emptyTree is the ID of {"nodes":[]}, saved at most once.
	emptyTree     core.ID
	emptyTreeSeen bool
}

// NewSnapshotRepairer returns a repairer for r, whose index must be loaded
// (and correct: run RebuildIndex first).
func NewSnapshotRepairer(r *repo.Repository, opts SnapshotOptions) *SnapshotRepairer {
	return &SnapshotRepairer{r: r, opts: opts, memo: make(map[core.ID]rewritten)}
}

// rootUnreadableError marks a root tree that could not be loaded.
type rootUnreadableError struct{ err error }

func (e *rootUnreadableError) Error() string { return "root tree unreadable: " + e.err.Error() }
func (e *rootUnreadableError) Unwrap() error { return e.err }

// RepairSnapshot checks every tree and file of sn against the index. If
// something is missing it writes a repaired copy of sn (trees with missing
// data removed, see ChangeKind), tagged "repaired" unless Forget is set,
// with "original" naming sn, and with Forget deletes sn afterwards. The
// repaired trees are uploaded and indexed before the snapshot is saved.
//
// The caller must hold an exclusive lock.
func (s *SnapshotRepairer) RepairSnapshot(ctx context.Context, sn *snapshot.Snapshot) (*SnapshotResult, error) {
	if sn.ID() == nil {
		return nil, fmt.Errorf("repair snapshot: snapshot has no ID")
	}
	oldID := *sn.ID()
	res := &SnapshotResult{Snapshot: oldID}
	rw, err := s.rewriteTree(ctx, *sn.Tree, true)
	var rootErr *rootUnreadableError
	if errors.As(err, &rootErr) {
		res.RootUnreadable = true
		res.Modified = true
		res.Changes = []Change{{Path: "/", Kind: ChangeRootUnreadable, Err: rootErr.err}}
		if s.opts.Forget && !s.opts.DryRun {
			if err := s.removeSnapshot(ctx, oldID); err != nil {
				return res, err
			}
			res.RemovedOriginal = true
		}
		return res, nil
	}
	if err != nil {
		return nil, fmt.Errorf("repair snapshot %v: %w", oldID.Str(), err)
	}
	res.Changes = rw.changes
	if rw.id == *sn.Tree {
		return res, nil
	}
	res.Modified = true
	if s.opts.DryRun {
		return res, nil
	}
	// trees first: the new snapshot may only refer to indexed trees
	if err := s.r.Flush(ctx); err != nil {
		return res, fmt.Errorf("repair snapshot %v: upload trees: %w", oldID.Str(), err)
	}
	cp := *sn
	newTree := rw.id
	cp.Tree = &newTree
	orig := oldID
	cp.Original = &orig
	if !s.opts.Forget {
		cp.Tags = addTag(cp.Tags, RepairedTag)
	}
	newID, err := s.r.SaveSnapshot(ctx, &cp)
	if err != nil {
		return res, fmt.Errorf("repair snapshot %v: %w", oldID.Str(), err)
	}
	res.NewSnapshot = newID
	if s.opts.Forget {
		if err := s.removeSnapshot(ctx, oldID); err != nil {
			return res, err
		}
		res.RemovedOriginal = true
	}
	return res, nil
}

func (s *SnapshotRepairer) removeSnapshot(ctx context.Context, id core.ID) error {
	if err := s.r.Backend().Remove(ctx, backend.Handle{Type: core.SnapshotFile, Name: id.String()}); err != nil {
		return fmt.Errorf("remove snapshot %v: %w", id.Str(), err)
	}
	return nil
}

func addTag(tags []string, t string) []string {
	for _, x := range tags {
		if x == t {
			return tags
		}
	}
	return append(append([]string(nil), tags...), t)
}

// loadTree loads and decodes a tree. A tree that is missing from the index,
// whose pack is gone or whose data fails verification or decoding is
// damaged (damaged == true); any other error (I/O, cancellation) is
// returned as is, since it proves nothing about the repository.
func (s *SnapshotRepairer) loadTree(ctx context.Context, id core.ID) (t *tree.Tree, damaged bool, err error) {
	h := core.BlobHandle{ID: id, Type: core.TreeBlob}
	if !s.r.Index().Has(h) {
		return nil, true, fmt.Errorf("tree %v is not in the index", id.Str())
	}
	buf, err := s.r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		if errors.Is(err, repo.ErrInvalidData) || backend.IsNotExist(err) {
			return nil, true, err
		}
		return nil, false, fmt.Errorf("load tree %v: %w", id.Str(), err)
	}
	t, err = tree.DecodeTree(buf)
	if err != nil {
		return nil, true, fmt.Errorf("tree %v: %w", id.Str(), err)
	}
	return t, false, nil
}

// rewriteTree returns the repaired version of tree id. Changes are relative
// to the tree ("/name/...").
func (s *SnapshotRepairer) rewriteTree(ctx context.Context, id core.ID, root bool) (rewritten, error) {
	if err := ctx.Err(); err != nil {
		return rewritten{}, err
	}
	if rw, ok := s.memo[id]; ok {
		if root && rw.failed != nil {
			return rewritten{}, &rootUnreadableError{err: rw.failed}
		}
		return rw, nil
	}
	t, damaged, err := s.loadTree(ctx, id)
	if err != nil {
		if !damaged {
			return rewritten{}, err
		}
		if root {
			return rewritten{}, &rootUnreadableError{err: err}
		}
		empty, serr := s.saveEmptyTree(ctx)
		if serr != nil {
			return rewritten{}, serr
		}
		rw := rewritten{id: empty, changes: []Change{{Path: "/", Kind: ChangeEmptyDir, Err: err}}, failed: err}
		s.memo[id] = rw
		return rw, nil
	}
	var changes []Change
	changed := false
	nodes := make([]*tree.Node, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		p := "/" + n.Name
		if !n.Type.Known() || n.Type == tree.NodeIrregular {
			changes = append(changes, Change{Path: p, Kind: ChangeInvalidType})
			changed = true
			continue
		}
		switch n.Type {
		case tree.NodeFile:
			nn, kind := s.repairFile(n)
			if kind != "" {
				changes = append(changes, Change{Path: p, Kind: kind})
				changed = true
				n = nn
			}
		case tree.NodeDir:
			var sub rewritten
			if n.Subtree == nil {
				// a directory without a tree: give it an empty one
				empty, err := s.saveEmptyTree(ctx)
				if err != nil {
					return rewritten{}, err
				}
				sub = rewritten{id: empty, changes: []Change{{Path: "/", Kind: ChangeEmptyDir, Err: errors.New("directory has no subtree")}}}
			} else {
				sub, err = s.rewriteTree(ctx, *n.Subtree, false)
				if err != nil {
					return rewritten{}, err
				}
			}
			for _, c := range sub.changes {
				c.Path = path.Join(p, c.Path)
				changes = append(changes, c)
			}
			if n.Subtree == nil || sub.id != *n.Subtree {
				cp := *n
				subID := sub.id
				cp.Subtree = &subID
				n = &cp
				changed = true
			}
		}
		nodes = append(nodes, n)
	}
	rw := rewritten{id: id, changes: changes}
	if changed {
		buf, err := tree.EncodeTree(nodes)
		if err != nil {
			return rewritten{}, fmt.Errorf("encode repaired tree %v: %w", id.Str(), err)
		}
		rw.id, err = s.saveTree(ctx, buf)
		if err != nil {
			return rewritten{}, err
		}
	}
	s.memo[id] = rw
	return rw, nil
}

// repairFile drops the content blobs the index does not know and fixes the
// size. It returns the repaired copy and the kind of change, or "" if the
// file is fine.
func (s *SnapshotRepairer) repairFile(n *tree.Node) (*tree.Node, ChangeKind) {
	content := make(core.IDs, 0, len(n.Content))
	var size uint64
	missing := false
	for _, id := range n.Content {
		loc, ok := s.r.Index().Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
		if !ok {
			missing = true
			continue
		}
		content = append(content, id)
		size += uint64(loc.DataLength())
	}
	var kind ChangeKind
	switch {
	case missing:
		kind = ChangeMissingContent
	case size != n.Size:
		kind = ChangeFixedSize
	default:
		return n, ""
	}
	cp := *n
	cp.Content = content
	cp.Size = size
	return &cp, kind
}

func (s *SnapshotRepairer) saveEmptyTree(ctx context.Context) (core.ID, error) {
	if s.emptyTreeSeen {
		return s.emptyTree, nil
	}
	buf, err := tree.EncodeTree(nil)
	if err != nil {
		return core.ID{}, err
	}
	id, err := s.saveTree(ctx, buf)
	if err != nil {
		return core.ID{}, err
	}
	s.emptyTree, s.emptyTreeSeen = id, true
	return id, nil
}

// saveTree stores a tree blob (not in a dry run) and returns its ID.
func (s *SnapshotRepairer) saveTree(ctx context.Context, buf []byte) (core.ID, error) {
	id := core.Hash(buf)
	if s.opts.DryRun {
		return id, nil
	}
	if _, err := s.r.SaveBlob(ctx, core.TreeBlob, buf, id, false); err != nil {
		return core.ID{}, fmt.Errorf("save repaired tree %v: %w", id.Str(), err)
	}
	return id, nil
}
