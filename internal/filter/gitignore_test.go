package filter

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

func TestGitignoreMatch(t *testing.T) {
	type check struct {
		rel      string
		dir      bool
		ignored  bool
		decided  bool
		describe string
	}
	tests := []struct {
		content string
		checks  []check
	}{
		// Examples from the gitignore documentation.
		{"hello.*", []check{
			{"hello.txt", false, true, true, "basename glob"},
			{"a/b/hello.c", false, true, true, "at any depth"},
			{"hello", false, false, false, "needs the dot"},
		}},
		{"doc/frotz/", []check{
			{"doc/frotz", true, true, true, "anchored by the middle slash"},
			{"a/doc/frotz", true, false, false, "not at depth"},
			{"doc/frotz", false, false, false, "directories only"},
		}},
		{"frotz/", []check{
			{"frotz", true, true, true, ""},
			{"a/frotz", true, true, true, "trailing slash alone does not anchor"},
			{"frotz", false, false, false, "files are not matched"},
		}},
		{"foo/*", []check{
			{"foo/test.json", false, true, true, ""},
			{"foo/bar", true, true, true, ""},
			{"foo/bar/hello.c", false, false, false, "'*' does not cross '/'"},
			{"x/foo/a", false, false, false, "anchored"},
		}},
		{"/*.c", []check{
			{"cat-file.c", false, true, true, ""},
			{"mozilla-sha1/sha1.c", false, false, false, ""},
		}},
		{"**/foo", []check{
			{"foo", false, true, true, ""},
			{"a/b/foo", true, true, true, ""},
			{"a/foox", false, false, false, ""},
		}},
		{"**/foo/bar", []check{
			{"foo/bar", false, true, true, ""},
			{"x/y/foo/bar", false, true, true, ""},
		}},
		{"abc/**", []check{
			{"abc/x", false, true, true, ""},
			{"abc/x/y", false, true, true, ""},
			{"abc", true, false, false, "not the directory itself"},
		}},
		{"a/**/b", []check{
			{"a/b", false, true, true, ""},
			{"a/x/b", false, true, true, ""},
			{"a/x/y/b", false, true, true, ""},
			{"a/xb", false, false, false, ""},
		}},
		{"a**b", []check{
			{"axxb", false, true, true, "plain star"},
			{"q/axb", false, true, true, "basename pattern"},
		}},
		{"x/a**b", []check{
			{"x/axb", false, true, true, ""},
			{"x/a/b", false, false, false, "not a path component: no '/'"},
		}},
		// Comments, escapes and white space.
		{"#file\n\\#file\n\\!important\ntrail\\ \nspaces   \n\ttab", []check{
			{"#file", false, true, true, "escaped hash"},
			{"!important", false, true, true, "escaped bang"},
			{"trail ", false, true, true, "escaped trailing space kept"},
			{"trail", false, false, false, ""},
			{"spaces", false, true, true, "unescaped trailing spaces dropped"},
			{"\ttab", false, true, true, "leading tab kept"},
		}},
		{"*.log\n!keep.log", []check{
			{"x.log", false, true, true, ""},
			{"keep.log", false, false, true, "re-included"},
			{"a/keep.log", false, false, true, ""},
		}},
		{"!keep.log\n*.log", []check{
			{"keep.log", false, true, true, "the last matching pattern wins"},
		}},
		{"[a-c]x\n[!a]y\n[^a]z\n[[:digit:]]d\n[]]b\n[a-]m", []check{
			{"bx", false, true, true, ""},
			{"dx", false, false, false, ""},
			{"by", false, true, true, ""},
			{"ay", false, false, false, ""},
			{"bz", false, true, true, ""},
			{"5d", false, true, true, ""},
			{"xd", false, false, false, ""},
			{"]b", false, true, true, ""},
			{"-m", false, true, true, ""},
		}},
		{"\xef\xbb\xbffoo\r\nbar\r\n", []check{
			{"foo", false, true, true, "BOM and CRLF"},
			{"bar", false, true, true, ""},
		}},
		{"/\n!\n\n   \nend\\", []check{
			{"x", false, false, false, "degenerate lines match nothing"},
			{"end", false, false, false, "a trailing backslash matches nothing"},
		}},
		{"a/b\nc[", []check{
			{"a/b", true, true, true, ""},
			{"c[", false, false, false, "an unclosed set matches nothing"},
		}},
	}
	for _, tc := range tests {
		r := ParseGitignore([]byte(tc.content))
		for _, c := range tc.checks {
			ign, dec := r.Match(c.rel, c.dir)
			if ign != c.ignored || dec != c.decided {
				t.Errorf("rules %q: Match(%q, dir=%v) = %v, %v; want %v, %v (%s)", tc.content, c.rel, c.dir, ign, dec, c.ignored, c.decided, c.describe)
			}
		}
	}
	if n := ParseGitignore([]byte("# only\n\n")).Len(); n != 0 {
		t.Fatalf("comments gave %d rules", n)
	}
	var nilRules *GitignoreRules
	if i, d := nilRules.Match("x", false); i || d {
		t.Fatal("nil rules must decide nothing")
	}
}

