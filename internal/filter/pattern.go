// Package filter implements the path filters of the backup command: restic's
// exclude/include patterns (--exclude, --iexclude, --exclude-file, restore's
// --include), per-directory ignore files with .gitignore semantics
// (--exclude-ignore-file), tag files (--exclude-if-present,
// --exclude-caches), the size limit (--exclude-larger-than) and the list
// files of --files-from, --files-from-verbatim and --files-from-raw.
//
// Pattern semantics follow restic 0.14, the reference peer, including its
// quirks (see Pattern).
package filter

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ErrBadString is returned when the path to match is empty.
var ErrBadString = errors.New("filter: path to match is empty")

// ErrInvalidPattern is wrapped by the errors ParsePattern and ParsePatterns
// return for malformed patterns (a bad [...] class or a trailing '\').
var ErrInvalidPattern = errors.New("invalid pattern")

// part is one path component of a pattern.
type part struct {
	s        string
	simple   bool // no wildcard or escape: compare literally
	anyDepth bool // "**": any number of components (restic's double wildcard)
	kind     partKind
	lit      string // the literal of a prefix or suffix part
}

// partKind selects a fast path for common shapes of wildcard parts; all of
// them agree with filepath.Match.
type partKind uint8

const (
	kindGlob   partKind = iota // general: filepath.Match
	kindAny                    // "*"
	kindSuffix                 // "*lit"
	kindPrefix                 // "lit*"
)

func classify(pt *part) {
	if pt.simple || pt.anyDepth {
		return
	}
	s := pt.s
	switch {
	case s == "*":
		pt.kind = kindAny
	case s[0] == '*' && !strings.ContainsAny(s[1:], `\[]*?`):
		pt.kind, pt.lit = kindSuffix, s[1:]
	case s[len(s)-1] == '*' && !strings.ContainsAny(s[:len(s)-1], `\[]*?`):
		pt.kind, pt.lit = kindPrefix, s[:len(s)-1]
	}
}

// Pattern is a parsed restic pattern. Semantics (restic 0.14):
//
//   - The pattern is cleaned (filepath.Clean: a trailing '/' and "." parts
//     go away) and split into components at '/'. Each component is matched
//     against one path component with filepath.Match ('*', '?', '[...]',
//     '\' escapes); a component that is exactly "**" stands for any number
//     of components.
//   - A pattern starting with '/' is anchored at the root: it must match a
//     prefix of the path. Any other pattern may match any run of
//     consecutive components, so "foo" matches "/a/foo/b" and "foo/bar"
//     matches "/x/foo/bar/baz", but "foo" does not match "/a/foobar".
//   - A leading '!' negates the pattern (see Patterns).
//   - Quirks kept from restic: a "**" may only absorb as many components
//     as leave room for one component per later "**" within the whole
//     path, so "/a/**/b/**/c" matches neither "/a/x/y/b/c" nor "/a/b/c"
//     (while "a/**/b/**/c" matches "/r/a/x/y/b/c"); the pattern "/"
//     matches every absolute path; in "[...]" only '^' negates ('!' is a
//     member, unlike in .gitignore); nothing matches the root itself, so
//     "*/tmp" does not match "/tmp".
type Pattern struct {
	original string
	parts    []part
	negated  bool
	abs      bool
	fixed    int // number of parts that are not "**"
	stars    int // number of "**" parts
}

// ParsePattern parses and validates one pattern. The empty pattern is an
// error here; Match treats it as matching everything and ParsePatterns
// skips it, as restic does.
func ParsePattern(pattern string) (Pattern, error) {
	if pattern == "" {
		return Pattern{}, fmt.Errorf("parse pattern: %w: empty", ErrInvalidPattern)
	}
	p := Pattern{original: pattern}
	s := pattern
	if s[0] == '!' {
		p.negated = true
		s = s[1:]
	}
	comps := splitPath(filepath.Clean(s))
	p.parts = make([]part, len(comps))
	for i, c := range comps {
		pt := part{s: c, simple: !strings.ContainsAny(c, `\[]*?`)}
		// An empty part only comes from the pattern "/"; restic takes it as
		// "**" (its internal marker), so "/" matches every absolute path.
		if c == "**" || c == "" {
			pt.anyDepth = true
			p.stars++
		} else {
			p.fixed++
			if !pt.simple {
				// Validate now so matching never fails later.
				if _, err := filepath.Match(c, c); err != nil {
					return Pattern{}, fmt.Errorf("parse pattern %q: %w: %w", pattern, ErrInvalidPattern, err)
				}
			}
		}
		classify(&pt)
		p.parts[i] = pt
	}
	p.abs = p.parts[0].s == "/"
	return p, nil
}

