package cli

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

func init() { extraCommands = append(extraCommands, newRecoverCommand) }

func newRecoverCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "recover",
		Short: "Make a snapshot of directories no snapshot refers to",
		Long: `Look at every tree in the index, and save a new snapshot (path /recover,
tag "recovered") whose root holds every tree that neither another tree nor
a snapshot refers to, each as a directory named after its short ID. This
gets back data whose snapshot was removed by accident (before prune deleted
it). Trees that cannot be loaded are reported and skipped.

recover locks the repository non-exclusively.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRecover(cmd.Context(), g)
		},
	}
}

// recoverJSON is recover --json's result.
type recoverJSON struct {
	MessageType string `json:"message_type"` // "summary"
	Trees       int    `json:"trees"`
	Roots       int    `json:"roots"`
	SnapshotID  string `json:"snapshot_id,omitempty"`
}

// unreferencedTrees returns the indexed trees that neither another
// indexed tree nor a snapshot refers to. failed counts unloadable trees.
func unreferencedTrees(ctx context.Context, g *globalOptions, r *repo.Repository) (roots core.IDs, total, failed int, err error) {
	var trees core.IDs
	r.Index().Each(func(l index.Location) {
		if l.Type == core.TreeBlob {
			trees = append(trees, l.ID)
		}
	})
	seen := core.NewIDSet()
	var uniq core.IDs
	for _, id := range trees {
		if !seen.Has(id) { // a tree in two packs is listed twice
			seen.Insert(id)
			uniq = append(uniq, id)
		}
	}
	var mu sync.Mutex // guards referenced, failed
	referenced := core.NewIDSet()
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(r.Connections() + 2)
	for _, id := range uniq {
		eg.Go(func() error {
			t, err := loadTreeByID(ectx, r, id)
			if err != nil {
				if ectx.Err() != nil {
					return ectx.Err()
				}
				mu.Lock()
				failed++
				mu.Unlock()
				g.warnf("unable to load tree %v: %v\n", id.Str(), err)
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			for _, n := range t.Nodes {
				if n.Type == tree.NodeDir && n.Subtree != nil {
					referenced.Insert(*n.Subtree)
				}
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, 0, 0, err
	}
	snaps, errs, err := r.LoadAllSnapshots(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	for _, e := range errs {
		g.warnf("warning: %v\n", e)
	}
	for _, sn := range snaps {
		referenced.Insert(*sn.Tree)
	}
	for _, id := range uniq {
		if !referenced.Has(id) {
			roots = append(roots, id)
		}
	}
	return roots, len(uniq), failed, nil
}

func runRecover(ctx context.Context, g *globalOptions) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "recover", false)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	roots, total, failed, err := unreferencedTrees(ctx, g, r)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	g.printf("loaded %d trees, found %d unreferenced roots\n", total, len(roots))
	if len(roots) == 0 {
		g.printf("no snapshot to write\n")
		if g.JSON {
			return g.printJSON(recoverJSON{MessageType: "summary", Trees: total})
		}
		return nil
	}
	now := time.Now()
	nodes := make([]*tree.Node, 0, len(roots))
	for _, id := range roots {
		sub := id
		nodes = append(nodes, &tree.Node{Name: id.Str(), Type: tree.NodeDir, Mode: os.ModeDir | 0o755,
			ModTime: now, AccessTime: now, ChangeTime: now, Subtree: &sub})
	}
	// two roots may share a short ID; give such a node the full ID instead
	names := map[string]int{}
	for _, n := range nodes {
		names[n.Name]++
	}
	for _, n := range nodes {
		if names[n.Name] > 1 {
			n.Name = n.Subtree.String()
		}
	}
	tree.SortNodes(nodes)
	buf, err := tree.EncodeTree(nodes)
	if err != nil {
		return fmt.Errorf("recover: encode tree: %w", err)
	}
	res, err := r.SaveBlob(ctx, core.TreeBlob, buf, core.ID{}, false)
	if err != nil {
		return fmt.Errorf("recover: save tree: %w", err)
	}
	if err := r.Flush(ctx); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	host, _ := os.Hostname()
	sn, err := snapshot.New([]string{"/recover"}, []string{"recovered"}, host, now)
	if err != nil {
		return err
	}
	treeID := res.ID
	sn.Tree = &treeID
	sn.ProgramVersion = "cairn " + Version
	id, err := r.SaveSnapshot(ctx, sn)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if g.JSON {
		if err := g.printJSON(recoverJSON{MessageType: "summary", Trees: total, Roots: len(roots), SnapshotID: id.String()}); err != nil {
			return err
		}
	}
	g.printf("saved new snapshot %s\n", id.Str())
	if failed > 0 {
		return fmt.Errorf("recover: %d trees could not be loaded; the snapshot may miss directories", failed)
	}
	return nil
}