func TestWildmatch(t *testing.T) {
	tests := []struct {
		pat, text string
		pathname  bool
		want      bool
	}{
		{"foo", "foo", true, true},
		{"fo?", "foo", true, true},
		{"f*", "f/o", true, false},
		{"f*", "f/o", false, true},
		{"**", "a/b/c", true, true},
		{"**/", "a/b/", true, true},
		{"a/**", "a/b/c", true, true},
		{"a/**", "a", true, false},
		{"**/c", "c", true, true},
		{"a/**/c", "a/c", true, true},
		{"a/**/**/c", "a/c", true, true},
		{"a/**/c", "a/b/x/c", true, true},
		{"a\\/**/c", "a/b/c", true, true},
		{"*.c", "x.c", true, true},
		{"[", "[", true, false},
		{"[!]", "x", true, false},
		{"[]-a]", "^", true, true}, // the range ']'..'a'
		{"[]-a]", "-", true, false},
		{"[[:alpha:]]", "q", true, true},
		{"[[:bogus:]]", "q", true, false},
		{"[[:alpha:]", "[", true, false},
		{"[[:]", "[", true, true},
		{"[a-c]", "/", true, false},
		{"[^a]", "/", true, false},
		{"[^a]", "/", false, true},
		{"\\", "\\", true, false},
		{"\\*", "*", true, true},
		{"\\*", "x", true, false},
		{"a*b*c", "axxbyyc", true, true},
		{"a*b*c", "axxbyy", true, false},
	}
	for _, tc := range tests {
		if got := wildmatch(tc.pat, tc.text, tc.pathname); got != tc.want {
			t.Errorf("wildmatch(%q, %q, %v) = %v, want %v", tc.pat, tc.text, tc.pathname, got, tc.want)
		}
	}
}

// walkIgnored walks root like a backup would, entering every directory,
// and returns its files split into ignored and kept (slash paths relative
// to root).
func walkIgnored(t *testing.T, root, name string) (ignored, kept []string) {
	t.Helper()
	f, err := NewIgnoreFiles(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var walk func(dir string)
	walk = func(dir string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		if err := f.EnterDir(ctx, dir, names); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if e.IsDir() {
				if e.Name() == ".git" {
					continue
				}
				walk(p)
				continue
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				t.Fatal(err)
			}
			if f.Ignored(p, false) {
				ignored = append(ignored, filepath.ToSlash(rel))
			} else {
				kept = append(kept, filepath.ToSlash(rel))
			}
		}
		f.LeaveDir(dir)
	}
	walk(root)
	sort.Strings(ignored)
	sort.Strings(kept)
	return ignored, kept
}

type gitScenario struct {
	name    string
	ignores map[string]string // directory (slash, "" = root) -> ignore file content
	files   []string
}

