package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// resticCompare is how restic's own restore is compared: restic 0.14 does
// not restore the metadata of the snapshot's parent directories, nor the
// sparse layout of files.
func resticCompare() testutil.CompareOptions {
	return testutil.CompareOptions{IgnoreRoot: true}
}

// TestCairnRepoReadByRestic: cairn init + backup of every file kind, then
// restic check --read-data is clean and restic restore gives the same tree.
func TestCairnRepoReadByRestic(t *testing.T) {
	testutil.RequireRestic(t)
	// v2 with every compression mode: each maps to a libzstd level in cgo
	// builds, and restic's decoder must read them all.
	for _, c := range []struct{ version, compression string }{
		{"1", "auto"}, {"2", "auto"}, {"2", "fastest"}, {"2", "better"}, {"2", "max"},
	} {
		version := c.version
		name := "v" + version
		if c.compression != "auto" {
			name += "-" + c.compression
		}
		t.Run(name, func(t *testing.T) {
			cairnEnv(t)
			tmp := t.TempDir()
			src := filepath.Join(tmp, "src")
			// restic 0.14 cannot represent non-UTF-8 symlink targets (0.16 added
			// linktarget_raw, which cairn writes and 0.14 ignores).
			testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 2, SkipNonUTF8LinkTargets: true})
			repoDir := filepath.Join(tmp, "repo")
			mustCairn(t, "-r", repoDir, "init", "--repository-version", version)
			mustCairn(t, "-r", repoDir, "backup", "--compression", c.compression, src)
			out := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data")
			if !strings.Contains(string(out), "no errors were found") {
				t.Fatalf("restic check: %s", out)
			}
			dst := filepath.Join(tmp, "restic-restore")
			testutil.RunRestic(t, repoDir, testPassword, "restore", "latest", "--target", dst)
			testutil.CompareTrees(t, src, filepath.Join(dst, src), resticCompare())
		})
	}
}

// TestResticRepoReadByCairn: restic init (v1 and v2) + backup, then cairn
// restores it identically, lists its snapshots, and a cairn backup of the
// same data adds (almost) nothing; the tree IDs of both snapshots match.
func TestResticRepoReadByCairn(t *testing.T) {
	testutil.RequireRestic(t)
	for _, version := range []string{"1", "2"} {
		t.Run("v"+version, func(t *testing.T) {
			cairnEnv(t)
			t.Setenv("CAIRN_PASSWORD", testPassword)
			tmp := t.TempDir()
			src := filepath.Join(tmp, "src")
			testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 3, SkipNonUTF8LinkTargets: true})
			repoDir := filepath.Join(tmp, "repo")
			testutil.RunRestic(t, repoDir, testPassword, "init", "--repository-version", version)
			testutil.RunRestic(t, repoDir, testPassword, "backup", src)

			// cairn backs up the same tree at once (before anything else
			// touches the directories above it)
			sizeBefore := dirSize(t, repoDir)
			out := mustCairn(t, "-r", repoDir, "backup", "--json", "--force", src)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var s backupSummaryJSON
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
				t.Fatal(err)
			}
			if s.DataBlobs != 0 {
				t.Fatalf("cairn backup of restic-backed-up data added %d data blobs (dedup broken)", s.DataBlobs)
			}
			if grown := dirSize(t, repoDir) - sizeBefore; grown > 64<<10 {
				t.Fatalf("repository grew by %d bytes", grown)
			}
			var all []snapshotJSON
			if err := json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "snapshots", "--json")), &all); err != nil || len(all) != 2 {
				t.Fatalf("cairn snapshots --json on restic repo: %v %+v", err, all)
			}
			if all[0].ProgramVersion != "" && !strings.HasPrefix(all[0].ProgramVersion, "restic") {
				t.Fatalf("first snapshot is not restic's: %q", all[0].ProgramVersion)
			}
			if *all[0].Tree != *all[1].Tree {
				// the roots hold the directories above src, whose times may
				// move; src itself must be identical
				a := mustCairn(t, "-r", repoDir, "cat", "tree", all[0].ID+":"+src)
				b := mustCairn(t, "-r", repoDir, "cat", "tree", all[1].ID+":"+src)
				if a != b {
					t.Fatalf("tree of %s differs between restic and cairn:\nrestic: %s\ncairn: %s", src, a, b)
				}
			}
			dst := filepath.Join(tmp, "dst")
			mustCairn(t, "-r", repoDir, "restore", all[0].ID[:8], "--target", dst, "--verify")
			testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true})
			// and restic accepts the mixed repository
			out2 := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data")
			if !strings.Contains(string(out2), "no errors were found") {
				t.Fatalf("restic check: %s", out2)
			}
		})
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
