package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// TestRcloneRoundTrip: cairn init + backup + restore through
// `rclone serve restic --stdio` on a local directory; the directory then
// is a repository restic reads directly.
func TestRcloneRoundTrip(t *testing.T) {
	bin := testutil.RequireTool(t, "rclone")
	cairnEnv(t)
	tmp := t.TempDir()
	conf := filepath.Join(tmp, "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CAIRN_RCLONE_PROGRAM", bin)
	t.Setenv("CAIRN_RCLONE_ARGS", "--config "+conf)
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 23, SkipNonUTF8LinkTargets: true})
	dir := filepath.Join(tmp, "repo")
	repo := "rclone::local:" + dir
	mustCairn(t, "-r", repo, "init")
	mustCairn(t, "-r", repo, "backup", src)
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", repo, "restore", "latest", "--target", dst, "--verify")
	testutil.CompareTrees(t, src, filepath.Join(dst, src), restoreCompare())
	testutil.RequireRestic(t)
	out := testutil.RunRestic(t, dir, testPassword, "check", "--read-data")
	if !strings.Contains(string(out), "no errors were found") {
		t.Fatalf("restic check of the directory rclone wrote: %s", out)
	}
}
