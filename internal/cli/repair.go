package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repair"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

func init() {
	extraCommands = append(extraCommands, newRepairCommand, newRebuildIndexCommand)
}

func newRepairCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Repair the repository",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newRepairIndexCommand(g, "index"), newRepairSnapshotsCommand(g))
	return cmd
}

const repairIndexLong = `Build a new index from the pack files and replace the old index files with it.

Packs the old index describes consistently (the pack exists with the size
its blobs imply, and all index files agree about it) are taken over as they
are; every other pack has its header read (--read-all-packs reads every
pack). Index entries of packs that no longer exist are dropped. Packs whose
header cannot be read are reported and left alone. The new index files are
written before the old ones are deleted. Takes an exclusive lock.`

func newRepairIndexCommand(g *globalOptions, use string) *cobra.Command {
	var readAll bool
	cmd := &cobra.Command{
		Use:   use + " [flags]",
		Short: "Build a new index from the pack files",
		Long:  repairIndexLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepairIndex(cmd.Context(), g, readAll)
		},
	}
	cmd.Flags().BoolVar(&readAll, "read-all-packs", false, "read the header of every pack instead of trusting the old index")
	return cmd
}

// newRebuildIndexCommand is restic 0.14's name for repair index.
func newRebuildIndexCommand(g *globalOptions) *cobra.Command {
	cmd := newRepairIndexCommand(g, "rebuild-index")
	cmd.Deprecated = `use "repair index" instead`
	return cmd
}

// repairIndexJSON is repair index --json's summary.
type repairIndexJSON struct {
	MessageType       string              `json:"message_type"` // "summary"
	OldIndexFiles     int                 `json:"old_index_files"`
	DamagedIndexFiles []repairFileErrJSON `json:"damaged_index_files"`
	KeptPacks         int                 `json:"kept_packs"`
	ReadPacks         int                 `json:"read_packs"`
	MissingPacks      []string            `json:"missing_packs"`
	UnreadablePacks   []repairFileErrJSON `json:"unreadable_packs"`
	NewIndexFiles     []string            `json:"new_index_files"`
	DeletedIndexFiles int                 `json:"deleted_index_files"`
	Packs             int                 `json:"packs"`
	Blobs             int                 `json:"blobs"`
	PendingMarks      int                 `json:"pending_marks"`
}

type repairFileErrJSON struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

func idStrings(ids core.IDs) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, id.String())
	}
	return out
}

func runRepairIndex(ctx context.Context, g *globalOptions, readAll bool) error {
	// A repair must see what the backend holds, not cached copies (H35);
	// later commands drop cached files that no longer exist when they list.
	g.NoCache = true
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, true, "repair index", false)
	if err != nil {
		return err
	}
	defer unlock()
	res, err := repair.RebuildIndex(ctx, r, repair.IndexOptions{ReadAllPacks: readAll, Log: g.printf})
	if res != nil {
		for _, u := range res.UnreadablePacks {
			g.warnf("warning: pack %v cannot be read, it is not in the new index: %v\n", u.Pack, u.Err)
		}
		if g.JSON {
			out := repairIndexJSON{
				MessageType:       "summary",
				OldIndexFiles:     len(res.OldIndexFiles),
				DamagedIndexFiles: []repairFileErrJSON{},
				KeptPacks:         res.KeptPacks,
				ReadPacks:         res.ReadPacks,
				MissingPacks:      idStrings(res.MissingPacks),
				UnreadablePacks:   []repairFileErrJSON{},
				NewIndexFiles:     idStrings(res.NewIndexFiles),
				DeletedIndexFiles: len(res.DeletedIndexFiles),
				Packs:             res.Packs,
				Blobs:             res.Blobs,
				PendingMarks:      res.PendingMarks,
			}
			for _, d := range res.DamagedIndexFiles {
				out.DamagedIndexFiles = append(out.DamagedIndexFiles, repairFileErrJSON{ID: d.File.String(), Error: d.Err.Error()})
			}
			for _, u := range res.UnreadablePacks {
				out.UnreadablePacks = append(out.UnreadablePacks, repairFileErrJSON{ID: u.Pack.String(), Error: u.Err.Error()})
			}
			if jerr := g.printJSON(out); jerr != nil && err == nil {
				err = jerr
			}
		}
	}
	if err != nil {
		return err
	}
	g.printf("done\n")
	return nil
}

type repairSnapshotsOptions struct {
	filter snapshotFilterOptions
	dryRun bool
	forget bool
}

