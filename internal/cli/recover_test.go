package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// recoveredRoots returns the names and subtrees of the root entries of
// the snapshot tagged "recovered".
func recoveredRoots(t *testing.T, repoDir, password string) (names []string, subtrees []core.ID) {
	t.Helper()
	r := openRepoForTest(t, repoDir, password)
	ctx := context.Background()
	all, _, err := r.LoadAllSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, sn := range all {
		if !sn.HasTags([]string{"recovered"}) {
			continue
		}
		found++
		if len(sn.Paths) != 1 || sn.Paths[0] != "/recover" {
			t.Errorf("recovered snapshot paths %v", sn.Paths)
		}
		tr, err := loadTreeByID(ctx, r, *sn.Tree)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tr.Nodes {
			names = append(names, n.Name)
			subtrees = append(subtrees, *n.Subtree)
		}
	}
	if found != 1 {
		t.Fatalf("%d recovered snapshots", found)
	}
	sort.Strings(names)
	return names, subtrees
}

func TestRecoverForgottenSnapshot(t *testing.T) {
	cairnEnv(t)
	h := cairnHistory(t, 41, "2")
	snaps := cairnSnapshots(t, h.repo)
	lost := snaps[0]
	out := mustCairn(t, "-r", h.repo, "recover")
	if !strings.Contains(out, "found 0 unreferenced roots") {
		t.Fatalf("recover with every tree referenced:\n%s", out)
	}
	mustCairn(t, "-r", h.repo, "forget", lost.ID)
	out = mustCairn(t, "-r", h.repo, "recover", "--json")
	var res recoverJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Roots != 1 || res.SnapshotID == "" {
		t.Fatalf("recover --json: %v %s", err, out)
	}
	names, subtrees := recoveredRoots(t, h.repo, testPassword)
	if len(names) != 1 || names[0] != lost.Tree.Str() || subtrees[0] != *lost.Tree {
		t.Fatalf("recovered roots %v %v, want the forgotten snapshot's tree %v", names, subtrees, lost.Tree)
	}
	// the forgotten snapshot's files restore from the recovered snapshot
	dst := filepath.Join(t.TempDir(), "dst")
	mustCairn(t, "-r", h.repo, "restore", res.SnapshotID+":/"+lost.Tree.Str(), "--target", dst)
	if _, err := os.Stat(filepath.Join(dst, h.src, "many", "f00000")); err != nil {
		t.Fatalf("recovered data: %v", err)
	}
	mustCairn(t, "-r", h.repo, "check")
	// nothing is unreferenced any more
	if out := mustCairn(t, "-r", h.repo, "recover"); !strings.Contains(out, "found 0 unreferenced roots") {
		t.Fatalf("second recover:\n%s", out)
	}
}

// TestRecoverMatchesRestic: restic recover and cairn recover find the same
// roots in the same repository.
func TestRecoverMatchesRestic(t *testing.T) {
	cairnEnv(t)
	h := resticHistory(t, 42)
	// forget both snapshots: their roots share many subtrees
	for _, id := range h.ids {
		mustCairn(t, "-r", h.repo, "forget", id)
	}
	copyDir := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(copyDir, os.DirFS(h.repo)); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "-r", h.repo, "recover")
	out := testutil.RunRestic(t, copyDir, testPassword, "recover")
	if !strings.Contains(string(out), "found 2 unreferenced roots") {
		t.Fatalf("restic recover: %s", out)
	}
	ours, _ := recoveredRoots(t, h.repo, testPassword)
	theirs, _ := recoveredRoots(t, copyDir, testPassword)
	if strings.Join(ours, ",") != strings.Join(theirs, ",") || len(ours) != 2 {
		t.Fatalf("recovered roots: cairn %v, restic %v", ours, theirs)
	}
	if res := testutil.RunRestic(t, h.repo, testPassword, "check"); !strings.Contains(string(res), "no errors were found") {
		t.Fatalf("restic check: %s", res)
	}
}
