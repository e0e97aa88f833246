package cli

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
	"github.com/cairn-backup/cairn/internal/testutil/servers"
)

// TestServeOnS3TwoInstances: two `cairn serve --backend s3:…` processes
// share one bucket; restic writes through one and reads through the other.
func TestServeOnS3TwoInstances(t *testing.T) {
	testutil.RequireRestic(t)
	srv := servers.StartS3(t)
	cairnEnv(t)
	for _, kv := range append(srv.Env(), "AWS_SESSION_TOKEN=", "AWS_PROFILE=", "AWS_REGION=", "CAIRN_S3_REGION=", "CAIRN_S3_BUCKET_LOOKUP=", "CAIRN_S3_STORAGE_CLASS=") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	base := "s3:" + srv.URL + "/shared/repos"
	a := startServe(t, "--no-auth", "--backend", base)
	b := startServe(t, "--no-auth", "--backend", base)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 31, SkipNonUTF8LinkTargets: true})
	viaA := "rest:" + a.URL + "/office/"
	viaB := "rest:" + b.URL + "/office/"
	testutil.RunRestic(t, viaA, testPassword, "init")
	testutil.RunRestic(t, viaA, testPassword, "backup", src)
	if out := testutil.RunRestic(t, viaB, testPassword, "check", "--read-data"); !strings.Contains(string(out), "no errors were found") {
		t.Fatalf("restic check through the second server: %s", out)
	}
	// cairn through B adds a snapshot, restic through A sees it
	mustCairn(t, "-r", viaB, "backup", src)
	if out := string(testutil.RunRestic(t, viaA, testPassword, "snapshots")); !strings.Contains(out, "2 snapshots") {
		t.Fatalf("restic snapshots through A: %s", out)
	}
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", viaA, "restore", "latest", "--target", dst, "--verify")
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true})
	// the objects are in the bucket, in restic's layout
	if packs, _ := filepath.Glob(filepath.Join(srv.Dir, "shared", "repos", "office", "data", "*", "*")); len(packs) == 0 {
		t.Fatal("no packs in the bucket")
	}
}

// TestServeOnRESTExistingRepository: `cairn serve --backend rest:…` in
// front of another REST server serves a repository that already exists
// there (opening it must not try to create it).
func TestServeOnRESTExistingRepository(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	inner := startServe(t, "--no-auth", "--path", filepath.Join(tmp, "store"))
	outer := startServe(t, "--no-auth", "--backend", "rest:"+inner.URL+"/")
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 5, SkipNonUTF8LinkTargets: true})
	mustCairn(t, "-r", "rest:"+inner.URL+"/team/", "init")
	// a listing as the outer server's first request for the repository
	lr, err := http.Get(outer.URL + "/team/keys/")
	if err != nil {
		t.Fatal(err)
	}
	lr.Body.Close()
	if lr.StatusCode != http.StatusOK {
		t.Fatalf("listing keys through the outer server: %s", lr.Status)
	}
	mustCairn(t, "-r", "rest:"+outer.URL+"/team/", "backup", src)
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", "rest:"+inner.URL+"/team/", "restore", "latest", "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true})
}