// splitPath splits a slash path into components; an absolute path's first
// component is "/" (restic's marker). Clean paths have no empty component.
func splitPath(p string) []string {
	comps := strings.Split(filepath.ToSlash(p), "/")
	if comps[0] == "" {
		comps[0] = "/"
	}
	return comps
}

// String returns the pattern as it was given (with a leading '!').
func (p Pattern) String() string { return p.original }

// Negated reports whether the pattern started with '!'.
func (p Pattern) Negated() bool { return p.negated }

// Match reports whether path matches p, ignoring negation.
func (p Pattern) Match(path string) (bool, error) {
	if path == "" {
		return false, ErrBadString
	}
	return p.match(splitPath(path)), nil
}

// ChildMatch reports whether a path below path could match p (the test
// restic uses to decide whether to descend for --include). Unanchored
// patterns can always match further down.
func (p Pattern) ChildMatch(path string) (bool, error) {
	if path == "" {
		return false, ErrBadString
	}
	return p.childMatch(splitPath(path)), nil
}

func matchPart(pt part, comp string) bool {
	if pt.simple {
		return pt.s == comp
	}
	// Components never contain '/' except the root marker "/", which no
	// '*' matches.
	switch pt.kind {
	case kindAny:
		return comp != "/"
	case kindSuffix:
		return strings.HasSuffix(comp, pt.lit)
	case kindPrefix:
		return strings.HasPrefix(comp, pt.lit) && !strings.Contains(comp[len(pt.lit):], "/")
	}
	ok, err := filepath.Match(pt.s, comp)
	return err == nil && ok
}

// match reports whether the pattern matches a run of comps: anywhere at or
// after the first non-root component for unanchored patterns, at the start
// for anchored ones.
func (p Pattern) match(comps []string) bool {
	n := len(comps)
	if p.stars == 0 {
		if len(p.parts) > n {
			return false
		}
		lo, hi := 0, n-len(p.parts)
		if p.abs {
			hi = 0
		} else if comps[0] == "/" {
			lo = 1
		}
	outer:
		for off := hi; off >= lo; off-- {
			for i := len(p.parts) - 1; i >= 0; i-- {
				if !matchPart(p.parts[i], comps[off+i]) {
					continue outer
				}
			}
			return true
		}
		return false
	}

	lo, hi := 0, n-1
	if p.abs {
		hi = 0
	} else if comps[0] == "/" {
		lo = 1
	}
	m := &starMatcher{p: p, comps: comps}
	for off := lo; off <= hi; off++ {
		m.reset(off)
		if m.at(0, off, 0) {
			return true
		}
	}
	return false
}

// starMatcher matches a pattern with "**" parts against comps starting at
// a fixed offset, memoising (part index, component index) states.
type starMatcher struct {
	p     Pattern
	comps []string
	off   int
	memo  []uint8 // 0 unknown, 1 false, 2 true; index pi*(len(comps)+1)+ci
}

func (m *starMatcher) reset(off int) {
	m.off = off
	size := (len(m.p.parts) + 1) * (len(m.comps) + 1)
	if cap(m.memo) < size {
		m.memo = make([]uint8, size)
	} else {
		m.memo = m.memo[:size]
		clear(m.memo)
	}
}

// at reports whether parts[pi:] match a run of comps starting at ci; j is
// the number of "**" parts before pi. The result does not depend on j
// beyond (pi, ci), so it is memoised on those.
func (m *starMatcher) at(pi, ci, j int) bool {
	idx := pi*(len(m.comps)+1) + ci
	if v := m.memo[idx]; v != 0 {
		return v == 2
	}
	r := m.eval(pi, ci, j)
	if r {
		m.memo[idx] = 2
	} else {
		m.memo[idx] = 1
	}
	return r
}

func (m *starMatcher) eval(pi, ci, j int) bool {
	parts, n := m.p.parts, len(m.comps)
	if pi == len(parts) {
		// restic: an expanded pattern of length zero never matches.
		return ci > m.off
	}
	pt := parts[pi]
	if !pt.anyDepth {
		return ci < n && matchPart(pt, m.comps[ci]) && m.at(pi+1, ci+1, j)
	}
	// Components absorbed by "**" parts so far: consumed minus fixed parts.
	fixedBefore := pi - j
	used := (ci - m.off) - fixedBefore
	// restic expands the j-th "**" into at most
	// n - fixed - stars + j + 1 components in total with the earlier ones.
	limit := n - m.p.fixed - m.p.stars + j + 1
	for k := 0; used+k <= limit && ci+k <= n; k++ {
		if k > 0 && strings.Contains(m.comps[ci+k-1], "/") {
			break // a '*' never matches the root marker
		}
		if m.at(pi+1, ci+k, j+1) {
			return true
		}
	}
	return false
}

