package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// admPackOf returns the pack that holds the data blob with plaintext buf.
func admPackOf(t *testing.T, repoDir string, buf []byte) core.ID {
	t.Helper()
	return admPackOfBlob(t, repoDir, core.BlobHandle{ID: sha256.Sum256(buf), Type: core.DataBlob})
}

// admPackOfBlob returns the pack that holds blob h, per the stored index.
func admPackOfBlob(t *testing.T, repoDir string, h core.BlobHandle) core.ID {
	t.Helper()
	ctx := context.Background()
	be, err := local.Open(ctx, repoDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, testPassword, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	l, ok := r.Index().Lookup(h)
	if !ok {
		t.Fatalf("%v not indexed", h)
	}
	return l.Pack
}

func admPackPath(repoDir string, id core.ID) string {
	s := id.String()
	return filepath.Join(repoDir, "data", s[:2], s)
}

// TestRepairIndexRecoversLostIndex: every index file is deleted; repair
// index rebuilds an index with which cairn and restic restore again and
// restic check --read-data is clean.
func TestRepairIndexRecoversLostIndex(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 31, SkipNonUTF8LinkTargets: true})
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", src)
	blobsBefore := admLines(mustCairn(t, "-r", repoDir, "list", "blobs"))
	oldIndex := admFiles(t, filepath.Join(repoDir, "index"))
	for _, name := range oldIndex {
		if err := os.Remove(filepath.Join(repoDir, "index", name)); err != nil {
			t.Fatal(err)
		}
	}
	if r := cairn(t, "-r", repoDir, "restore", "latest", "--target", filepath.Join(tmp, "fail")); r.code == 0 {
		t.Fatal("restore without an index succeeded")
	}

	out := mustCairn(t, "-r", repoDir, "--json", "repair", "index")
	var sum repairIndexJSON
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("repair index --json: %v\n%s", err, out)
	}
	packs := admFiles(t, filepath.Join(repoDir, "data"))
	if sum.ReadPacks != len(packs) || sum.Packs != len(packs) || sum.KeptPacks != 0 || len(sum.UnreadablePacks) != 0 ||
		len(sum.NewIndexFiles) == 0 || sum.Blobs != len(blobsBefore) {
		t.Fatalf("summary: %+v (%d packs, %d blobs before)", sum, len(packs), len(blobsBefore))
	}
	if got := admLines(mustCairn(t, "-r", repoDir, "list", "blobs")); strings.Join(got, "\n") != strings.Join(blobsBefore, "\n") {
		t.Fatal("the rebuilt index lists other blobs")
	}
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", repoDir, "restore", "latest", "--target", dst, "--verify")
	testutil.CompareTrees(t, src, filepath.Join(dst, src), restoreCompare())
	mustCairn(t, "-r", repoDir, "check", "--read-data")

	rout := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data")
	if !strings.Contains(string(rout), "no errors were found") {
		t.Fatalf("restic check: %s", rout)
	}
	rdst := filepath.Join(tmp, "restic-dst")
	testutil.RunRestic(t, repoDir, testPassword, "restore", "latest", "--target", rdst)
	testutil.CompareTrees(t, src, filepath.Join(rdst, src), resticCompare())

	// a second run (consistent index) keeps every pack without reading it
	// and replaces the index files; --read-all-packs reads them all
	before := admFiles(t, filepath.Join(repoDir, "index"))
	out = mustCairn(t, "-r", repoDir, "--json", "repair", "index")
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.ReadPacks != 0 || sum.KeptPacks != len(packs) || sum.DeletedIndexFiles != len(before) {
		t.Fatalf("second repair: %v %+v", err, sum)
	}
	after := admFiles(t, filepath.Join(repoDir, "index"))
	for _, a := range after {
		for _, b := range before {
			if a == b {
				t.Fatalf("old index file %s kept", a)
			}
		}
	}
	out = mustCairn(t, "-r", repoDir, "--json", "repair", "index", "--read-all-packs")
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.ReadPacks != len(packs) {
		t.Fatalf("--read-all-packs: %v %+v", err, sum)
	}
	mustCairn(t, "-r", repoDir, "check")
}

