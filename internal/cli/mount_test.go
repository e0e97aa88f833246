//go:build linux && !386 && !arm && !mips && !mipsle

// The test mounts with /dev/fuse and unmounts with fusermount3 (Linux), and
// mount has FUSE only where go-fuse builds (mount_fuse.go).

package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testutil"
)

func TestMountFUSE(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if testutil.InCI() {
			t.Fatalf("/dev/fuse missing: %v", err)
		}
		t.Skip("no /dev/fuse")
	}
	fusermount := testutil.RequireTool(t, "fusermount3")
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 9})
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "--tag", "mine", src)
	mnt := filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	cmd := cairnProcess(t, nil, "-r", repoDir, "mount", mnt)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command(fusermount, "-u", "-z", mnt).Run() // unmount even when the test failed
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(mnt, "snapshots", "latest")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mount did not appear")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ids, _ := os.ReadDir(filepath.Join(mnt, "ids"))
	if len(ids) != 1 {
		t.Fatalf("ids: %v", ids)
	}
	for _, view := range []string{filepath.Join("snapshots", "latest"), filepath.Join("ids", ids[0].Name()), filepath.Join("tags", "mine")} {
		root := filepath.Join(mnt, view)
		if view == filepath.Join("tags", "mine") {
			ents, _ := os.ReadDir(root)
			if len(ents) != 1 {
				t.Fatalf("tags/mine: %v", ents)
			}
			root = filepath.Join(root, ents[0].Name())
		}
		testutil.CompareTrees(t, src, filepath.Join(root, src), testutil.CompareOptions{
			IgnoreRoot: true, IgnoreXattrs: true, IgnoreHardLinks: true, CheckSparse: false,
		})
	}
	// a clean unmount on SIGTERM
	cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("mount exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("mount did not exit on SIGTERM")
	}
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Fatal("still mounted after SIGTERM")
	}
}