var gitScenarios = []gitScenario{
	{"doc examples", map[string]string{"": "hello.*\ndoc/frotz/\nfoo/*\n/*.c\n"}, []string{
		"hello.txt", "a/hello.c", "doc/frotz/x", "a/doc/frotz/y", "foo/test.json", "foo/bar/hello.c",
		"x/foo/a", "cat-file.c", "mozilla-sha1/sha1.c", "frotz",
	}},
	{"exclude all but foo/bar", map[string]string{"": "/*\n!/foo\n/foo/*\n!/foo/bar\n"}, []string{
		"a", "b/c", "foo/x", "foo/bar/y", "foo/bar/z/w", "foo/baz/q",
	}},
	{"no re-include inside excluded dir", map[string]string{"": "build/\n!build/keep\n*.log\n", "a": "!keep.log\n", "build": "!x\n"}, []string{
		"build/keep", "build/sub/x", "build/x", "a/x.log", "a/keep.log", "top.log", "a/b/keep.log",
	}},
	{"double stars", map[string]string{"": "**/foo\nabc/**\na/**/b\nx/a**b\n**/deep/**/leaf\n"}, []string{
		"foo", "q/r/foo", "abc/z", "abc/x/y", "abcd/x", "a/b", "a/x/b", "a/x/y/b", "x/axxb", "x/a/b",
		"deep/leaf", "p/deep/q/r/leaf", "p/deeper/leaf",
	}},
	{"escapes and spaces", map[string]string{"": "#comment\n\\#hash\n\\!bang\ntrail\\ \nspaced   \n"}, []string{
		"#comment", "#hash", "!bang", "trail ", "trail", "spaced", "spaced x",
	}},
	{"classes", map[string]string{"": "[a-c]x\n[!a]y\n[[:digit:]]d\n[]]b\n"}, []string{
		"ax", "dx", "ay", "by", "5d", "xd", "]b",
	}},
	{"nested precedence", map[string]string{
		"":    "*.tmp\n!important.tmp\nsecret/\n",
		"p":   "important.tmp\n!*.tmp\n/only-here\n",
		"p/q": "!secret/\nsecret\n",
	}, []string{
		"a.tmp", "important.tmp", "p/a.tmp", "p/important.tmp", "p/only-here", "p/q/only-here",
		"secret/x", "p/secret/x", "p/q/secret/x", "p/q/r/secret",
	}},
	{"anchored in subdirectory", map[string]string{"sub": "/x\ny/z\n*.o\n"}, []string{
		"x", "sub/x", "sub/a/x", "sub/y/z", "sub/a/y/z", "y/z", "m.o", "sub/m.o", "sub/deep/m.o",
	}},
	{"dir only", map[string]string{"": "logs/\ncache\n", "logs2": "*/\n"}, []string{
		"logs/a", "x/logs/b", "logs2/f", "logs2/d/f", "cache/c", "y/cache",
	}},
	{"crlf and bom", map[string]string{"": "\xef\xbb\xbfone\r\ntwo\r\n!two/keep\n"}, []string{
		"one", "two/x", "two/keep", "three",
	}},
}

var gitOnce sync.Once
var gitPath string

