//go:build !(darwin || freebsd || (linux && !386 && !arm && !mips && !mipsle))

package cli

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

// TestMountUnsupported: without FUSE, mount fails naming the platform.
func TestMountUnsupported(t *testing.T) {
	err := runMount(context.Background(), nil, snapshotFilterOptions{}, t.TempDir(), false)
	if err == nil || !strings.Contains(err.Error(), runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("mount without FUSE: %v", err)
	}
}
