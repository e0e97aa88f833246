//go:build !(darwin || freebsd || (linux && !386 && !arm && !mips && !mipsle))

package cli

import (
	"context"
	"fmt"
	"runtime"
)

// runMount fails at once: the FUSE library cairn uses (go-fuse) does not
// build for this platform (see package fusefs), so this build has no mount.
func runMount(_ context.Context, _ *globalOptions, _ snapshotFilterOptions, mountpoint string, _ bool) error {
	return fmt.Errorf("mount %s: FUSE is not supported on %s/%s (this build of cairn has no mount)", mountpoint, runtime.GOOS, runtime.GOARCH)
}
