package filter

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		// restic doc/040_backup.rst, "Excluding Files".
		{"*.c", "/home/user/work/main.c", true},
		{"*.go", "/home/user/work/main.go", true},
		{"foo", "/dir1/foo/dir2/file", true},
		{"foo", "/dir/foo", true},
		{"foo", "/dir/foobar", false},
		{"foo", "barfoo", false},
		{"/bin", "/bin/bash", true},
		{"/bin", "/usr/bin/restic", false},
		{"b*ash", "/bin/bash", true},
		{"b*ash", "/bin/ash", false},
		{"foo/**/bar", "/dir1/foo/dir2/bar/file", true},
		{"foo/**/bar", "/foo/bar/file", true},
		{"foo/**/bar", "/tmp/foo/bar", true},
		{"foo/**/bar", "/tmp/foo/barx", false},
		{"foo/**/bar", "/tmp/foox/bar", false},
		{"foo bar star/foo.txt", "/x/foo bar star/foo.txt", true},

		// Components, windows and anchoring.
		{"*.go", "/a/main.go/inner", true},
		{"*.go", "/a/main.gox", false},
		{"foo/bar", "/x/foo/bar/baz", true},
		{"foo/bar", "/x/foo/baz/bar", false},
		{"foo", "foo", true},
		{"foo", "a/foo", true},
		{"/foo", "foo", false},
		{"/home/user", "/home/user", true},
		{"/home/user", "/home/user/x/y", true},
		{"/home/user", "/home/username", false},
		{"/home/*/work", "/home/alice/work/f", true},
		{"/home/*/work", "/home/alice/bob/work", false},
		{"home", "/home", true},
		{"*", "/anything", true},
		{"*", "relative", true},
		{"*/tmp", "/tmp/x", false}, // '*' does not match the root (restic 0.14)
		{"*/x", "/tmp/x", true},
		{"[^a]/tmp", "/tmp/x", false}, // nor does anything else
		{"[^a]", "/", false},
		{"[^a]", "/b", true},
		{"?", "/x/a", true},
		{"?", "/ab", false},
		{"?", "/x/ab", true}, // "x" is one character
		{"a?c", "/abc", true},
		{"[ab]", "/x/a", true},
		{"[!ab]", "/a", true}, // filepath.Match negates with '^' only; '!' is a member
		{"[!ab]", "/c", false},
		{"[^ab]", "/x/c", true},
		{"[a-c]x", "/bx", true},
		{`\*`, "/x/*", true},
		{`\*`, "/x/a", false},
		{`br\[ack\]et`, "/x/br[ack]et", true},

		// Cleaning: trailing '/', "." and ".." are resolved in the pattern.
		{"foo/", "/a/foo", true},
		{"./foo", "/a/foo", true},
		{"a/./b/../c", "/x/a/c", true},
		{"/a/../b", "/b", true},

		// "**".
		{"**", "/a", true},
		{"**", "a", true},
		{"**/c", "/a/b/c", true},
		{"/**/c", "/c", true},
		{"/**/c", "/a/b/c/d", true},
		{"a/**", "/x/a", true},
		{"a/**", "/x/a/b/c", true},
		{"/a/**/b/c", "/a/x/y/b/c", true},
		{"/a/**/b/**/c", "/a/b/c", false}, // restic 0.14: the path is shorter than the pattern
		{"/a/**/b/**/c", "/a/x/b/y/c", true},
		{"/a/**/b/**/c", "/a/x/y/b/c", false}, // restic 0.14 quirk, see Pattern
		{"a/**/b/**/c", "/r/a/x/y/b/c", true},
		{"a/**/b/**/c", "a/x/y/b/c", false}, // the same quirk, relative path
		{"a**b", "/x/ab", true},
		{"a**b", "/x/a/b", false},

		// The pattern "/" is "/**".
		{"/", "/anything/at/all", true},
		{"/", "relative", false},

		// Empty pattern matches everything.
		{"", "/x", true},
	}
	for _, tc := range tests {
		got, err := Match(tc.pattern, tc.path)
		if err != nil {
			t.Errorf("Match(%q, %q): %v", tc.pattern, tc.path, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
		if tc.pattern == "" {
			continue
		}
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if ref := refMatch(p.parts, splitPath(tc.path)); ref != tc.want {
			t.Errorf("reference matcher disagrees on (%q, %q): %v", tc.pattern, tc.path, ref)
		}
	}
}

func TestMatchErrors(t *testing.T) {
	for _, p := range []string{"[", "a[", "x/[", `\`, "[a-", "foo/[]x"} {
		if _, err := ParsePattern(p); !errors.Is(err, ErrInvalidPattern) {
			t.Errorf("ParsePattern(%q) = %v, want ErrInvalidPattern", p, err)
		}
		if _, err := Match(p, "/x"); err == nil {
			t.Errorf("Match(%q) accepted a malformed pattern", p)
		}
	}
	if _, err := ParsePattern(""); !errors.Is(err, ErrInvalidPattern) {
		t.Error("empty pattern accepted by ParsePattern")
	}
	if _, err := Match("foo", ""); !errors.Is(err, ErrBadString) {
		t.Errorf("empty path: %v", err)
	}
	_, err := ParsePatterns([]string{"ok", "[", "", "a[", "/fine/**"})
	var ipe *InvalidPatternsError
	if !errors.As(err, &ipe) || strings.Join(ipe.Patterns, ",") != "[,a[" || !errors.Is(err, ErrInvalidPattern) {
		t.Fatalf("ParsePatterns error = %v", err)
	}
	if !strings.Contains(err.Error(), "invalid pattern(s) provided:\n[\na[") {
		t.Fatalf("message %q", err.Error())
	}
}

func TestChildMatch(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/home/user/work", "/home", true},
		{"/home/user/work", "/home/user", true},
		{"/home/user/work", "/home/other", false},
		{"/home/user/work", "/var", false},
		{"/home/user/work", "/home/user/work/x", true},
		{"/home/*/work", "/home/alice", true},
		{"/home/**/x", "/home/a/b", true},
		{"/home/**/x", "/var/a/b", false},
		{"*.go", "/a", true},
		{"foo/bar", "/x", true},
		{"", "/x", true},
	}
	for _, tc := range tests {
		got, err := ChildMatch(tc.pattern, tc.path)
		if err != nil || got != tc.want {
			t.Errorf("ChildMatch(%q, %q) = %v, %v; want %v", tc.pattern, tc.path, got, err, tc.want)
		}
	}
}

func TestPatternsList(t *testing.T) {
	tests := []struct {
		patterns    []string
		path        string
		match, kids bool
	}{
		// restic doc: "!" cancels an earlier match.
		{[]string{"x/*", "!foo.go"}, "/t/x/foo.go", false, false},
		{[]string{"x/*", "!foo.go"}, "/t/x/h", true, true},
		{[]string{"x/*", "!foo.go"}, "/t/x", false, true},
		{[]string{"$HOME/*", "!$HOME/Documents"}, "$HOME/Documents", false, false},
		{[]string{"/home/u/*", "!/home/u/Documents", "!/home/u/code", "node_modules", "*~"}, "/home/u/Music", true, true},
		{[]string{"/home/u/*", "!/home/u/Documents", "!/home/u/code", "node_modules", "*~"}, "/home/u/code", false, true},
		{[]string{"/home/u/*", "!/home/u/Documents", "!/home/u/code", "node_modules", "*~"}, "/home/u/code/node_modules", true, true},
		{[]string{"/home/u/*", "!/home/u/Documents", "!/home/u/code", "node_modules", "*~"}, "/home/u/code/a.txt~", true, true},
		{[]string{"!foo"}, "/foo", false, false},
		{[]string{"foo", "!foo", "foo"}, "/foo", true, true},
		{[]string{"*", "!*.go"}, "/a/b.go", false, false},
		{[]string{"/a/b", "!/a/b/c"}, "/a/b/c", false, false},
		{[]string{"/a/b", "!/a/b/c"}, "/a/b/d", true, true},
		{[]string{"/home/user/work"}, "/home", false, true},
		{[]string{"/home/user/work"}, "/var", false, false},
		{[]string{"/home/user/work", "/var/x"}, "/var", false, true},
		{[]string{"*.go"}, "/a", false, true},
		{[]string{"", ""}, "/a", false, false},
		{nil, "/a", false, false},
		{[]string{"!"}, "/a", false, false},
	}
	for _, tc := range tests {
		m, c, err := List(tc.patterns, tc.path)
		if err != nil || m != tc.match || c != tc.kids {
			t.Errorf("List(%q, %q) = %v, %v, %v; want %v, %v", tc.patterns, tc.path, m, c, err, tc.match, tc.kids)
		}
		ps, err := ParsePatterns(tc.patterns)
		if err != nil {
			t.Fatal(err)
		}
		if m2, err := ps.Match(tc.path); err != nil || m2 != tc.match {
			t.Errorf("Patterns.Match(%q, %q) = %v, %v", tc.patterns, tc.path, m2, err)
		}
	}
	var nilList *Patterns
	if m, err := nilList.Match("/x"); m || err != nil || nilList.Len() != 0 {
		t.Fatal("nil Patterns must match nothing")
	}
	ps, _ := ParsePatterns([]string{"a"})
	if _, err := ps.Match(""); !errors.Is(err, ErrBadString) {
		t.Fatalf("empty path: %v", err)
	}
}

func TestInsensitivePatterns(t *testing.T) {
	ps, err := ParseInsensitivePatterns([]string{"TOP", "[T]OP2", "*.JPG", "/Home/User"})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"/t/top":         true,
		"/T/ToP":         true,
		"/x/top2":        true,
		"/x/TOP2":        true,
		"/pics/a.jpg":    true,
		"/pics/A.Jpg":    true,
		"/home/user/x":   true,
		"/HOME/USER":     true,
		"/x/home/user":   false,
		"/t/topx":        false,
		"/ÄRGER/top.txt": false,
	} {
		if got, err := ps.Match(path); err != nil || got != want {
			t.Errorf("iexclude match %q = %v, %v; want %v", path, got, err, want)
		}
	}
	cs, err := ParsePatterns([]string{"TOP"})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := cs.Match("/t/top"); m {
		t.Error("case sensitive list matched different case")
	}
}

// refMatch is a direct statement of restic's pattern semantics, used to
// cross-check the memoised matcher: expand the first "**" into k "*"
// components for every k that fits the whole path (counting each later
// "**" as one component), then slide the expanded pattern over the path.
func refMatch(parts []part, comps []string) bool {
	for i, p := range parts {
		if !p.anyDepth {
			continue
		}
		for k := 0; k <= len(comps)-len(parts)+1; k++ {
			np := append([]part(nil), parts[:i]...)
			for j := 0; j < k; j++ {
				np = append(np, part{s: "*"})
			}
			np = append(np, parts[i+1:]...)
			if refMatch(np, comps) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 || len(parts) > len(comps) {
		return false
	}
	first, last := 0, len(comps)-len(parts)
	if parts[0].s == "/" {
		last = 0
	} else if comps[0] == "/" {
		first = 1
	}
	for off := first; off <= last; off++ {
		ok := true
		for i, p := range parts {
			if !refPart(p, comps[off+i]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// refPart matches one component with filepath.Match only.
func refPart(p part, comp string) bool {
	if p.simple {
		return p.s == comp
	}
	ok, err := filepath.Match(p.s, comp)
	return err == nil && ok
}

// FuzzMatch: no panics; a pattern without metacharacters matches the path
// it spells; the memoised matcher agrees with refMatch; a one-pattern list
// agrees with Pattern.Match.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"foo/**/bar", "/dir1/foo/dir2/bar/file"},
		{"/a/**/b/**/c", "/a/x/y/b/c"},
		{"*.go", "/a/b.go"},
		{"!x/*", "/t/x/h"},
		{"[a-", "/x"},
		{"/", "/"},
		{"**/**/**", "a/b/c/d"},
		{"*.o/x*/*", "/a.o/xy//"},
		{"a/b", "a/b"},
		{`\*x`, "/*x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if len(pattern) > 200 || len(path) > 200 {
			return
		}
		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		if path != "" {
			m, err := p.Match(path)
			if err != nil {
				t.Fatalf("Match(%q, %q): %v", pattern, path, err)
			}
			comps := splitPath(path)
			for _, pt := range p.parts {
				for _, c := range comps {
					if !pt.anyDepth && matchPart(pt, c) != refPart(pt, c) {
						t.Fatalf("part %q on %q: fast path %v, filepath.Match %v", pt.s, c, matchPart(pt, c), refPart(pt, c))
					}
				}
			}
			if p.stars <= 3 && len(comps) <= 12 {
				if ref := refMatch(p.parts, comps); ref != m {
					t.Fatalf("Match(%q, %q) = %v, reference says %v", pattern, path, m, ref)
				}
			}
			if _, err := p.ChildMatch(path); err != nil {
				t.Fatal(err)
			}
			if !p.Negated() {
				ps, err := ParsePatterns([]string{pattern})
				if err != nil {
					t.Fatal(err)
				}
				if lm, err := ps.Match(path); err != nil || lm != m {
					t.Fatalf("list of one %q on %q = %v, pattern says %v", pattern, path, lm, m)
				}
			}
		}
		if !strings.ContainsAny(pattern, `*?[]\`) && !strings.HasPrefix(pattern, "!") {
			lit := filepath.Clean(pattern)
			if m, err := p.Match(lit); err != nil || !m {
				t.Fatalf("literal pattern %q does not match %q", pattern, lit)
			}
		}
	})
}

func BenchmarkPatternsMatch(b *testing.B) {
	ps, err := ParsePatterns([]string{"*.o", "*.pyc", "node_modules", "/home/u/.cache", "/home/u/**/tmp", "foo/**/bar", "!/home/u/keep", "*~", "/var/*/log", ".git"})
	if err != nil {
		b.Fatal(err)
	}
	paths := []string{"/home/u/src/project/internal/filter/pattern.go", "/home/u/src/a/node_modules/x/y.js", "/home/u/keep/z.o", "/var/lib/log/x"}
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range paths {
			if _, err := ps.Match(p); err != nil {
				b.Fatal(err)
			}
		}
	}
}
