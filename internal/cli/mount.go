package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/fusefs"
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

func runMount(ctx context.Context, g *globalOptions, o snapshotFilterOptions, mountpoint string, debug bool) error {
	if fi, err := os.Stat(mountpoint); err != nil || !fi.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", mountpoint)
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, lctx, _, err := g.lockRepository(ctx, r, false, "mount", true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.LoadIndex(lctx); err != nil {
		return err
	}
	snaps, err := g.loadSnapshots(lctx, r, o.filter(), nil)
	if err != nil {
		return err
	}
	srv, err := fusefs.Mount(mountpoint, fusefs.New(r, snaps), debug)
	if err != nil {
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	g.printf("mounted %d snapshots at %s; press Ctrl-C to unmount\n", len(snaps), mountpoint)
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-lctx.Done():
		if err := srv.Unmount(); err != nil {
			g.warnf("unmount: %v\n", err)
		}
		<-done
	case <-done: // unmounted from outside (fusermount -u)
	}
	return nil
}