func newRepairSnapshotsCommand(g *globalOptions) *cobra.Command {
	var o repairSnapshotsOptions
	cmd := &cobra.Command{
		Use:   "snapshots [flags] [SNAPSHOT...]",
		Short: "Repair snapshots that refer to missing data",
		Long: `Check the given snapshots (all matching --host/--tag/--path if none are given)
against the index and write repaired copies of the damaged ones:

  - content blobs of a file that the index does not know are dropped, so the
    file becomes shorter ("removed missing content"); a wrong size is fixed;
  - a directory whose tree cannot be loaded becomes an empty directory;
  - nodes of an invalid type are removed.

The copy records the damaged snapshot in "original" and is tagged
"repaired"; with --forget the damaged snapshot is deleted instead (and the
copy is not tagged). A snapshot whose root tree cannot be loaded cannot be
repaired: with --forget it is deleted, otherwise it is only reported.

This loses data. It depends on a correct index: run "repair index" first.
Takes an exclusive lock.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepairSnapshots(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.dryRun, "dry-run", "n", false, "only report what would be done")
	f.BoolVar(&o.forget, "forget", false, "remove the damaged snapshots after saving their repaired copies")
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

type repairChangeJSON struct {
	Path  string `json:"path"`
	Kind  string `json:"kind"`
	Error string `json:"error,omitempty"`
}

type repairSnapshotJSON struct {
	MessageType     string             `json:"message_type"` // "snapshot"
	SnapshotID      string             `json:"snapshot_id"`
	Modified        bool               `json:"modified"`
	Changes         []repairChangeJSON `json:"changes"`
	NewSnapshotID   string             `json:"new_snapshot_id,omitempty"`
	RemovedOriginal bool               `json:"removed_original"`
	RootUnreadable  bool               `json:"root_unreadable"`
}

type repairSnapshotsSummaryJSON struct {
	MessageType       string `json:"message_type"` // "summary"
	DryRun            bool   `json:"dry_run"`
	ModifiedSnapshots int    `json:"modified_snapshots"`
}

func runRepairSnapshots(ctx context.Context, g *globalOptions, o repairSnapshotsOptions, args []string) error {
	g.NoCache = true // see runRepairIndex
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, true, "repair snapshots", o.dryRun)
	if err != nil {
		return err
	}
	defer unlock()
	// snapshots first, then the index (format §13)
	list, err := g.loadSnapshots(ctx, r, o.filter.filter(), args)
	if err != nil {
		return err
	}
	snapshot.SortByTime(list)
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	rep := repair.NewSnapshotRepairer(r, repair.SnapshotOptions{DryRun: o.dryRun, Forget: o.forget})
	modified := 0
	seen := core.NewIDSet()
	for _, sn := range list {
		if seen.Has(*sn.ID()) {
			continue
		}
		seen.Insert(*sn.ID())
		g.printf("\n%v\n", sn)
		res, err := rep.RepairSnapshot(ctx, sn)
		if res != nil {
			if res.Modified {
				modified++
			}
			if perr := g.printRepairResult(res, o); perr != nil && err == nil {
				err = perr
			}
		}
		if err != nil {
			return fmt.Errorf("repair snapshot %v: %w", sn.ID().Str(), err)
		}
	}
	if g.JSON {
		return g.printJSON(repairSnapshotsSummaryJSON{MessageType: "summary", DryRun: o.dryRun, ModifiedSnapshots: modified})
	}
	switch {
	case modified == 0 && o.dryRun:
		g.printf("\nno snapshots would be modified\n")
	case modified == 0:
		g.printf("\nno snapshots were modified\n")
	case o.dryRun:
		g.printf("\nwould modify %d snapshots\n", modified)
	default:
		g.printf("\nmodified %d snapshots\n", modified)
	}
	return nil
}

func (g *globalOptions) printRepairResult(res *repair.SnapshotResult, o repairSnapshotsOptions) error {
	if g.JSON {
		out := repairSnapshotJSON{MessageType: "snapshot", SnapshotID: res.Snapshot.String(), Modified: res.Modified,
			Changes: []repairChangeJSON{}, RemovedOriginal: res.RemovedOriginal, RootUnreadable: res.RootUnreadable}
		if !res.NewSnapshot.IsNull() {
			out.NewSnapshotID = res.NewSnapshot.String()
		}
		for _, c := range res.Changes {
			cj := repairChangeJSON{Path: c.Path, Kind: string(c.Kind)}
			if c.Err != nil {
				cj.Error = c.Err.Error()
			}
			out.Changes = append(out.Changes, cj)
		}
		return g.printJSON(out)
	}
	for _, c := range res.Changes {
		g.printf("  %v\n", c)
		if c.Err != nil {
			g.verbosef(1, "    (%v)\n", c.Err)
		}
	}
	switch {
	case res.RootUnreadable && o.dryRun && o.forget:
		g.printf("would remove the snapshot: its root tree cannot be loaded\n")
	case res.RootUnreadable && res.RemovedOriginal:
		g.printf("removed snapshot %s: its root tree cannot be loaded\n", res.Snapshot.Str())
	case res.RootUnreadable:
		g.warnf("warning: snapshot %s cannot be repaired, its root tree cannot be loaded; use --forget to remove it\n", res.Snapshot.Str())
	case res.Modified && o.dryRun:
		g.printf("would save a repaired copy\n")
		if o.forget {
			g.printf("would remove the damaged snapshot\n")
		}
	case res.Modified:
		g.printf("saved repaired snapshot %s\n", res.NewSnapshot.Str())
		if res.RemovedOriginal {
			g.printf("removed damaged snapshot %s\n", res.Snapshot.Str())
		}
	}
	return nil
}
