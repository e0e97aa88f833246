package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
)

// lockSightingsFile is the name, in the repository's cache directory, of the
// file in which every command that lists locks records since when this host
// has seen each lock file (unlock judges lock ages by it).
const lockSightingsFile = "lock-sightings.json"

func newUnlockCommand(g *globalOptions) *cobra.Command {
	var all bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Remove stale locks (or all locks with --remove-all)",
		Long: `Remove locks left behind by processes that died. A lock is stale when it
was taken by cairn on this host, in this PID namespace and since the last boot,
and its process is gone; or when it is older than 30 minutes both by its own
time stamp and by the file's age. Locks without cairn's namespace and boot
fields (restic's) are judged by age only.

The file's age is its modification time where the backend reports one (a local
repository). Other backends (rest:, s3:, sftp:, rclone:) report none, and the
time stamp inside a lock comes from the clock of the host that wrote it, which
may be wrong. So for them the age is how long this host has seen the lock
file: every live lock is rewritten under a new name at least every 5 minutes,
so a file seen for more than 30 minutes belongs to a process that stopped.
Every command that lists the locks (each backup, check, prune, unlock, ...)
records its sightings in the repository's cache directory; a lock that is
old by its time stamp but not yet seen long enough is reported with the time
left. Run unlock again later, or use --wait to keep watching.

Empty lock files (an upload under way or cut short) are removed by the same
age rule. --remove-all removes every lock: only use it when no other process
runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnlock(cmd.Context(), g, all, wait)
		},
	}
	cmd.Flags().BoolVar(&all, "remove-all", false, "remove all locks, even live ones")
	cmd.Flags().DurationVar(&wait, "wait", 0, "keep watching locks that look stale by their time stamp for up to `duration` (e.g. 35m) and remove them once they are stale")
	return cmd
}

func runUnlock(ctx context.Context, g *globalOptions, all bool, wait time.Duration) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	opts := repo.RemoveLocksOptions{All: all, Sightings: g.lockSightings(r)}
	if opts.Sightings == nil {
		opts.Sightings = &repo.MemorySightings{} // --no-cache: this run's own sightings (--wait)
	}
	deadline := time.Now().Add(wait)
	var removed []core.ID
	var res repo.RemoveLocksResult
	for {
		res, err = r.RemoveStaleLocks(ctx, opts)
		removed = append(removed, res.Removed...)
		if err != nil || len(res.Pending) == 0 || wait <= 0 {
			break
		}
		next := res.Pending[0].Remaining
		for _, p := range res.Pending[1:] {
			next = min(next, p.Remaining)
		}
		// look again at least every minute: pending locks may vanish or be
		// refreshed (then they are live and nothing is left to wait for)
		next = min(next, time.Minute)
		if time.Now().Add(next).After(deadline) {
			break
		}
		if !g.JSON && !g.Quiet {
			g.printf("waiting for %d lock(s) that look stale by their time stamp (next look in %s)\n", len(res.Pending), next.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(next):
		}
	}
	if g.JSON {
		ids := make([]string, 0, len(removed))
		for _, id := range removed {
			ids = append(ids, id.String())
		}
		pending := make([]map[string]any, 0, len(res.Pending))
		for _, p := range res.Pending {
			pending = append(pending, map[string]any{
				"id": p.ID.String(), "hostname": p.Info.Hostname, "pid": p.Info.PID, "exclusive": p.Info.Exclusive,
				"operation": p.Info.CairnOp, "time": p.Info.Time, "seen_seconds": int64(p.Seen.Seconds()),
				"remaining_seconds": int64(p.Remaining.Seconds()),
			})
		}
		if jerr := g.printJSON(map[string]any{"message_type": "unlock", "removed": ids, "pending": pending}); jerr != nil {
			return jerr
		}
		return err
	}
	g.printf("removed %d locks\n", len(removed))
	for _, p := range res.Pending {
		g.printf("lock %s (%s) is older than %s by its time stamp, but this host has seen it for %s only: it may be removed in %s (run unlock again then, or unlock --wait %s)\n",
			p.ID.Str(), p.Info, repo.DefaultLockTiming().StaleAfter, p.Seen.Round(time.Second), p.Remaining.Round(time.Second), (p.Remaining + time.Minute).Round(time.Minute))
	}
	return err
}
