package cli

import (
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newMountCommand) }

func newMountCommand(g *globalOptions) *cobra.Command {
	var o snapshotFilterOptions
	var debug bool
	cmd := &cobra.Command{
		Use:   "mount [flags] MOUNTPOINT",
		Short: "Mount the repository read-only with FUSE",
		Long: `Mount the repository's snapshots read-only at MOUNTPOINT:
ids/<snapshot id>, snapshots/<time> (and snapshots/latest),
hosts/<host>/<time> and tags/<tag>/<time>. The mount stays until cairn is
interrupted (Ctrl-C or SIGTERM), which unmounts it; a shared lock is held
meanwhile.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), g, o, args[0], debug)
		},
	}
	addSnapshotFilterFlags(cmd, &o)
	cmd.Flags().BoolVar(&debug, "fuse-debug", false, "log FUSE requests")
	return cmd
}
