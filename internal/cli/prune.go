package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/prune"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/ui"
)

func init() { extraCommands = append(extraCommands, newPruneCommand) }

type pruneOptions struct {
	maxUnused           string
	maxRepackSize       string
	repackCacheableOnly bool
	repackSmall         bool
	repackUncompressed  bool
	dryRun              bool
	keepDelete          time.Duration
	exclusive           bool
}

func addPruneFlags(cmd *cobra.Command, o *pruneOptions) {
	f := cmd.Flags()
	f.StringVar(&o.maxUnused, "max-unused", "5%", "tolerate `limit` of unused data (percentage, size, or 'unlimited')")
	f.StringVar(&o.maxRepackSize, "max-repack-size", "", "repack at most `size` of packs")
	f.BoolVar(&o.repackCacheableOnly, "repack-cacheable-only", false, "only repack tree packs")
	f.BoolVar(&o.repackSmall, "repack-small", false, "repack packs below the target size even when few")
	f.BoolVar(&o.repackUncompressed, "repack-uncompressed", false, "repack uncompressed data (v2 repositories)")
	f.DurationVar(&o.keepDelete, "keep-delete", 23*time.Hour, "keep unused packs this `long` after marking them before deleting (two-phase prune)")
	f.BoolVar(&o.exclusive, "exclusive", false, "prune in one phase under an exclusive lock, as restic does (blocks backups while it runs)")
}

