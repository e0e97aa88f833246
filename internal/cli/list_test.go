package cli

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

func admLines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

func TestListCommand(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	admRandFile(t, filepath.Join(src, "a"), 20000, 1)
	admRandFile(t, filepath.Join(src, "d", "b"), 30000, 2)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", src)
	admRandFile(t, filepath.Join(src, "c"), 1000, 3)
	mustCairn(t, "-r", repoDir, "backup", src)

	for what, dir := range map[string]string{"packs": "data", "index": "index", "snapshots": "snapshots", "keys": "keys", "locks": "locks"} {
		got := admLines(mustCairn(t, "-r", repoDir, "list", what))
		want := admFiles(t, filepath.Join(repoDir, dir))
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("list %s: %v, want %v", what, got, want)
		}
		var js []string
		if err := json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "list", "--json", what)), &js); err != nil {
			t.Fatal(err)
		}
		sort.Strings(js)
		if strings.Join(js, ",") != strings.Join(want, ",") {
			t.Errorf("list --json %s: %v, want %v", what, js, want)
		}
	}
	if n := len(admLines(mustCairn(t, "-r", repoDir, "list", "snapshots"))); n != 2 {
		t.Fatalf("%d snapshots listed", n)
	}

	// blobs: the same lines restic prints
	got := admLines(mustCairn(t, "-r", repoDir, "list", "blobs"))
	want := admLines(string(testutil.RunRestic(t, repoDir, testPassword, "list", "blobs")))
	if strings.Join(got, "\n") != strings.Join(want, "\n") || len(got) < 5 {
		t.Fatalf("list blobs:\n%s\nrestic:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var js []listBlobJSON
	if err := json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "list", "blobs", "--json")), &js); err != nil || len(js) != len(got) {
		t.Fatalf("list blobs --json: %v (%d entries)", err, len(js))
	}
	var fromJSON []string
	for _, b := range js {
		fromJSON = append(fromJSON, b.Type.String()+" "+b.ID.String())
	}
	sort.Strings(fromJSON)
	if strings.Join(fromJSON, "\n") != strings.Join(got, "\n") {
		t.Fatal("list blobs --json differs from the text output")
	}

	if r := cairn(t, "-r", repoDir, "list", "trees"); r.code != ExitError {
		t.Fatalf("list trees: exit %d", r.code)
	}
}
