package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/filter"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

func init() { extraCommands = append(extraCommands, newRewriteCommand) }

type rewriteOptions struct {
	excludes      []string
	iexcludes     []string
	excludeFiles  []string
	iexcludeFiles []string
	forget        bool
	dryRun        bool
	filter        snapshotFilterOptions
}

func newRewriteCommand(g *globalOptions) *cobra.Command {
	var o rewriteOptions
	cmd := &cobra.Command{
		Use:   "rewrite [flags] [SNAPSHOT...]",
		Short: "Rewrite snapshots without excluded files",
		Long: `Create new snapshots holding the same files as the given ones but without
the paths matching the exclude patterns (--exclude and friends, backup's
pattern syntax matched against the snapshot paths). Without SNAPSHOT every
snapshot matching --host/--tag/--path is rewritten: with no filter at all,
that is every snapshot.

A new snapshot keeps the old one's metadata, gets "original" set to the
old snapshot's ID and, unless --forget is given, the tag "rewrite". With
--forget the old snapshot is removed (its data stays until prune). A
snapshot with nothing excluded is left alone. --dry-run only reports what
would change.

rewrite locks the repository non-exclusively, exclusively with --forget.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRewrite(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.excludes, "exclude", "e", nil, "exclude paths matching `pattern` (repeatable)")
	f.StringArrayVar(&o.iexcludes, "iexclude", nil, "like --exclude, case-insensitive")
	f.StringArrayVar(&o.excludeFiles, "exclude-file", nil, "read exclude patterns from `file` (repeatable)")
	f.StringArrayVar(&o.iexcludeFiles, "iexclude-file", nil, "like --exclude-file, case-insensitive")
	f.BoolVar(&o.forget, "forget", false, "remove the original snapshots after writing the new ones")
	f.BoolVarP(&o.dryRun, "dry-run", "n", false, "only report what would be done")
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

// excluder reports whether a snapshot path is excluded.
type excluder func(p string) (bool, error)

func (o rewriteOptions) excluder(ctx context.Context) (excluder, error) {
	cs := append([]string(nil), o.excludes...)
	ci := append([]string(nil), o.iexcludes...)
	for _, f := range o.excludeFiles {
		p, err := filter.ReadExcludeFile(ctx, f)
		if err != nil {
			return nil, err
		}
		cs = append(cs, p...)
	}
	for _, f := range o.iexcludeFiles {
		p, err := filter.ReadExcludeFile(ctx, f)
		if err != nil {
			return nil, err
		}
		ci = append(ci, p...)
	}
	exc, err := filter.ParsePatterns(cs)
	if err != nil {
		return nil, err
	}
	iexc, err := filter.ParseInsensitivePatterns(ci)
	if err != nil {
		return nil, err
	}
	if exc.Len() == 0 && iexc.Len() == 0 {
		return nil, errors.New("rewrite: nothing to do: no exclude patterns given")
	}
	return func(p string) (bool, error) {
		if m, err := exc.Match(p); err != nil || m {
			return m, err
		}
		return iexc.Match(p)
	}, nil
}

// treeRewriter filters trees; used by one goroutine.
type treeRewriter struct {
	g       *globalOptions
	r       *repo.Repository
	exclude excluder
	dryRun  bool
	// done memoises the rewritten ID of a tree at a path (exclusion depends
	// on both).
	done map[string]core.ID
}

// filterTree returns the ID of tree id at nodepath without the excluded
// entries, saving new trees (unless dry-run). An unchanged tree keeps its ID.
func (tr *treeRewriter) filterTree(ctx context.Context, nodepath string, id core.ID) (core.ID, error) {
	key := nodepath + "\x00" + id.String()
	if nid, ok := tr.done[key]; ok {
		return nid, nil
	}
	if err := ctx.Err(); err != nil {
		return core.ID{}, err
	}
	buf, err := tr.r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		return core.ID{}, fmt.Errorf("load tree %v at %s: %w", id.Str(), nodepath, err)
	}
	t, err := tree.DecodeTree(buf)
	if err != nil {
		return core.ID{}, fmt.Errorf("decode tree %v at %s: %w", id.Str(), nodepath, err)
	}
	changed := false
	kept := make([]*tree.Node, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		p := path.Join(nodepath, n.Name)
		ex, err := tr.exclude(p)
		if err != nil {
			return core.ID{}, fmt.Errorf("match %s: %w", p, err)
		}
		if ex {
			tr.g.verbosef(1, "excluding %s\n", p)
			changed = true
			continue
		}
		if n.Type == tree.NodeDir && n.Subtree != nil {
			nid, err := tr.filterTree(ctx, p, *n.Subtree)
			if err != nil {
				return core.ID{}, err
			}
			if nid != *n.Subtree {
				changed = true
				c := *n
				c.Subtree = &nid
				n = &c
			}
		}
		kept = append(kept, n)
	}
	result := id
	if changed {
		// the tree is encoded anew: make sure that loses nothing restic or
		// a newer cairn stored in it
		if again, err := tree.EncodeTree(t.Nodes); err != nil || !bytes.Equal(again, buf) {
			return core.ID{}, fmt.Errorf("tree %v at %s cannot be re-encoded without losing information", id.Str(), nodepath)
		}
		nbuf, err := tree.EncodeTree(kept)
		if err != nil {
			return core.ID{}, fmt.Errorf("encode tree at %s: %w", nodepath, err)
		}
		result = core.Hash(nbuf)
		if !tr.dryRun {
			if _, err := tr.r.SaveBlob(ctx, core.TreeBlob, nbuf, result, false); err != nil {
				return core.ID{}, fmt.Errorf("save tree at %s: %w", nodepath, err)
			}
		}
	}
	tr.done[key] = result
	return result, nil
}

func runRewrite(ctx context.Context, g *globalOptions, o rewriteOptions, args []string) error {
	exclude, err := o.excluder(ctx)
	if err != nil {
		return err
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	exclusive := o.forget && !o.dryRun
	unlock, ctx, _, err := g.lockRepository(ctx, r, exclusive, "rewrite", o.dryRun)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	list, err := g.loadSnapshots(ctx, r, o.filter.filter(), args)
	if err != nil {
		return err
	}
	snapshot.SortByTime(list)
	tr := &treeRewriter{g: g, r: r, exclude: exclude, dryRun: o.dryRun, done: make(map[string]core.ID)}
	type pending struct {
		sn      *snapshot.Snapshot
		oldID   core.ID
		newTree core.ID
	}
	var todo []pending
	seen := core.NewIDSet()
	for _, sn := range list {
		oldID := *sn.ID()
		if seen.Has(oldID) {
			continue
		}
		seen.Insert(oldID)
		g.verbosef(1, "\nsnapshot %s of %v at %s)\n", oldID.Str(), sn.Paths, sn.Time)
		nt, err := tr.filterTree(ctx, "/", *sn.Tree)
		if err != nil {
			return fmt.Errorf("rewrite snapshot %s: %w", oldID.Str(), err)
		}
		if nt == *sn.Tree {
			g.verbosef(1, "snapshot %s not modified\n", oldID.Str())
			continue
		}
		todo = append(todo, pending{sn: sn, oldID: oldID, newTree: nt})
	}
	if o.dryRun {
		for _, p := range todo {
			g.printf("would rewrite snapshot %s\n", p.oldID.Str())
			if o.forget {
				g.printf("would remove snapshot %s\n", p.oldID.Str())
			}
		}
		if len(todo) == 0 {
			g.printf("no snapshots would be modified\n")
		} else {
			g.printf("would modify %d snapshots\n", len(todo))
		}
		return nil
	}
	// every new tree is stored and indexed before a snapshot refers to it
	if err := r.Flush(ctx); err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	for _, p := range todo {
		sn := p.sn
		id := p.oldID
		sn.Original = &id
		nt := p.newTree
		sn.Tree = &nt
		if !o.forget && !sn.HasTags([]string{"rewrite"}) {
			sn.Tags = append(sn.Tags, "rewrite")
		}
		newID, err := r.SaveSnapshot(ctx, sn)
		if err != nil {
			return fmt.Errorf("rewrite snapshot %s: %w", p.oldID.Str(), err)
		}
		g.printf("snapshot %s rewritten as %s\n", p.oldID.Str(), newID.Str())
		if g.JSON {
			if err := g.printJSON(map[string]any{"message_type": "rewritten", "snapshot_id": p.oldID.String(), "new_snapshot_id": newID.String(), "old_removed": o.forget}); err != nil {
				return err
			}
		}
		if o.forget {
			h := backend.Handle{Type: core.SnapshotFile, Name: p.oldID.String()}
			if err := r.Backend().Remove(ctx, h); err != nil && !backend.IsNotExist(err) {
				return fmt.Errorf("rewrite: saved %s but could not remove the old snapshot %s: %w", newID.Str(), p.oldID.Str(), err)
			}
			g.printf("removed old snapshot %s\n", p.oldID.Str())
		}
	}
	if g.JSON {
		return g.printJSON(map[string]any{"message_type": "summary", "snapshots_modified": len(todo)})
	}
	if len(todo) == 0 {
		g.printf("no snapshots were modified\n")
	} else {
		g.printf("modified %d snapshots\n", len(todo))
	}
	return nil
}