// TestRepairSnapshotsDeletedPack: a data pack holding one file's content is
// lost. repair index drops its entries, repair snapshots --forget replaces
// the damaged snapshot by one where that file is empty, and the repository
// is clean again for cairn and restic.
func TestRepairSnapshotsDeletedPack(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	admRandFile(t, filepath.Join(src, "a"), 100000, 1)
	admRandFile(t, filepath.Join(src, "d", "b"), 50000, 2)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "--tag", "first", src)
	lost := admRandFile(t, filepath.Join(src, "d", "c"), 200000, 3)
	mustCairn(t, "-r", repoDir, "backup", "--tag", "second", src)
	snaps := admSnapshots(t, repoDir)
	victim := admPackOf(t, repoDir, lost)
	a, _ := os.ReadFile(filepath.Join(src, "a"))
	if admPackOf(t, repoDir, a) == victim {
		t.Fatal("setup: a and c share a pack")
	}
	if err := os.Remove(admPackPath(repoDir, victim)); err != nil {
		t.Fatal(err)
	}
	if r := cairn(t, "-r", repoDir, "check"); r.code == 0 {
		t.Fatal("check passes with a pack missing")
	}

	// the index first: the missing pack's entries go
	var sum repairIndexJSON
	out := mustCairn(t, "-r", repoDir, "--json", "repair", "index")
	if err := json.Unmarshal([]byte(out), &sum); err != nil || len(sum.MissingPacks) != 1 || sum.MissingPacks[0] != victim.String() {
		t.Fatalf("repair index: %v %s", err, out)
	}

	// a dry run changes nothing
	snapFiles := admFiles(t, filepath.Join(repoDir, "snapshots"))
	out = mustCairn(t, "-r", repoDir, "repair", "snapshots", "--dry-run", "--forget")
	if !strings.Contains(out, `removed missing content`) || !strings.Contains(out, "would modify 1 snapshots") {
		t.Fatalf("dry run:\n%s", out)
	}
	if got := admFiles(t, filepath.Join(repoDir, "snapshots")); strings.Join(got, ",") != strings.Join(snapFiles, ",") {
		t.Fatal("dry run changed the snapshots")
	}

	out = mustCairn(t, "-r", repoDir, "--json", "repair", "snapshots", "--forget")
	var results []repairSnapshotJSON
	var summary repairSnapshotsSummaryJSON
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var probe map[string]any
		if err := json.Unmarshal([]byte(line), &probe); err != nil {
			t.Fatalf("bad JSON line %q", line)
		}
		if probe["message_type"] == "summary" {
			json.Unmarshal([]byte(line), &summary)
			continue
		}
		var res repairSnapshotJSON
		json.Unmarshal([]byte(line), &res)
		results = append(results, res)
	}
	sort.Slice(results, func(i, j int) bool { return results[i].Modified && !results[j].Modified })
	cPath := filepath.Join(src, "d", "c")
	if len(results) != 2 || summary.ModifiedSnapshots != 1 || !results[0].Modified || results[1].Modified ||
		results[0].SnapshotID != snaps[1].ID || !results[0].RemovedOriginal || len(results[0].Changes) != 1 ||
		results[0].Changes[0].Path != cPath || results[0].Changes[0].Kind != "removed missing content" {
		t.Fatalf("repair snapshots --json:\n%s", out)
	}
	after := admSnapshots(t, repoDir)
	if len(after) != 2 || after[0].ID != snaps[0].ID || after[1].ID != results[0].NewSnapshotID ||
		after[1].Original == nil || after[1].Original.String() != snaps[1].ID || admTags(after[1]) != "second" {
		t.Fatalf("snapshots after repair: %+v", after)
	}

	mustCairn(t, "-r", repoDir, "check")
	rout := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data")
	if !strings.Contains(string(rout), "no errors were found") {
		t.Fatalf("restic check: %s", rout)
	}
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", repoDir, "restore", "latest", "--target", dst, "--verify")
	for _, name := range []string{"a", "d/b"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(dst, src, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s not restored intact: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, cPath)); err != nil || fi.Size() != 0 {
		t.Fatalf("damaged file: %v %v", fi, err)
	}
	// nothing left to repair
	out = mustCairn(t, "-r", repoDir, "repair", "snapshots")
	if !strings.Contains(out, "no snapshots were modified") {
		t.Fatalf("second repair:\n%s", out)
	}
}

// TestRepairIgnoresCache: a tree pack that is damaged in the repository
// but intact in the local cache is found by repair index, and repair
// snapshots does not take the cached copy for the real one (H35).
func TestRepairIgnoresCache(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	admRandFile(t, filepath.Join(src, "a"), 3000, 1)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", src)
	mustCairn(t, "-r", repoDir, "ls", "latest") // caches the tree pack
	sn := admSnapshots(t, repoDir)[0]
	treePack := admPackOfBlob(t, repoDir, core.BlobHandle{ID: *sn.Tree, Type: core.TreeBlob})
	p := admPackPath(repoDir, treePack)
	buf, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(buf) - 40; i < len(buf)-4; i++ {
		buf[i] ^= 0x55 // the encrypted header
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	var sum repairIndexJSON
	out := mustCairn(t, "-r", repoDir, "--json", "repair", "index", "--read-all-packs")
	if err := json.Unmarshal([]byte(out), &sum); err != nil || len(sum.UnreadablePacks) != 1 || sum.UnreadablePacks[0].ID != treePack.String() {
		t.Fatalf("repair index: %v %s", err, out)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("unreadable pack removed: %v", err)
	}
	var res repairSnapshotJSON
	out = mustCairn(t, "-r", repoDir, "--json", "repair", "snapshots")
	if err := json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &res); err != nil || !res.RootUnreadable || res.RemovedOriginal {
		t.Fatalf("repair snapshots: %v %s", err, out)
	}
}