func (p Pattern) childMatch(comps []string) bool {
	if !p.abs {
		return true
	}
	for i, pt := range p.parts {
		if pt.anyDepth {
			if len(comps) >= i {
				comps = comps[:i]
			}
			break
		}
	}
	l := len(comps)
	if len(p.parts) < l {
		l = len(p.parts)
	}
	prefix := Pattern{parts: p.parts[:l], abs: true, fixed: l}
	return prefix.match(comps)
}

// Match reports whether path matches pattern (negation ignored). The empty
// pattern matches everything; an empty path is ErrBadString.
func Match(pattern, path string) (bool, error) {
	if pattern == "" {
		return true, nil
	}
	p, err := ParsePattern(pattern)
	if err != nil {
		return false, err
	}
	return p.Match(path)
}

// ChildMatch reports whether a path below path could match pattern. The
// empty pattern matches everything.
func ChildMatch(pattern, path string) (bool, error) {
	if pattern == "" {
		return true, nil
	}
	p, err := ParsePattern(pattern)
	if err != nil {
		return false, err
	}
	return p.ChildMatch(path)
}

// Patterns is a parsed, validated pattern list, ready to be matched against
// every path of a backup or restore. It is immutable and safe for
// concurrent use.
type Patterns struct {
	list        []Pattern
	hasNegation bool
	ignoreCase  bool
}

// InvalidPatternsError lists every malformed pattern of a list.
type InvalidPatternsError struct {
	Patterns []string
}

func (e *InvalidPatternsError) Error() string {
	return "invalid pattern(s) provided:\n" + strings.Join(e.Patterns, "\n")
}

// Unwrap lets errors.Is find ErrInvalidPattern.
func (e *InvalidPatternsError) Unwrap() error { return ErrInvalidPattern }

// ParsePatterns parses a pattern list (empty patterns are skipped). Every
// malformed pattern is reported in one *InvalidPatternsError.
func ParsePatterns(patterns []string) (*Patterns, error) {
	return parsePatterns(patterns, false)
}

// ParseInsensitivePatterns is ParsePatterns for --iexclude and friends:
// patterns and paths are compared in lower case (strings.ToLower).
func ParseInsensitivePatterns(patterns []string) (*Patterns, error) {
	return parsePatterns(patterns, true)
}

func parsePatterns(patterns []string, fold bool) (*Patterns, error) {
	ps := &Patterns{ignoreCase: fold}
	var bad []string
	for _, s := range patterns {
		if s == "" {
			continue
		}
		if fold {
			s = strings.ToLower(s)
		}
		p, err := ParsePattern(s)
		if err != nil {
			bad = append(bad, s)
			continue
		}
		ps.list = append(ps.list, p)
		ps.hasNegation = ps.hasNegation || p.negated
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("parse patterns: %w", &InvalidPatternsError{Patterns: bad})
	}
	return ps, nil
}

// Len returns the number of patterns (empty ones were dropped).
func (ps *Patterns) Len() int {
	if ps == nil {
		return 0
	}
	return len(ps.list)
}

// Match reports whether path is matched by the list: patterns apply in
// order, a match sets the result, a matching negated ('!') pattern clears
// it again. A nil or empty list matches nothing.
func (ps *Patterns) Match(path string) (bool, error) {
	m, _, err := ps.list2(path, false)
	return m, err
}

// MatchWithChild is Match plus whether a path below path could still be
// matched (restic's include logic: descend into a directory only then).
func (ps *Patterns) MatchWithChild(path string) (matched, childMayMatch bool, err error) {
	return ps.list2(path, true)
}

func (ps *Patterns) list2(path string, withChild bool) (matched, childMayMatch bool, err error) {
	if ps.Len() == 0 {
		return false, false, nil
	}
	if path == "" {
		return false, false, ErrBadString
	}
	if ps.ignoreCase {
		path = strings.ToLower(path)
	}
	comps := splitPath(path)
	for _, p := range ps.list {
		m := p.match(comps)
		if p.negated {
			matched = matched && !m
			childMayMatch = childMayMatch && !m
			continue
		}
		c := true
		if withChild {
			c = p.childMatch(comps)
		}
		matched = matched || m
		childMayMatch = childMayMatch || c
		if matched && childMayMatch && !ps.hasNegation {
			break // nothing later can change the result
		}
	}
	return matched, childMayMatch, nil
}

// List parses patterns and matches path against them: a convenience for
// one-off checks; parse once with ParsePatterns when matching many paths.
func List(patterns []string, path string) (matched, childMayMatch bool, err error) {
	ps, err := ParsePatterns(patterns)
	if err != nil {
		return false, false, err
	}
	return ps.MatchWithChild(path)
}