func TestDifferentialGitignore(t *testing.T) {
	gitOnce.Do(func() { gitPath, _ = exec.LookPath("git") })
	if gitPath == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("git not found; the differential gitignore test needs it on CI")
		}
		t.Skip("git not found")
	}
	const name = ".cairnignore"
	for _, sc := range gitScenarios {
		t.Run(sc.name, func(t *testing.T) {
			root := t.TempDir()
			home := t.TempDir()
			for _, f := range sc.files {
				p := filepath.Join(root, filepath.FromSlash(f))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for dir, content := range sc.ignores {
				p := filepath.Join(root, filepath.FromSlash(dir), name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			git := func(args ...string) []string {
				cmd := exec.Command(gitPath, append([]string{"-C", root}, args...)...)
				cmd.Env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "XDG_CONFIG_HOME="+home)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("git %v: %v: %s", args, err, stderr.String())
				}
				var l []string
				for _, s := range strings.Split(string(out), "\x00") {
					if s != "" {
						l = append(l, s)
					}
				}
				sort.Strings(l)
				return l
			}
			git("init", "-q")
			wantIgnored := git("ls-files", "-z", "--others", "--ignored", "--exclude-per-directory="+name)
			wantKept := git("ls-files", "-z", "--others", "--exclude-per-directory="+name)
			gotIgnored, gotKept := walkIgnored(t, root, name)
			if fmt.Sprint(gotIgnored) != fmt.Sprint(wantIgnored) || fmt.Sprint(gotKept) != fmt.Sprint(wantKept) {
				t.Errorf("git ignores %q\n      cairn %q\ngit keeps %q\n    cairn %q", wantIgnored, gotIgnored, wantKept, gotKept)
			}
		})
	}
}

func TestIgnoreFiles(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	mk := func(rel, content string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk(".ig", "*.o\nbuild/\n")
	mk("src/.ig", "!keep.o\n")
	mk("src/a.o", "")
	mk("src/keep.o", "")
	mk("build/out", "")
	mk("other/.ig/x", "") // a directory named like the ignore file is skipped
	if err := os.Symlink(filepath.Join(root, ".ig"), filepath.Join(root, "src", "link")); err != nil {
		t.Fatal(err)
	}

	f, err := NewIgnoreFiles(".ig")
	if err != nil {
		t.Fatal(err)
	}
	if f.Name() != ".ig" {
		t.Fatal("Name")
	}
	if err := f.EnterDir(ctx, root, []string{".ig", "src", "build", "other"}); err != nil {
		t.Fatal(err)
	}
	if err := f.EnterDir(ctx, filepath.Join(root, "src"), []string{".ig", "a.o", "keep.o"}); err != nil {
		t.Fatal(err)
	}
	if err := f.EnterDir(ctx, filepath.Join(root, "other"), []string{".ig"}); err != nil {
		t.Fatalf("directory named like the ignore file: %v", err)
	}
	checks := []struct {
		rel   string
		dir   bool
		want  bool
		about string
	}{
		{"src/a.o", false, true, "parent rule"},
		{"src/keep.o", false, false, "re-included by the deeper file"},
		{"src/x.c", false, false, ""},
		{"build", true, true, "dir-only rule"},
		{"build", false, false, "a file named build is kept"},
		{"build/out", false, true, "inside an ignored directory (not entered)"},
		{"build/deeper/out.c", false, true, "deep inside an ignored directory"},
		{"src/new/x.o", false, true, "directory not entered: rules still apply"},
		{"other/.ig/x", false, false, ""},
		{"../outside.o", false, false, "outside every entered directory"},
	}
	for _, c := range checks {
		p := filepath.Join(root, filepath.FromSlash(c.rel))
		if got := f.Ignored(p, c.dir); got != c.want {
			t.Errorf("Ignored(%s, dir=%v) = %v, want %v (%s)", c.rel, c.dir, got, c.want, c.about)
		}
	}

	// Entering an ignored directory marks everything in it ignored.
	if err := f.EnterDir(ctx, filepath.Join(root, "build"), []string{"out"}); err != nil {
		t.Fatal(err)
	}
	mk("build/.ig", "!*\n")
	if err := f.EnterDir(ctx, filepath.Join(root, "build"), []string{"out", ".ig"}); err != nil {
		t.Fatal(err)
	}
	if !f.Ignored(filepath.Join(root, "build", "out"), false) {
		t.Error("a deeper ignore file re-included a file in an ignored directory")
	}

	// A directory entered below one that was skipped still sees the rules
	// of the entered ancestors, including ignored directories between.
	if err := f.EnterDir(ctx, filepath.Join(root, "build", "gen", "x"), nil); err != nil {
		t.Fatal(err)
	}
	if !f.Ignored(filepath.Join(root, "build", "gen", "x", "y.c"), false) {
		t.Error("entered directory below an ignored one is not ignored")
	}
	if err := f.EnterDir(ctx, filepath.Join(root, "src", "gen", "x"), nil); err != nil {
		t.Fatal(err)
	}
	if !f.Ignored(filepath.Join(root, "src", "gen", "x", "y.o"), false) || f.Ignored(filepath.Join(root, "src", "gen", "x", "keep.o"), false) {
		t.Error("rules of entered ancestors lost across a skipped level")
	}

	// Leaving a directory drops it, but entered subdirectories still see
	// its rules.
	f.LeaveDir(root)
	if !f.Ignored(filepath.Join(root, "src", "a.o"), false) {
		t.Error("rules of a left parent lost for an entered child")
	}
	if f.Ignored(filepath.Join(root, "top.o"), false) {
		t.Error("left directory still applies to its direct children")
	}

	// A symlinked ignore file is not followed.
	g, _ := NewIgnoreFiles("link")
	if err := g.EnterDir(ctx, filepath.Join(root, "src"), []string{"link", "a.o"}); err != nil {
		t.Fatal(err)
	}
	if g.Ignored(filepath.Join(root, "src", "a.o"), false) {
		t.Error("symlinked ignore file was followed")
	}

	// A cancelled context is reported, the directory is still entered.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	h, _ := NewIgnoreFiles(".ig")
	if err := h.EnterDir(cctx, root, []string{".ig"}); err == nil {
		t.Error("cancelled context not reported")
	}

	for _, bad := range []string{"", ".", "..", "a/b"} {
		if _, err := NewIgnoreFiles(bad); err == nil {
			t.Errorf("NewIgnoreFiles(%q) accepted", bad)
		}
	}
}

func TestIgnoreFilesRelativeAndConcurrent(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ".ig"), []byte("*.o\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	f, _ := NewIgnoreFiles(".ig")
	if err := f.EnterDir(ctx, ".", []string{".ig"}); err != nil {
		t.Fatal(err)
	}
	if !f.Ignored("a.o", false) || !f.Ignored("d/b.o", false) || f.Ignored("a.c", false) {
		t.Fatal("relative walk root")
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := fmt.Sprintf("d%d", i)
			if err := f.EnterDir(ctx, d, nil); err != nil {
				t.Error(err)
				return
			}
			for j := 0; j < 100; j++ {
				if !f.Ignored(filepath.Join(d, "x.o"), false) {
					t.Error("concurrent lookup failed")
					return
				}
			}
			f.LeaveDir(d)
		}()
	}
	wg.Wait()
}

