package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/restorer"
	"github.com/cairn-backup/cairn/internal/testutil"
	"github.com/cairn-backup/cairn/internal/tree"
)

// history is a repository with two snapshots of src: before and after
// mutateSource.
type history struct {
	repo string
	src  string
	ids  [2]string // full snapshot IDs, oldest first
}

// mutateSource changes the generated tree in every way diff reports: a
// changed file (M), a removed directory (-), an added directory (+), a
// permission change (U) and a file replaced by a symlink (T).
func mutateSource(t *testing.T, src string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(src, "dir", "file.txt"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("more content\n")
	f.Close()
	if err := os.RemoveAll(filepath.Join(src, "many")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "added", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"added/new.txt", "added/sub/deeper.txt"} {
		if err := os.WriteFile(filepath.Join(src, n), []byte("new "+n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "tiny.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "medium.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tiny.txt", filepath.Join(src, "medium.bin")); err != nil {
		t.Fatal(err)
	}
}

// resticSnapshotIDs lists a repository's snapshots (restic's view), oldest
// first.
func resticSnapshotIDs(t *testing.T, repoDir, password string) []string {
	t.Helper()
	var list []struct {
		ID   string `json:"id"`
		Time string `json:"time"`
	}
	if err := json.Unmarshal(testutil.RunRestic(t, repoDir, password, "snapshots", "--json"), &list); err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Time < list[j].Time })
	ids := make([]string, len(list))
	for i, s := range list {
		ids[i] = s.ID
	}
	return ids
}

// resticHistory makes a restic repository holding two snapshots of a
// generated tree, before and after mutateSource.
func resticHistory(t *testing.T, seed int64) history {
	t.Helper()
	testutil.RequireRestic(t)
	tmp := t.TempDir()
	h := history{repo: filepath.Join(tmp, "repo"), src: filepath.Join(tmp, "src")}
	// restic 0.14 mangles non-UTF-8 symlink targets
	// (no sparse files: they only cost time here)
	testutil.GenerateTree(t, h.src, testutil.GenOptions{Seed: seed, SkipNonUTF8LinkTargets: true, SkipSparse: true})
	newResticRepo(t, h.repo)
	testutil.RunRestic(t, h.repo, testPassword, "backup", h.src)
	mutateSource(t, h.src)
	testutil.RunRestic(t, h.repo, testPassword, "backup", h.src)
	ids := resticSnapshotIDs(t, h.repo, testPassword)
	if len(ids) != 2 {
		t.Fatalf("want 2 snapshots, got %v", ids)
	}
	copy(h.ids[:], ids)
	return h
}

// cairnHistory is resticHistory made by cairn.
func cairnHistory(t *testing.T, seed int64, version string) history {
	t.Helper()
	tmp := t.TempDir()
	h := history{repo: filepath.Join(tmp, "repo"), src: filepath.Join(tmp, "src")}
	testutil.GenerateTree(t, h.src, testutil.GenOptions{Seed: seed, SkipSparse: true})
	mustCairn(t, "-r", h.repo, "init", "--repository-version", version)
	mustCairn(t, "-r", h.repo, "backup", "-q", h.src)
	mutateSource(t, h.src)
	mustCairn(t, "-r", h.repo, "backup", "-q", h.src)
	var snaps []snapshotJSON
	if err := json.Unmarshal([]byte(mustCairn(t, "-r", h.repo, "snapshots", "--json")), &snaps); err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots: %v %v", err, snaps)
	}
	h.ids = [2]string{snaps[0].ID, snaps[1].ID}
	return h
}

// resticTemplate is an empty repository made by restic init (with its key
// replaced by a cheap one), kept in memory: restic's init calibrates its
// KDF and opening its key is slow under the race detector, so it is done
// once per test binary.
var resticTemplate struct {
	once  sync.Once
	dirs  []string          // relative directory paths
	files map[string][]byte // relative file path -> content
}

// newResticRepo creates a restic-made repository at dir (a copy of the
// template, so all of them share the repository ID, master key and
// chunker polynomial).
func newResticRepo(t *testing.T, dir string) {
	t.Helper()
	testutil.RequireRestic(t)
	resticTemplate.once.Do(func() {
		tmpl := filepath.Join(t.TempDir(), "restic-template")
		testutil.RunRestic(t, tmpl, testPassword, "init")
		cheapenKeys(t, tmpl)
		files := map[string][]byte{}
		var dirs []string
		err := filepath.Walk(tmpl, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(tmpl, p)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				dirs = append(dirs, rel)
				return nil
			}
			b, err := os.ReadFile(p)
			files[rel] = b
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		resticTemplate.dirs, resticTemplate.files = dirs, files
	})
	if len(resticTemplate.files) == 0 {
		t.Fatal("creating the restic template repository failed in an earlier test")
	}
	for _, d := range resticTemplate.dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for f, b := range resticTemplate.files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o400); err != nil {
			t.Fatal(err)
		}
	}
}

