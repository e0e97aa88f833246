package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

func init() { extraCommands = append(extraCommands, newTagCommand) }

type tagOptions struct {
	filter   snapshotFilterOptions
	set      []string
	add      []string
	remove   []string
	setGiven bool
}

func newTagCommand(g *globalOptions) *cobra.Command {
	var o tagOptions
	cmd := &cobra.Command{
		Use:   "tag [flags] [SNAPSHOT...]",
		Short: "Modify the tags of snapshots",
		Long: `Add tags to, remove tags from, or replace the tags of snapshots. Without
SNAPSHOT every snapshot matching --host/--tag/--path is changed (all
snapshots if no filter is given). A value may list several tags: "a,b".
--set "" removes all tags.

A changed snapshot is written as a new snapshot file (which records the ID
of the very first version in "original") before the old file is deleted.
tag takes an exclusive lock.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.setGiven = cmd.Flags().Changed("set")
			return runTag(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.set, "set", nil, "replace the tags with `tags` (tag[,tag,...]; repeatable)")
	f.StringArrayVar(&o.add, "add", nil, "add `tags` (tag[,tag,...]; repeatable)")
	f.StringArrayVar(&o.remove, "remove", nil, "remove `tags` (tag[,tag,...]; repeatable)")
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

// flattenTags splits "a,b" values into single non-empty tags.
func flattenTags(values []string) []string {
	var out []string
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// changeSnapshotTags applies set (if setGiven), else add and remove, to
// sn's tags and reports whether the snapshot must be rewritten.
func changeSnapshotTags(sn *snapshot.Snapshot, setGiven bool, set, add, remove []string) bool {
	if setGiven {
		sn.Tags = append([]string(nil), set...)
		if len(sn.Tags) == 0 {
			sn.Tags = nil
		}
		return true
	}
	changed := false
	for _, t := range add {
		if !sn.HasTags([]string{t}) {
			sn.Tags = append(sn.Tags, t)
			changed = true
		}
	}
	if len(remove) > 0 {
		kept := sn.Tags[:0:0]
		for _, t := range sn.Tags {
			drop := false
			for _, r := range remove {
				drop = drop || t == r
			}
			if drop {
				changed = true
			} else {
				kept = append(kept, t)
			}
		}
		if len(kept) == 0 {
			kept = nil
		}
		sn.Tags = kept
	}
	return changed
}

// tagChangedJSON and tagSummaryJSON are tag --json's messages.
type tagChangedJSON struct {
	MessageType   string `json:"message_type"` // "changed"
	OldSnapshotID string `json:"old_snapshot_id"`
	NewSnapshotID string `json:"new_snapshot_id"`
}

type tagSummaryJSON struct {
	MessageType      string `json:"message_type"` // "summary"
	ChangedSnapshots int    `json:"changed_snapshots"`
}

func runTag(ctx context.Context, g *globalOptions, o tagOptions, args []string) error {
	set, add, remove := flattenTags(o.set), flattenTags(o.add), flattenTags(o.remove)
	if !o.setGiven && len(add) == 0 && len(remove) == 0 {
		return errors.New("tag: nothing to do: give --set, --add or --remove")
	}
	if o.setGiven && (len(add) > 0 || len(remove) > 0) {
		return errors.New("tag: --set and --add/--remove cannot be given at the same time")
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, true, "tag", false)
	if err != nil {
		return err
	}
	defer unlock()
	list, err := g.loadSnapshots(ctx, r, o.filter.filter(), args)
	if err != nil {
		return err
	}
	changedCount := 0
	var errs []error
	seen := core.NewIDSet()
	for _, sn := range list {
		oldID := *sn.ID()
		if seen.Has(oldID) {
			continue // named twice
		}
		seen.Insert(oldID)
		if !changeSnapshotTags(sn, o.setGiven, set, add, remove) {
			continue
		}
		if sn.Original == nil {
			orig := oldID
			sn.Original = &orig
		}
		newID, err := r.SaveSnapshot(ctx, sn)
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot %v: %w", oldID.Str(), err))
			continue
		}
		if err := r.Backend().Remove(ctx, backend.Handle{Type: core.SnapshotFile, Name: oldID.String()}); err != nil {
			errs = append(errs, fmt.Errorf("snapshot %v: saved as %v, but removing the old file failed: %w", oldID.Str(), newID.Str(), err))
			continue
		}
		changedCount++
		if g.JSON {
			if err := g.printJSON(tagChangedJSON{MessageType: "changed", OldSnapshotID: oldID.String(), NewSnapshotID: newID.String()}); err != nil {
				return err
			}
		} else {
			g.verbosef(1, "snapshot %s saved as %s\n", oldID.Str(), newID.Str())
		}
	}
	if g.JSON {
		if err := g.printJSON(tagSummaryJSON{MessageType: "summary", ChangedSnapshots: changedCount}); err != nil {
			return err
		}
	} else if changedCount == 0 {
		g.printf("no snapshots were modified\n")
	} else {
		g.printf("modified tags on %d snapshots\n", changedCount)
	}
	if len(errs) > 0 {
		return fmt.Errorf("tag: %w", errors.Join(errs...))
	}
	return nil
}
