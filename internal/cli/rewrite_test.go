package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// excludedByRewrite is the exclusion the rewrite tests apply: the "many"
// directory and every *.bin file.
func excludedByRewrite(rel string) bool {
	return rel == "many" || strings.HasPrefix(rel, "many/") || strings.HasSuffix(rel, ".bin")
}

func assertNoExcluded(t *testing.T, dir string) {
	t.Helper()
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			n++
			if fi.Name() == "many" || strings.HasSuffix(fi.Name(), ".bin") {
				t.Errorf("excluded entry %s was restored", p)
			}
		}
		return nil
	})
	if n < 20 {
		t.Errorf("only %d entries restored", n)
	}
}

func TestRewriteExcludes(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 31, SkipSparse: true})
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "-q", "--tag", "t1", src)
	orig := cairnSnapshots(t, repoDir)[0]
	excl := []string{"--exclude", src + "/many", "--exclude", "*.bin"}

	if r := cairn(t, "-r", repoDir, "rewrite", orig.ID); r.code == 0 {
		t.Fatal("rewrite without excludes succeeded")
	}
	before := dirListing(t, repoDir)
	out := mustCairn(t, append([]string{"-r", repoDir, "rewrite", "--dry-run"}, excl...)...)
	if !strings.Contains(out, "would modify 1 snapshots") || dirListing(t, repoDir) != before {
		t.Fatalf("dry run changed the repository or said:\n%s", out)
	}
	out = mustCairn(t, append([]string{"-r", repoDir, "rewrite", "-v", orig.ID[:8]}, excl...)...)
	if !strings.Contains(out, "excluding "+src+"/many\n") || !strings.Contains(out, "modified 1 snapshots") {
		t.Fatalf("rewrite:\n%s", out)
	}
	snaps := cairnSnapshots(t, repoDir)
	if len(snaps) != 2 {
		t.Fatalf("snapshots after rewrite: %d", len(snaps))
	}
	var nw snapshotJSON
	for _, s := range snaps {
		if s.ID != orig.ID {
			nw = s
		}
	}
	if nw.Original == nil || nw.Original.String() != orig.ID || !nw.HasTags([]string{"t1", "rewrite"}) ||
		!nw.Time.Equal(orig.Time) || nw.Hostname != orig.Hostname || *nw.Tree == *orig.Tree {
		t.Fatalf("rewritten snapshot %+v\nof %+v", nw, orig)
	}
	mustCairn(t, "-r", repoDir, "check", "--read-data")
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", repoDir, "restore", nw.ID, "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true, Exclude: excludedByRewrite})
	assertNoExcluded(t, filepath.Join(dst, src))

	// nothing left to exclude: unchanged
	out = mustCairn(t, append([]string{"-r", repoDir, "rewrite", nw.ID}, excl...)...)
	if !strings.Contains(out, "no snapshots were modified") {
		t.Fatalf("second rewrite:\n%s", out)
	}
	// --forget replaces the snapshot
	out = mustCairn(t, "-r", repoDir, "rewrite", "--forget", "--iexclude", strings.ToUpper(src+"/DIR/SUB"), nw.ID)
	if !strings.Contains(out, "removed old snapshot "+nw.ID[:8]) {
		t.Fatalf("rewrite --forget:\n%s", out)
	}
	snaps = cairnSnapshots(t, repoDir)
	if len(snaps) != 2 {
		t.Fatalf("snapshots after rewrite --forget: %d", len(snaps))
	}
	newest := ""
	for _, s := range snaps {
		if s.ID == nw.ID {
			t.Fatal("rewrite --forget kept the old snapshot")
		}
		if s.ID != orig.ID {
			newest = s.ID
			if s.Original == nil || s.Original.String() != nw.ID {
				t.Fatalf("snapshot after --forget: %+v", s)
			}
		}
	}
	ls := mustCairn(t, "-r", repoDir, "ls", newest)
	if strings.Contains(ls, src+"/dir/sub") || !strings.Contains(ls, src+"/dir/file.txt") {
		t.Fatalf("ls after --iexclude:\n%s", ls)
	}
	mustCairn(t, "-r", repoDir, "check")
}

// TestRewriteResticRepo rewrites a restic-made snapshot; restic checks the
// repository (reading all data) and restores the new snapshot.
func TestRewriteResticRepo(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 32, SkipSparse: true, SkipNonUTF8LinkTargets: true})
	repoDir := filepath.Join(tmp, "repo")
	newResticRepo(t, repoDir)
	testutil.RunRestic(t, repoDir, testPassword, "backup", src)
	excludeFile := filepath.Join(tmp, "excludes")
	os.WriteFile(excludeFile, []byte("# rewrite test\n"+src+"/many\n*.bin\n"), 0o600)
	out := mustCairn(t, "-r", repoDir, "rewrite", "--forget", "--exclude-file", excludeFile)
	if !strings.Contains(out, "modified 1 snapshots") {
		t.Fatalf("rewrite:\n%s", out)
	}
	if res := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data"); !strings.Contains(string(res), "no errors were found") {
		t.Fatalf("restic check: %s", res)
	}
	ids := resticSnapshotIDs(t, repoDir, testPassword)
	if len(ids) != 1 {
		t.Fatalf("snapshots after rewrite --forget: %v", ids)
	}
	dst := filepath.Join(tmp, "dst")
	testutil.RunRestic(t, repoDir, testPassword, "restore", ids[0], "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true, Exclude: excludedByRewrite})
	assertNoExcluded(t, filepath.Join(dst, src))
}

// TestRewriteFindDumpLocking: the read commands take a non-exclusive lock
// (or none with --no-lock), rewrite a non-exclusive one, rewrite --forget
// an exclusive one.
func TestRewriteFindDumpLocking(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "b.txt"), []byte("b"), 0o644)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "-q", src)
	id := cairnSnapshots(t, repoDir)[0].ID
	r := openRepoForTest(t, repoDir, testPassword)
	ctx := context.Background()

	l, _, err := r.Lock(ctx, true, repo.LockOptions{Op: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"find", "a.txt"}, {"dump", id, src + "/a.txt"}, {"diff", id, id}, {"rewrite", "-e", "*.txt", id}} {
		if res := cairn(t, append([]string{"-r", repoDir}, args...)...); res.code != ExitLocked {
			t.Errorf("%v under an exclusive lock: exit %d %s", args, res.code, res.stderr)
		}
	}
	if out := mustCairn(t, "-r", repoDir, "--no-lock", "dump", id, src+"/a.txt"); out != "a" {
		t.Errorf("dump --no-lock: %q", out)
	}
	mustCairn(t, "-r", repoDir, "--no-lock", "find", "a.txt")
	mustCairn(t, "-r", repoDir, "--no-lock", "diff", id, id)
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	l, _, err = r.Lock(ctx, false, repo.LockOptions{Op: "test"})
	if err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "-r", repoDir, "find", "a.txt")
	if res := cairn(t, "-r", repoDir, "rewrite", "--forget", "-e", "*.txt", id); res.code != ExitLocked {
		t.Errorf("rewrite --forget under a shared lock: exit %d %s", res.code, res.stderr)
	}
	mustCairn(t, "-r", repoDir, "rewrite", "-e", src+"/sub", id)
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(cairnSnapshots(t, repoDir)); n != 2 {
		t.Fatalf("%d snapshots", n)
	}
}
