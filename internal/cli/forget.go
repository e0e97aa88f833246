package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/failpoint"
	"github.com/cairn-backup/cairn/internal/forget"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
)

func init() { extraCommands = append(extraCommands, newForgetCommand) }

type forgetOptions struct {
	last, hourly, daily, weekly, monthly, yearly int
	within, withinHourly, withinDaily            string
	withinWeekly, withinMonthly, withinYearly    string
	keepTags                                     []string
	groupBy                                      string
	filter                                       snapshotFilterOptions
	dryRun                                       bool
	prune                                        bool
	pruneOpts                                    pruneOptions
}

func newForgetCommand(g *globalOptions) *cobra.Command {
	var o forgetOptions
	cmd := &cobra.Command{
		Use:   "forget [flags] [SNAPSHOT...]",
		Short: "Remove snapshots by ID or by policy",
		Long: `Remove the given snapshots, or those not kept by the policy (--keep-*),
applied separately to each group (--group-by, default host,paths) exactly as
restic does. Only snapshot files are removed; --prune (or a later prune)
removes the data no snapshot references any more. Backups may run meanwhile;
another cairn forget may not (this one exits with code 11: try again).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runForget(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.last, "keep-last", "l", 0, "keep the last `n` snapshots (-1: all)")
	f.IntVarP(&o.hourly, "keep-hourly", "H", 0, "keep the last `n` hourly snapshots")
	f.IntVarP(&o.daily, "keep-daily", "d", 0, "keep the last `n` daily snapshots")
	f.IntVarP(&o.weekly, "keep-weekly", "w", 0, "keep the last `n` weekly snapshots")
	f.IntVarP(&o.monthly, "keep-monthly", "m", 0, "keep the last `n` monthly snapshots")
	f.IntVarP(&o.yearly, "keep-yearly", "y", 0, "keep the last `n` yearly snapshots")
	f.StringVar(&o.within, "keep-within", "", "keep snapshots newer than `duration` (e.g. 1y5m7d2h) before the newest")
	f.StringVar(&o.withinHourly, "keep-within-hourly", "", "keep hourly snapshots within `duration`")
	f.StringVar(&o.withinDaily, "keep-within-daily", "", "keep daily snapshots within `duration`")
	f.StringVar(&o.withinWeekly, "keep-within-weekly", "", "keep weekly snapshots within `duration`")
	f.StringVar(&o.withinMonthly, "keep-within-monthly", "", "keep monthly snapshots within `duration`")
	f.StringVar(&o.withinYearly, "keep-within-yearly", "", "keep yearly snapshots within `duration`")
	f.StringArrayVar(&o.keepTags, "keep-tag", nil, "keep snapshots with this `taglist` (repeatable)")
	f.StringVarP(&o.groupBy, "group-by", "g", "host,paths", "group snapshots by `fields` (host, paths, tags; '' for one group)")
	f.StringArrayVar(&o.filter.hosts, "host", nil, "only consider snapshots of this `host` (repeatable)")
	f.StringArrayVar(&o.filter.tags, "tag", nil, "only consider snapshots with these `tags` (repeatable)")
	f.StringArrayVar(&o.filter.paths, "path", nil, "only consider snapshots including this `path` (repeatable)")
	f.BoolVarP(&o.dryRun, "dry-run", "n", false, "only show what would be removed")
	f.BoolVar(&o.prune, "prune", false, "run prune afterwards")
	addPruneFlags(cmd, &o.pruneOpts)
	return cmd
}

func (o forgetOptions) policy() (forget.Policy, error) {
	p := forget.Policy{Last: o.last, Hourly: o.hourly, Daily: o.daily, Weekly: o.weekly, Monthly: o.monthly, Yearly: o.yearly,
		Tags: snapshot.ParseTagList(o.keepTags)}
	for _, d := range []struct {
		s   string
		dst *forget.Duration
		n   string
	}{{o.within, &p.Within, "keep-within"}, {o.withinHourly, &p.WithinHourly, "keep-within-hourly"},
		{o.withinDaily, &p.WithinDaily, "keep-within-daily"}, {o.withinWeekly, &p.WithinWeekly, "keep-within-weekly"},
		{o.withinMonthly, &p.WithinMonthly, "keep-within-monthly"}, {o.withinYearly, &p.WithinYearly, "keep-within-yearly"}} {
		v, err := forget.ParseDuration(d.s)
		if err != nil {
			return p, fmt.Errorf("--%s: %w", d.n, err)
		}
		*d.dst = v
	}
	return p, p.Validate()
}

func runForget(ctx context.Context, g *globalOptions, o forgetOptions, args []string) error {
	pol, err := o.policy()
	if err != nil {
		return err
	}
	gb, err := forget.ParseGroupBy(o.groupBy)
	if err != nil {
		return err
	}
	if len(args) > 0 && !pol.Empty() {
		return fmt.Errorf("give either snapshot IDs or a policy, not both")
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	// Removing snapshot files is safe under a shared lock: prune's sweep
	// recomputes what is used under its exclusive lock (docs/concurrency.md).
	unlock, lctx, l, err := g.lockRepository(ctx, r, false, "forget", o.dryRun)
	if err != nil {
		return err
	}
	// two forgets evaluating their policies on the same listing could
	// together remove more than either would alone (F8)
	if l != nil {
		if err := ensureOnly(lctx, r, l, "forget"); err != nil {
			unlock()
			return err
		}
	}
	var remove []*snapshot.Snapshot
	var groups []forget.JSONGroup
	if len(args) > 0 {
		remove, err = g.loadSnapshots(lctx, r, o.filter.filter(), args)
		if err != nil {
			unlock()
			return err
		}
	} else if !pol.Empty() {
		all, err := g.loadSnapshots(lctx, r, o.filter.filter(), nil)
		if err != nil {
			unlock()
			return err
		}
		results := forget.ApplyGroups(all, gb, pol, r.LockTimingNow())
		for _, res := range results {
			remove = append(remove, res.Remove...)
			groups = append(groups, res.JSON())
			if !g.JSON {
				g.printForgetGroup(res, pol)
			}
		}
	} else {
		unlock()
		return fmt.Errorf("no policy given: nothing to do (use --keep-* flags or snapshot IDs)")
	}
	if g.JSON && len(args) == 0 {
		if groups == nil {
			groups = []forget.JSONGroup{}
		}
		if err := g.printJSON(groups); err != nil {
			unlock()
			return err
		}
	}
	if !o.dryRun && len(remove) > 0 {
		for i, sn := range remove {
			// every removal is a commit step: checked, and bounded in
			// time (A-FREEZE)
			wctx, done, err := repo.GuardIfLocked(lctx, l)
			if err != nil {
				unlock()
				if i == 0 {
					return fmt.Errorf("forget not committed: %w", err)
				}
				return fmt.Errorf("forget stopped after removing %d of %d snapshots: %w", i, len(remove), err)
			}
			err = r.Backend().Remove(wctx, backend.Handle{Type: core.SnapshotFile, Name: sn.ID().String()})
			if err = done(err); err != nil {
				unlock()
				return fmt.Errorf("remove snapshot %v: %w", sn.ID().Str(), err)
			}
			if i == 0 {
				if err := failpoint.Inject("forget.after-first-remove"); err != nil {
					unlock()
					return err
				}
			}
		}
		g.printf("removed %d snapshots\n", len(remove))
	} else if o.dryRun {
		g.printf("would remove %d snapshots\n", len(remove))
	}
	unlock()
	if o.prune && !o.dryRun {
		return runPrune(ctx, g, r, o.pruneOpts)
	}
	return nil
}

func (g *globalOptions) printForgetGroup(res forget.Result, pol forget.Policy) {
	if g.Quiet {
		return
	}
	var key []string
	if res.Key.Hostname != "" {
		key = append(key, "host ["+res.Key.Hostname+"]")
	}
	if len(res.Key.Paths) > 0 {
		key = append(key, "paths ["+strings.Join(res.Key.Paths, ", ")+"]")
	}
	if len(res.Key.Tags) > 0 {
		key = append(key, "tags ["+strings.Join(res.Key.Tags, ", ")+"]")
	}
	fmt.Fprintf(g.stdout, "Applying policy: %v\nsnapshots for %s:\n", pol, strings.Join(key, ", "))
	tw := tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "keep %d snapshots:\n", len(res.Keep))
	for _, sn := range res.Keep {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", sn.ID().Str(), sn.Time.Format("2006-01-02 15:04:05"), sn.Hostname)
	}
	fmt.Fprintf(tw, "remove %d snapshots:\n", len(res.Remove))
	for _, sn := range res.Remove {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", sn.ID().Str(), sn.Time.Format("2006-01-02 15:04:05"), sn.Hostname)
	}
	tw.Flush()
	fmt.Fprintln(g.stdout)
}
