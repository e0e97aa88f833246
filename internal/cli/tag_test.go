package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

func admSnapshots(t *testing.T, repoDir string, args ...string) []snapshotJSON {
	t.Helper()
	var out []snapshotJSON
	s := mustCairn(t, append([]string{"-r", repoDir, "snapshots", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("snapshots --json: %v\n%s", err, s)
	}
	return out
}

func admTags(sn snapshotJSON) string { return strings.Join(sn.Tags, ",") }

func TestTagCommand(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	admRandFile(t, filepath.Join(src, "a"), 5000, 1)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "--tag", "one", "--time", "2024-01-01 10:00:00", src)
	mustCairn(t, "-r", repoDir, "backup", "--host", "other", "--time", "2024-01-02 10:00:00", src)
	before := admSnapshots(t, repoDir)
	if len(before) != 2 || admTags(before[0]) != "one" || admTags(before[1]) != "" {
		t.Fatalf("setup: %+v", before)
	}
	first, second := before[0], before[1]

	// --add on one snapshot by ID prefix, with JSON output
	out := mustCairn(t, "-r", repoDir, "--json", "tag", "--add", "x,y", "--add", "one", first.ID[:8])
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var changed tagChangedJSON
	var summary tagSummaryJSON
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &changed) != nil || json.Unmarshal([]byte(lines[1]), &summary) != nil ||
		changed.OldSnapshotID != first.ID || summary.ChangedSnapshots != 1 {
		t.Fatalf("tag --json:\n%s", out)
	}
	after := admSnapshots(t, repoDir)
	if len(after) != 2 || after[0].ID != changed.NewSnapshotID || admTags(after[0]) != "one,x,y" ||
		after[0].Original == nil || after[0].Original.String() != first.ID || after[1].ID != second.ID {
		t.Fatalf("after --add: %+v", after)
	}
	if *after[0].Tree != *first.Tree || !after[0].Time.Equal(first.Time) {
		t.Fatal("tag changed more than the tags")
	}
	if got := admFiles(t, filepath.Join(repoDir, "snapshots")); len(got) != 2 {
		t.Fatalf("snapshot files: %v", got)
	}

	// a filter selects; "original" keeps the very first ID
	mustCairn(t, "-r", repoDir, "tag", "--remove", "x", "--tag", "y")
	after = admSnapshots(t, repoDir)
	if admTags(after[0]) != "one,y" || after[0].Original.String() != first.ID || after[1].ID != second.ID {
		t.Fatalf("after filtered --remove: %+v", after)
	}
	mustCairn(t, "-r", repoDir, "tag", "--add", "h", "--host", "other")
	after = admSnapshots(t, repoDir)
	if admTags(after[1]) != "h" || after[1].Original.String() != second.ID || admTags(after[0]) != "one,y" {
		t.Fatalf("after --host filter: %+v", after)
	}
	// nothing to change: nothing written
	filesBefore := admFiles(t, filepath.Join(repoDir, "snapshots"))
	if out := mustCairn(t, "-r", repoDir, "tag", "--remove", "absent"); !strings.Contains(out, "no snapshots were modified") {
		t.Fatalf("tag without effect: %s", out)
	}
	if got := admFiles(t, filepath.Join(repoDir, "snapshots")); strings.Join(got, ",") != strings.Join(filesBefore, ",") {
		t.Fatal("snapshot files changed by a no-op tag")
	}
	// --set replaces, --set "" clears
	mustCairn(t, "-r", repoDir, "tag", "--set", "p,q", "latest")
	after = admSnapshots(t, repoDir)
	if admTags(after[1]) != "p,q" || admTags(after[0]) != "one,y" {
		t.Fatalf("after --set: %+v", after)
	}
	mustCairn(t, "-r", repoDir, "tag", "--set", "", after[0].ID)
	after = admSnapshots(t, repoDir)
	if admTags(after[0]) != "" || after[0].Tags != nil {
		t.Fatalf("after --set \"\": %+v", after[0])
	}

	// restic sees the same snapshots, tags and originals
	var rs []snapshotJSON
	if err := json.Unmarshal(testutil.RunRestic(t, repoDir, testPassword, "snapshots", "--json"), &rs); err != nil || len(rs) != 2 {
		t.Fatalf("restic snapshots: %v %+v", err, rs)
	}
	for i := range rs {
		if rs[i].ID != after[i].ID || admTags(rs[i]) != admTags(after[i]) || rs[i].Original.String() != after[i].Original.String() {
			t.Fatalf("restic sees %+v, cairn %+v", rs[i], after[i])
		}
	}
	testutil.RunRestic(t, repoDir, testPassword, "check")

	// usage errors
	for _, args := range [][]string{{"tag"}, {"tag", "--set", "a", "--add", "b"}} {
		if r := cairn(t, append([]string{"-r", repoDir}, args...)...); r.code != ExitError {
			t.Fatalf("%v: exit %d", args, r.code)
		}
	}
}
