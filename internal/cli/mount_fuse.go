//go:build darwin || freebsd || (linux && !386 && !arm && !mips && !mipsle)

package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/cairn-backup/cairn/internal/fusefs"
)

// runMount mounts the snapshots selected by o at mountpoint and serves
// them until ctx ends or the file system is unmounted from outside.
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