func newPruneCommand(g *globalOptions) *cobra.Command {
	var o pruneOptions
	cmd := &cobra.Command{
		Use:   "prune [flags]",
		Short: "Remove data no snapshot references",
		Long: `Remove unreferenced data from the repository.

By default prune works in two phases so that backups can keep running:
the mark phase (shared lock) repacks partly used packs and records unused
packs as pending deletion, without deleting anything; the sweep phase (a
brief exclusive lock, taken only when no backup runs) deletes pending packs
marked at least --keep-delete ago, unless a snapshot uses them again.
--keep-delete 0 sweeps this run's marks at once (when nothing else runs).
--exclusive prunes in one phase under an exclusive lock, as restic does.
See docs/concurrency.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.openRepository(cmd.Context())
			if err != nil {
				return err
			}
			defer r.Close()
			return runPrune(cmd.Context(), g, r, o)
		},
	}
	addPruneFlags(cmd, &o)
	cmd.Flags().BoolVarP(&o.dryRun, "dry-run", "n", false, "only show what would be done")
	return cmd
}

func (o pruneOptions) pruneOpts() (prune.Options, error) {
	po := prune.Options{MaxUnused: o.maxUnused, MaxRepackSize: -1, RepackCacheableOnly: o.repackCacheableOnly,
		RepackSmall: o.repackSmall, RepackUncompressed: o.repackUncompressed, DryRun: o.dryRun}
	if o.maxRepackSize != "" {
		n, err := prune.ParseSize(o.maxRepackSize)
		if err != nil {
			return po, fmt.Errorf("--max-repack-size: %w", err)
		}
		po.MaxRepackSize = n
	}
	return po, nil
}

func runPrune(ctx context.Context, g *globalOptions, r *repo.Repository, o pruneOptions) error {
	po, err := o.pruneOpts()
	if err != nil {
		return err
	}
	po.Logf = func(format string, args ...any) { g.verbosef(0, format, args...) }
	// repack progress: the display starts with the first report, when the
	// number of packs to repack is known
	var repDone atomic.Int64
	stopProgress := func() {}
	defer func() { stopProgress() }()
	po.RepackProgress = func(done, total int) {
		if done == 0 {
			stopProgress()
			stopProgress = g.startCountProgress("packs repacked", uint64(total), func() (uint64, uint64) {
				return uint64(repDone.Load()), 0
			})
		}
		repDone.Store(int64(done))
	}
	timing := repo.DefaultLockTiming()
	if o.exclusive {
		unlock, lctx, l, err := g.lockRepository(ctx, r, true, "prune", o.dryRun)
		if err != nil {
			return err
		}
		defer unlock()
		rep, err := prune.Exclusive(lctx, r, lockerOf(l), po)
		if err != nil {
			return err
		}
		return g.printPruneReport(rep)
	}
	// phase 1: mark, under a shared lock that no other prune holds
	unlock, lctx, l, err := g.lockRepository(ctx, r, false, "prune-mark", o.dryRun)
	if err != nil {
		return err
	}
	if l != nil {
		if err := ensureOnlyPrune(lctx, r, l); err != nil {
			unlock()
			return err
		}
	}
	rep, err := prune.Mark(lctx, r, lockerOf(l), po, timing.Now())
	unlock()
	if err != nil {
		return err
	}
	if err := g.printPruneReport(rep); err != nil {
		return err
	}
	// phase 2: sweep, under a brief exclusive lock; if backups are running
	// the deletion waits for a later prune
	sl, sctx, err := r.Lock(ctx, true, repo.LockOptions{Op: "prune-sweep", RetryLock: g.RetryLock})
	if err != nil {
		if errors.Is(err, repo.ErrLocked) {
			g.printf("sweep deferred: the repository is in use (pending packs are deleted by a later prune)\n")
			return nil
		}
		return err
	}
	defer sl.Unlock(context.WithoutCancel(ctx))
	srep, err := prune.Sweep(sctx, r, sl, o.keepDelete, timing.Now(), o.dryRun)
	if err != nil {
		return err
	}
	return g.printPruneReport(srep)
}

// ensureOnlyPrune fails if another prune holds a lock.
func ensureOnlyPrune(ctx context.Context, r *repo.Repository, own *repo.Lock) error {
	return ensureOnly(ctx, r, own, "prune-mark", "prune-sweep", "prune")
}

// ensureOnly fails with a LockError if a readable lock other than own was
// taken by cairn for one of ops. Operations that run under shared locks but
// must not run twice at once (two prunes' marks, two forgets: F8) take their
// lock first and then call this, so of two that start together at least one
// sees the other (both may refuse; neither runs beside the other).
func ensureOnly(ctx context.Context, r *repo.Repository, own *repo.Lock, ops ...string) error {
	locks, err := r.ListLocks(ctx)
	if err != nil {
		return err
	}
	for _, e := range locks {
		if e.ID == own.ID() || e.Err != nil {
			continue
		}
		if slices.Contains(ops, e.Info.CairnOp) {
			return &repo.LockError{Conflicts: []repo.LockEntry{e}}
		}
	}
	return nil
}

func lockerOf(l *repo.Lock) prune.Locker {
	if l == nil {
		return nil
	}
	return l
}

func (g *globalOptions) printPruneReport(rep *prune.Report) error {
	if g.JSON {
		return g.printJSON(struct {
			MessageType string `json:"message_type"`
			*prune.Report
		}{"prune", rep})
	}
	verb := ""
	if rep.DryRun {
		verb = " (dry run: nothing changed)"
	}
	switch rep.Mode {
	case "mark":
		g.printf("mark%s: %d packs marked for deletion, %d repacked (%s), %d recovered, %d kept; used %s, unused %s\n",
			verb, rep.PacksMarked, rep.PacksRepacked, ui.Bytes(uint64(rep.BytesRepacked)), rep.PacksRecovered, rep.PacksKept,
			ui.Bytes(uint64(rep.UsedBytes)), ui.Bytes(uint64(rep.UnusedBytes)))
	case "sweep":
		g.printf("sweep%s: %d packs deleted, %d orphaned packs deleted, %d recovered, %s freed\n",
			verb, rep.PacksRemoved, rep.OrphansRemoved, rep.PacksRecovered, ui.Bytes(uint64(rep.BytesFreed)))
	default:
		g.printf("prune%s: %d packs deleted, %d repacked (%s), %d orphaned deleted, %s freed\n",
			verb, rep.PacksRemoved, rep.PacksRepacked, ui.Bytes(uint64(rep.BytesRepacked)), rep.OrphansRemoved, ui.Bytes(uint64(rep.BytesFreed)))
	}
	return nil
}
