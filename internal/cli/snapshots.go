package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/snapshot"
)

type snapshotFilterOptions struct {
	hosts []string
	tags  []string
	paths []string
}

func addSnapshotFilterFlags(cmd *cobra.Command, o *snapshotFilterOptions) {
	f := cmd.Flags()
	f.StringArrayVarP(&o.hosts, "host", "H", nil, "only consider snapshots of this `host` (repeatable)")
	f.StringArrayVar(&o.tags, "tag", nil, "only consider snapshots with these `tags` (a,b means both; repeatable means either)")
	f.StringArrayVar(&o.paths, "path", nil, "only consider snapshots that include this `path` (repeatable)")
}

func (o snapshotFilterOptions) filter() snapshot.Filter {
	return snapshot.Filter{Hosts: o.hosts, Tags: snapshot.ParseTagList(o.tags), Paths: o.paths}
}

// snapshotJSON is restic's snapshots --json element: the snapshot fields
// followed by id and short_id.
type snapshotJSON struct {
	*snapshot.Snapshot
	ID      string `json:"id"`
	ShortID string `json:"short_id"`
}

func toSnapshotJSON(sn *snapshot.Snapshot) snapshotJSON {
	return snapshotJSON{Snapshot: sn, ID: sn.ID().String(), ShortID: sn.ID().Str()}
}

func newSnapshotsCommand(g *globalOptions) *cobra.Command {
	var o snapshotFilterOptions
	var latest int
	cmd := &cobra.Command{
		Use:   "snapshots [flags] [ID...]",
		Short: "List snapshots",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshots(cmd.Context(), g, o, latest, args)
		},
	}
	addSnapshotFilterFlags(cmd, &o)
	cmd.Flags().IntVar(&latest, "latest", 0, "show only the last `n` snapshots per host and path set")
	return cmd
}

// loadSnapshots loads the snapshots named by args (IDs, prefixes or
// "latest"), or all matching the filter when args is empty.
func (g *globalOptions) loadSnapshots(ctx context.Context, r repoSnapshots, f snapshot.Filter, args []string) ([]*snapshot.Snapshot, error) {
	if len(args) > 0 {
		var out []*snapshot.Snapshot
		for _, a := range args {
			sn, err := r.FindSnapshot(ctx, a, f)
			if err != nil {
				return nil, err
			}
			out = append(out, sn)
		}
		return out, nil
	}
	all, errs, err := r.LoadAllSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range errs {
		g.warnf("warning: %v\n", e)
	}
	var out []*snapshot.Snapshot
	for _, sn := range all {
		if f.Matches(sn) {
			out = append(out, sn)
		}
	}
	return out, nil
}

type repoSnapshots interface {
	FindSnapshot(ctx context.Context, s string, f snapshot.Filter) (*snapshot.Snapshot, error)
	LoadAllSnapshots(ctx context.Context) ([]*snapshot.Snapshot, []error, error)
}

func runSnapshots(ctx context.Context, g *globalOptions, o snapshotFilterOptions, latest int, args []string) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "snapshots", true)
	if err != nil {
		return err
	}
	defer unlock()
	list, err := g.loadSnapshots(ctx, r, o.filter(), args)
	if err != nil {
		return err
	}
	snapshot.SortByTime(list)
	if latest > 0 {
		list = keepLatest(list, latest)
	}
	if g.JSON {
		out := make([]snapshotJSON, 0, len(list))
		for _, sn := range list {
			out = append(out, toSnapshotJSON(sn))
		}
		return g.printJSON(out)
	}
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTime\tHost\tTags\tPaths")
	for _, sn := range list {
		paths := sn.Paths
		first := ""
		if len(paths) > 0 {
			first = paths[0]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sn.ID().Str(), sn.Time.Format("2006-01-02 15:04:05"), sn.Hostname, strings.Join(sn.Tags, ","), first)
		for _, p := range paths[min(1, len(paths)):] {
			fmt.Fprintf(tw, "\t\t\t\t%s\n", p)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	width := 0
	for _, l := range lines {
		width = max(width, len(strings.TrimRight(l, " ")))
	}
	dash := strings.Repeat("-", width)
	out := []string{lines[0], dash}
	out = append(out, lines[1:]...)
	out = append(out, dash, fmt.Sprintf("%d snapshots", len(list)))
	for _, l := range out {
		fmt.Fprintln(g.stdout, strings.TrimRight(l, " "))
	}
	return nil
}

func keepLatest(list []*snapshot.Snapshot, n int) []*snapshot.Snapshot {
	counts := map[string]int{}
	var keep []*snapshot.Snapshot
	for i := len(list) - 1; i >= 0; i-- {
		sn := list[i]
		key := sn.Hostname + "\x00" + strings.Join(sn.Paths, "\x00")
		if counts[key] < n {
			counts[key]++
			keep = append([]*snapshot.Snapshot{sn}, keep...)
		}
	}
	return keep
}
