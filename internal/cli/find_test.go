package cli

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// findDoc parses a find --json document and sorts its top-level elements
// (restic visits snapshots in listing order, cairn oldest first).
func findDoc(t *testing.T, s string) []any {
	t.Helper()
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Fatalf("find --json output is not one line: %q", s)
	}
	var list []any
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		t.Fatalf("find --json output %q: %v", s, err)
	}
	key := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	sort.Slice(list, func(i, j int) bool { return key(list[i]) < key(list[j]) })
	return list
}

// countFindHits counts the matches of a find --json document.
func countFindHits(list []any) int {
	n := 0
	for _, e := range list {
		m := e.(map[string]any)
		if hits, ok := m["hits"]; ok {
			n += int(hits.(float64))
		} else {
			n++
		}
	}
	return n
}

func checkFindMatchesRestic(t *testing.T, h history) {
	r := openRepoForTest(t, h.repo, testPassword)
	other := nodeAt(t, r, h.ids[0], h.src+"/dir/sub/other.bin")
	blob := other.Content[0]
	sub := nodeAt(t, r, h.ids[0], h.src+"/dir/sub")
	loc, ok := r.Index().Lookup(core.BlobHandle{Type: core.DataBlob, ID: blob})
	if !ok {
		t.Fatal("blob not indexed")
	}
	first, second := h.ids[0][:8], h.ids[1]
	cases := []struct {
		args    []string
		minHits int
		text    bool // compare the text output byte for byte, too
	}{
		{[]string{"*.txt"}, 10, false},
		{[]string{"-i", "*.TXT", "F0000*"}, 20, false},
		{[]string{"--snapshot", first, "--long", "f0001*", "*.bin"}, 10, true},
		{[]string{"-s", second, h.src + "/dir/*"}, 3, true},
		{[]string{"-s", first, h.src + "/dir"}, 1, true},
		// (one snapshot at a time: across snapshots restic skips trees in
		// which nothing matched earlier, even when the directory itself
		// would match, so it reports fewer directories than cairn)
		{[]string{"-s", second, "--oldest", "2008-01-01", "--newest", "2014-06-30 12:00:00", "*"}, 5, false},
		{[]string{"--blob", blob.String()}, 2, false},
		{[]string{"-s", first, "--blob", blob.String()[:8]}, 1, true},
		{[]string{"--tree", sub.Subtree.String()}, 2, false},
		{[]string{"-s", second, "--tree", sub.Subtree.String()[:8]}, 1, true},
		{[]string{"--pack", loc.Pack.String()[:8]}, 2, false},
		{[]string{"nothing-matches-this"}, 0, true},
	}
	for _, tc := range cases {
		want := string(testutil.RunRestic(t, h.repo, testPassword, append([]string{"--no-lock", "find", "--json"}, tc.args...)...))
		got := mustCairn(t, append([]string{"-r", h.repo, "--no-lock", "find", "--json"}, tc.args...)...)
		wl, gl := findDoc(t, want), findDoc(t, got)
		if !reflect.DeepEqual(wl, gl) {
			t.Errorf("find --json %v differs from restic:\nrestic: %s\ncairn:  %s", tc.args, want, got)
		}
		if n := countFindHits(gl); n < tc.minHits {
			t.Errorf("find %v: %d hits, want at least %d", tc.args, n, tc.minHits)
		}
		if tc.text {
			wantText := string(testutil.RunRestic(t, h.repo, testPassword, append([]string{"--no-lock", "find"}, tc.args...)...))
			gotText := mustCairn(t, append([]string{"-r", h.repo, "--no-lock", "find"}, tc.args...)...)
			if wantText != gotText {
				t.Errorf("find %v text differs from restic:\nrestic:\n%s\ncairn:\n%s", tc.args, wantText, gotText)
			}
		}
	}
}

