package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// admStatsFields are the fields restic 0.14's stats --json prints.
type admStatsFields struct {
	TotalSize      *uint64 `json:"total_size"`
	TotalFileCount *uint64 `json:"total_file_count"`
	TotalBlobCount *uint64 `json:"total_blob_count"`
	SnapshotsCount *int    `json:"snapshots_count"`
}

func (s admStatsFields) String() string {
	f := func(p *uint64) any {
		if p == nil {
			return "absent"
		}
		return *p
	}
	n := any("absent")
	if s.SnapshotsCount != nil {
		n = *s.SnapshotsCount
	}
	b, _ := json.Marshal(map[string]any{"total_size": f(s.TotalSize), "total_file_count": f(s.TotalFileCount), "total_blob_count": f(s.TotalBlobCount), "snapshots_count": n})
	return string(b)
}

// admCompareStats runs stats in every mode on the given selections with
// cairn and restic and requires the same numbers. (The restic processes run
// concurrently with each other and with cairn, to keep the test short.)
func admCompareStats(t *testing.T, repoDir string, selections [][]string) {
	t.Helper()
	type run struct {
		args []string
		out  []byte
		err  error
	}
	var runs []*run
	for _, mode := range []string{statsModeRestoreSize, statsModeFilesByContents, statsModeRawData, statsModeBlobsPerFile} {
		for _, sel := range selections {
			runs = append(runs, &run{args: append([]string{"stats", "--json", "--mode", mode}, sel...)})
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for _, rn := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rn.out, rn.err = testutil.RunResticErr(t, repoDir, testPassword, rn.args...)
		}()
	}
	mine := make([]admStatsFields, len(runs))
	for i, rn := range runs {
		out := mustCairn(t, append([]string{"-r", repoDir}, rn.args...)...)
		if err := json.Unmarshal([]byte(out), &mine[i]); err != nil {
			t.Fatalf("cairn %v: %v\n%s", rn.args, err, out)
		}
	}
	wg.Wait()
	for i, rn := range runs {
		if rn.err != nil {
			t.Fatal(rn.err)
		}
		var theirs admStatsFields
		if err := json.Unmarshal(rn.out, &theirs); err != nil {
			t.Fatalf("restic %v: %v\n%s", rn.args, err, rn.out)
		}
		if mine[i].String() != theirs.String() {
			t.Errorf("%v:\ncairn  %s\nrestic %s", rn.args, mine[i], theirs)
		}
		if *mine[i].TotalSize == 0 || *mine[i].SnapshotsCount == 0 {
			t.Errorf("%v: nothing counted: %s", rn.args, mine[i])
		}
	}
}

// TestStatsMatchesRestic: a v2 repository with two cairn backups and one
// restic backup of a changing tree (hard links, sparse files, duplicates,
// compressible data), and a v1 repository holding a restic backup.
func TestStatsMatchesRestic(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 21, SkipNonUTF8LinkTargets: true})
	// duplicate contents at several paths, and compressible data
	a := admRandFile(t, filepath.Join(src, "dup", "a"), 70000, 5)
	if err := os.WriteFile(filepath.Join(src, "dup", "a2"), a, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "dup", "text"), []byte(strings.Repeat("compress me please ", 40000)), 0o644); err != nil {
		t.Fatal(err)
	}
	admRandFile(t, filepath.Join(src, "uniq"), 80000, 8)

	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "--tag", "first", src)
	// change the tree: a modified file at the same path, a new file. (Not
	// a file whose old content lives on at another path: then the file
	// count of blobs-per-file depends on the order the snapshots are
	// walked in, and restic walks them in no fixed order.)
	admRandFile(t, filepath.Join(src, "uniq"), 90000, 6)
	admRandFile(t, filepath.Join(src, "new"), 1234, 7)
	mustCairn(t, "-r", repoDir, "backup", src)
	testutil.RunRestic(t, repoDir, testPassword, "backup", "--tag", "restic", src)
	all := admSnapshots(t, repoDir)
	if len(all) != 3 {
		t.Fatalf("%d snapshots", len(all))
	}
	admCompareStats(t, repoDir, [][]string{nil, {all[0].ID[:8], all[2].ID}})

	// raw-data in a v2 repository also reports compression
	var raw statsJSON
	if err := json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "stats", "--json", "--mode", "raw-data")), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.TotalUncompressedSize <= raw.TotalSize || raw.CompressionRatio <= 1 || raw.CompressionProgress <= 0 ||
		raw.CompressionProgress > 100 || raw.CompressionSpaceSaving <= 0 {
		t.Fatalf("compression figures: %+v", raw)
	}
	text := mustCairn(t, "-r", repoDir, "stats")
	if !strings.Contains(text, "Stats in restore-size mode:") || !strings.Contains(text, "Snapshots processed:  3") {
		t.Fatalf("stats text output:\n%s", text)
	}
	if r := cairn(t, "-r", repoDir, "stats", "--mode", "bogus"); r.code != ExitError {
		t.Fatalf("bad mode: exit %d", r.code)
	}

	// a v1 repository with restic's data (initialised by cairn only so
	// that its key is cheap to open)
	repo1 := filepath.Join(tmp, "repo1")
	mustCairn(t, "-r", repo1, "init", "--repository-version", "1")
	testutil.RunRestic(t, repo1, testPassword, "backup", src)
	admCompareStats(t, repo1, [][]string{nil})
	var raw1 statsJSON
	if err := json.Unmarshal([]byte(mustCairn(t, "-r", repo1, "stats", "--json", "--mode", "raw-data")), &raw1); err != nil {
		t.Fatal(err)
	}
	if raw1.TotalUncompressedSize != 0 || raw1.CompressionRatio != 0 || raw1.TotalBlobCount == 0 {
		t.Fatalf("compression figures in a v1 repository: %+v", raw1)
	}
}
