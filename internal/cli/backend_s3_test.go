package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
	"github.com/cairn-backup/cairn/internal/testutil/servers"
)

// runResticEnv runs restic with extra environment variables and returns
// its output, failing the test on error.
func runResticEnv(t *testing.T, repo string, extraEnv []string, args ...string) string {
	t.Helper()
	cmd := testutil.ResticCommand(t, repo, testPassword, args...)
	cmd.Env = append(cmd.Env, extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("restic %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestS3Interop: cairn init + backup into a real S3 server (versitygw),
// then restic reads the repository from the same server: check
// --read-data is clean and its restore equals the source.
func TestS3Interop(t *testing.T) {
	testutil.RequireRestic(t)
	srv := servers.StartS3(t)
	cairnEnv(t)
	for _, kv := range append(srv.Env(), "AWS_SESSION_TOKEN=", "AWS_PROFILE=", "AWS_REGION=", "CAIRN_S3_REGION=", "CAIRN_S3_BUCKET_LOOKUP=", "CAIRN_S3_STORAGE_CLASS=") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 21, SkipNonUTF8LinkTargets: true})
	repo := "s3:" + srv.URL + "/cairn-interop/repo"
	mustCairn(t, "-r", repo, "init")
	mustCairn(t, "-r", repo, "backup", src)
	if out := mustCairn(t, "-r", repo, "snapshots"); !strings.Contains(out, src) {
		t.Fatalf("cairn snapshots: %s", out)
	}
	out := runResticEnv(t, repo, srv.Env(), "check", "--read-data")
	if !strings.Contains(out, "no errors were found") {
		t.Fatalf("restic check: %s", out)
	}
	dst := filepath.Join(tmp, "restic-restore")
	runResticEnv(t, repo, srv.Env(), "restore", "latest", "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), resticCompare())
	// The objects are where restic's layout puts them.
	packs, _ := filepath.Glob(filepath.Join(srv.Dir, "cairn-interop", "repo", "data", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("no packs under repo/data/xx/ in the bucket")
	}
}