// TestFindCairnRepo checks find's selection on a cairn repository.
func TestFindCairnRepo(t *testing.T) {
	cairnEnv(t)
	h := cairnHistory(t, 13, "1")
	paths := func(args ...string) []string {
		t.Helper()
		var out []string
		for _, e := range findDoc(t, mustCairn(t, append([]string{"-r", h.repo, "--no-lock", "find", "--json"}, args...)...)) {
			m := e.(map[string]any)
			if matches, ok := m["matches"]; ok {
				for _, x := range matches.([]any) {
					out = append(out, m["snapshot"].(string)[:8]+":"+x.(map[string]any)["path"].(string))
				}
			} else {
				out = append(out, m["snapshot"].(string)[:8]+":"+m["path"].(string))
			}
		}
		sort.Strings(out)
		return out
	}
	s0, s1 := h.ids[0][:8], h.ids[1][:8]
	if got := paths("new.txt"); !reflect.DeepEqual(got, []string{s1 + ":" + h.src + "/added/new.txt"}) {
		t.Errorf("find new.txt: %v", got)
	}
	if got := paths("-i", "NEW.TXT"); len(got) != 1 {
		t.Errorf("find -i NEW.TXT: %v", got)
	}
	if got := paths("NEW.TXT"); len(got) != 0 {
		t.Errorf("find NEW.TXT (case-sensitive): %v", got)
	}
	if got := paths("f0000*"); len(got) != 10 || !strings.HasPrefix(got[0], s0+":") {
		t.Errorf("find f0000* (only in the first snapshot): %v", got)
	}
	// a directory match is listed and searched further
	// (as in restic, a pattern matching a directory matches what is below it)
	if got := paths("-s", s1, h.src+"/added", "deeper.txt"); !reflect.DeepEqual(got, []string{
		s1 + ":" + h.src + "/added", s1 + ":" + h.src + "/added/new.txt",
		s1 + ":" + h.src + "/added/sub", s1 + ":" + h.src + "/added/sub/deeper.txt"}) {
		t.Errorf("find dir: %v", got)
	}
	// mtimes: the generated "times" entries are pinned (epoch, y2038, ...)
	if got := paths("-s", s0, "--newest", "1970-01-02", h.src+"/times/*"); len(got) != 2 {
		t.Errorf("find --newest 1970-01-02: %v", got)
	}
	if got := paths("-s", s0, "--oldest", "2038-01-01", h.src+"/times/*"); len(got) != 2 {
		t.Errorf("find --oldest 2038-01-01: %v", got)
	}
	// IDs
	r := openRepoForTest(t, h.repo, testPassword)
	f := nodeAt(t, r, h.ids[1], h.src+"/added/new.txt")
	loc, _ := r.Index().Lookup(core.BlobHandle{Type: core.DataBlob, ID: f.Content[0]})
	if got := paths("--blob", f.Content[0].String()[:12]); !reflect.DeepEqual(got, []string{s1 + ":" + h.src + "/added/new.txt"}) {
		t.Errorf("find --blob: %v", got)
	}
	d := nodeAt(t, r, h.ids[1], h.src+"/added/sub")
	if got := paths("--tree", d.Subtree.String()); !reflect.DeepEqual(got, []string{s1 + ":" + h.src + "/added/sub"}) {
		t.Errorf("find --tree: %v", got)
	}
	if got := paths("--pack", loc.Pack.String()); len(got) == 0 {
		t.Errorf("find --pack found nothing")
	}
	out := mustCairn(t, "-r", h.repo, "find", "--show-pack-id", "--blob", f.Content[0].String())
	if !strings.Contains(out, "Object belongs to pack "+loc.Pack.String()) {
		t.Errorf("--show-pack-id:\n%s", out)
	}
	for _, bad := range [][]string{{"--blob", "xyz"}, {"--blob", "--tree", "00"}, {"--pack", "00000000deadbeef"}, {"--oldest", "yesterday", "x"}, {"[x"}} {
		if res := cairn(t, append([]string{"-r", h.repo, "find"}, bad...)...); res.code == 0 {
			t.Errorf("find %v succeeded: %s", bad, res.stdout)
		}
	}
	// no match at all is an empty list
	if out := mustCairn(t, "-r", h.repo, "find", "--json", "no-such-name"); out != "[]\n" {
		t.Errorf("empty find --json: %q", out)
	}
}
