package cli

import (
	"context"

	"github.com/spf13/cobra"
)

func newUnlockCommand(g *globalOptions) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Remove stale locks (or all locks with --remove-all)",
		Long: `Remove locks left behind by processes that died. A lock is stale when it
was taken by cairn on this host, in this PID namespace and since the last boot,
and its process is gone; or when it is older than 30 minutes both by its own
time stamp and by the file's age (the file's modification time where the
backend reports one, else the time stamp again). Locks without cairn's
namespace and boot fields (restic's) are judged by age only.
--remove-all removes every lock: only use it when no other process runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnlock(cmd.Context(), g, all)
		},
	}
	cmd.Flags().BoolVar(&all, "remove-all", false, "remove all locks, even live ones")
	return cmd
}

func runUnlock(ctx context.Context, g *globalOptions, all bool) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	removed, err := r.RemoveLocks(ctx, all)
	if g.JSON {
		ids := make([]string, 0, len(removed))
		for _, id := range removed {
			ids = append(ids, id.String())
		}
		if jerr := g.printJSON(map[string]any{"message_type": "unlock", "removed": ids}); jerr != nil {
			return jerr
		}
	} else {
		g.printf("removed %d locks\n", len(removed))
	}
	return err
}