// cheapenKeys replaces the key files of a restic-made repository with one
// using the cheap test KDF parameters (CAIRN_KDF_PARAMS), so that opening it
// costs little for restic and cairn alike (restic's calibrated scrypt is
// slow under the race detector).
func cheapenKeys(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	be, err := openLocal(ctx, nil, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, testPassword, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	old, err := r.ListIDs(ctx, core.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	params, err := repo.KDFParams()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddKey(ctx, testPassword, params, ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range old {
		if err := be.Remove(ctx, backend.Handle{Type: core.KeyFile, Name: id.String()}); err != nil {
			t.Fatal(err)
		}
	}
}

// openRepoForTest opens a local repository with its index loaded.
func openRepoForTest(t *testing.T, dir, password string) *repo.Repository {
	t.Helper()
	ctx := context.Background()
	be, err := openLocal(ctx, nil, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, password, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// nodeAt returns the node at absolute snapshot path p.
func nodeAt(t *testing.T, r *repo.Repository, snapID, p string) *tree.Node {
	t.Helper()
	ctx := context.Background()
	id, err := r.FindFile(ctx, core.SnapshotFile, snapID)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := r.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	dirID, err := restorer.FindSubtree(ctx, r, *sn.Tree, filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := loadTreeByID(ctx, r, dirID)
	if err != nil {
		t.Fatal(err)
	}
	n := tr.Find(filepath.Base(p))
	if n == nil {
		t.Fatalf("%s not in snapshot %s", p, snapID)
	}
	return n
}

// parseJSONLines decodes every non-empty line of s.
func parseJSONLines(t *testing.T, s string) []any {
	t.Helper()
	var out []any
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		out = append(out, v)
	}
	return out
}

// TestDiffFindDumpMatchRestic runs diff, find and dump against restic
// 0.14 on one restic-made repository.
func TestDiffFindDumpMatchRestic(t *testing.T) {
	cairnEnv(t)
	h := resticHistory(t, 11)
	t.Run("diff", func(t *testing.T) { checkDiffMatchesRestic(t, h) })
	t.Run("find", func(t *testing.T) { checkFindMatchesRestic(t, h) })
	t.Run("dump", func(t *testing.T) { checkDumpMatchesRestic(t, h) })
}

func checkDiffMatchesRestic(t *testing.T, h history) {
	a, b := h.ids[0][:8], h.ids[1]
	for _, tc := range [][]string{{a, b}, {b, a}, {"--metadata", a, b}, {"--metadata", b, a}} {
		want := string(testutil.RunRestic(t, h.repo, testPassword, append([]string{"--no-lock", "diff", "--json"}, tc...)...))
		got := mustCairn(t, append([]string{"-r", h.repo, "diff", "--json"}, tc...)...)
		wl, gl := parseJSONLines(t, want), parseJSONLines(t, got)
		if !reflect.DeepEqual(wl, gl) {
			t.Errorf("diff --json %v differs from restic:\nrestic:\n%s\ncairn:\n%s", tc, want, got)
		}
		if len(wl) < 10 {
			t.Errorf("diff %v: only %d lines; the mutations were not seen", tc, len(wl))
		}
		// the text output, too
		wantText := string(testutil.RunRestic(t, h.repo, testPassword, append([]string{"--no-lock", "diff"}, tc...)...))
		gotText := mustCairn(t, append([]string{"-r", h.repo, "diff"}, tc...)...)
		if wantText != gotText {
			t.Errorf("diff %v text differs from restic:\nrestic:\n%s\ncairn:\n%s", tc, wantText, gotText)
		}
	}
}

// TestDiffReportsChanges checks diff's findings on a cairn repository
// (without restic).
func TestDiffReportsChanges(t *testing.T) {
	cairnEnv(t)
	h := cairnHistory(t, 12, "2")
	lines := parseJSONLines(t, mustCairn(t, "-r", h.repo, "diff", "--json", "--metadata", h.ids[0], h.ids[1]))
	changes := map[string]string{}
	var stats map[string]any
	for _, l := range lines {
		m := l.(map[string]any)
		switch m["message_type"] {
		case "change":
			changes[m["path"].(string)] = m["modifier"].(string)
		case "statistics":
			stats = m
		default:
			t.Fatalf("unexpected message %v", m)
		}
	}
	want := map[string]string{
		"/dir/file.txt":         "M",
		"/many/":                "-",
		"/many/f00000":          "-",
		"/added/":               "+",
		"/added/sub/deeper.txt": "+",
		"/tiny.txt":             "U",
		"/medium.bin":           "TU",
	}
	for p, mod := range want {
		if got := changes[h.src+p]; got != mod {
			t.Errorf("%s: modifier %q, want %q", p, got, mod)
		}
	}
	if _, ok := changes[h.src+"/dir/sub/"]; ok {
		t.Error("unchanged directory reported")
	}
	if stats == nil {
		t.Fatal("no statistics")
	}
	added := stats["added"].(map[string]any)
	removed := stats["removed"].(map[string]any)
	if added["files"].(float64) != 2 || added["dirs"].(float64) != 2 || added["others"].(float64) != 0 {
		t.Errorf("added: %v", added)
	}
	if removed["files"].(float64) != 20 || removed["dirs"].(float64) != 1 {
		t.Errorf("removed: %v", removed)
	}
	if stats["changed_files"].(float64) != 1 || stats["source_snapshot"] != h.ids[0] {
		t.Errorf("stats: %v", stats)
	}
	// without --metadata, U changes vanish and T stays
	text := mustCairn(t, "-r", h.repo, "diff", h.ids[0], h.ids[1])
	if strings.Contains(text, "U    ") || !strings.Contains(text, "T    "+h.src+"/medium.bin\n") ||
		!strings.Contains(text, "Files:           2 new,    20 removed,     1 changed\n") {
		t.Errorf("diff text:\n%s", text)
	}
	// a snapshot against itself: no changes, nothing counted
	same := parseJSONLines(t, mustCairn(t, "-r", h.repo, "diff", "--json", "--metadata", h.ids[1], h.ids[1]))
	if len(same) != 1 {
		t.Fatalf("self diff: %v", same)
	}
	if r := cairn(t, "-r", h.repo, "diff", h.ids[0]); r.code == 0 {
		t.Error("diff with one snapshot succeeded")
	}
}