// FuzzGitignore: no panics, and a pattern without metacharacters matches
// the path it spells.
func FuzzGitignore(f *testing.F) {
	for _, s := range [][2]string{
		{"*.o\n!keep.o\n", "a/keep.o"},
		{"a/**/b", "a/x/y/b"},
		{"[[:alpha:]", "x"},
		{"doc/frotz/", "doc/frotz"},
		{"\\#x \\ ", "#x  "},
		{"**/**/**/a", "b/c/d/e/a"},
		{"x", "x"},
	} {
		f.Add(s[0], s[1], true)
	}
	f.Fuzz(func(t *testing.T, content, rel string, isDir bool) {
		if len(content) > 300 || len(rel) > 300 {
			return
		}
		r := ParseGitignore([]byte(content))
		r.Match(rel, isDir)
		line := content
		if strings.ContainsAny(line, "*?[\\!#\n\r") || strings.TrimSpace(line) != line || strings.HasPrefix(line, "\xef\xbb\xbf") {
			return
		}
		lit := strings.TrimPrefix(strings.TrimSuffix(line, "/"), "/")
		if lit == "" || strings.Contains(lit, "//") {
			return
		}
		if ign, dec := r.Match(lit, true); !ign || !dec {
			t.Fatalf("literal pattern %q does not match %q", line, lit)
		}
	})
}
