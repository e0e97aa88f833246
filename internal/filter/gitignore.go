package filter

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// gitRule is one line of an ignore file.
type gitRule struct {
	pattern  string // without '!', trailing '/' and leading '/'
	negated  bool   // '!' prefix: re-include
	dirOnly  bool   // trailing '/': matches directories only
	basename bool   // no '/' inside: matches the last component at any depth
}

// GitignoreRules is one parsed ignore file with .gitignore semantics.
// Patterns are relative to the directory that holds the file.
type GitignoreRules struct {
	rules []gitRule
}

// ParseGitignore parses the contents of an ignore file the way git does:
//
//   - a UTF-8 byte order mark is skipped, lines end at '\n' (a '\r' before
//     it is dropped);
//   - blank lines and lines starting with '#' are ignored ("\#" is a
//     literal '#');
//   - trailing spaces are dropped unless escaped with '\';
//   - a leading '!' re-includes what an earlier pattern excluded ("\!" is a
//     literal '!');
//   - a trailing '/' restricts the pattern to directories;
//   - a pattern with a '/' at the start or in the middle is matched against
//     the path relative to the ignore file's directory (a leading '/' only
//     anchors); one without is matched against the name at any depth;
//   - '*', '?', '[...]' do not match '/'; "**/", "/**" and "/**/" match
//     any number of directories (see wildmatch).
func ParseGitignore(content []byte) *GitignoreRules {
	content = bytes.TrimPrefix(content, []byte("\xef\xbb\xbf"))
	r := &GitignoreRules{}
	for len(content) > 0 {
		var line []byte
		if i := bytes.IndexByte(content, '\n'); i >= 0 {
			line, content = content[:i], content[i+1:]
			line = bytes.TrimSuffix(line, []byte("\r"))
		} else {
			line, content = content, nil
		}
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if rule, ok := parseGitRule(trimTrailingSpaces(string(line))); ok {
			r.rules = append(r.rules, rule)
		}
	}
	return r
}

// trimTrailingSpaces drops trailing unescaped spaces (not tabs), as git.
func trimTrailingSpaces(s string) string {
	lastSpace := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ':
			if lastSpace < 0 {
				lastSpace = i
			}
		case '\\':
			i++
			if i >= len(s) {
				return s
			}
			lastSpace = -1
		default:
			lastSpace = -1
		}
	}
	if lastSpace >= 0 {
		return s[:lastSpace]
	}
	return s
}

func parseGitRule(s string) (gitRule, bool) {
	var r gitRule
	if strings.HasPrefix(s, "!") {
		r.negated = true
		s = s[1:]
	}
	if s == "" {
		return r, false // matches nothing
	}
	if strings.HasSuffix(s, "/") {
		r.dirOnly = true
		s = s[:len(s)-1]
	}
	if !strings.Contains(s, "/") {
		r.basename = true
	} else {
		s = strings.TrimPrefix(s, "/")
	}
	r.pattern = s
	return r, true
}

// Match decides rel, a slash separated path relative to the ignore file's
// directory: decided is false when no pattern matches; otherwise ignored
// is the verdict of the last matching pattern.
func (r *GitignoreRules) Match(rel string, isDir bool) (ignored, decided bool) {
	if r == nil || rel == "" {
		return false, false
	}
	base := rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		base = rel[i+1:]
	}
	for i := len(r.rules) - 1; i >= 0; i-- {
		rule := r.rules[i]
		if rule.dirOnly && !isDir {
			continue
		}
		var m bool
		if rule.basename {
			m = wildmatch(rule.pattern, base, false)
		} else {
			m = wildmatch(rule.pattern, rel, true)
		}
		if m {
			return !rule.negated, true
		}
	}
	return false, false
}

// Len returns the number of effective patterns.
func (r *GitignoreRules) Len() int {
	if r == nil {
		return 0
	}
	return len(r.rules)
}

// maxIgnoreFileSize bounds what one ignore file may hold.
const maxIgnoreFileSize = 16 << 20

// IgnoreFiles applies per-directory ignore files (e.g. ".gitignore" for
// --exclude-ignore-file .gitignore) while a tree is walked. The walker calls
// EnterDir for every directory before asking about its entries; rules of
// a directory apply to everything below it, deeper files override
// shallower ones, and nothing below an ignored directory can be
// re-included (git's rules). A directory entered without any entered
// ancestor starts a new root. IgnoreFiles is safe for concurrent use.
type IgnoreFiles struct {
	name string

	mu   sync.RWMutex          // guards dirs
	dirs map[string]*ignoreDir // entered directories by clean path
}

// ignoreDir is an entered directory; immutable after EnterDir.
type ignoreDir struct {
	path    string
	parent  *ignoreDir
	rules   *GitignoreRules // nil without an ignore file
	ignored bool            // the directory itself is ignored
}

// NewIgnoreFiles returns an empty set for ignore files called name.
func NewIgnoreFiles(name string) (*IgnoreFiles, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/`+string(filepath.Separator)) {
		return nil, fmt.Errorf("ignore file name %q: must be a plain file name", name)
	}
	return &IgnoreFiles{name: name, dirs: make(map[string]*ignoreDir)}, nil
}

// Name returns the ignore file name.
func (f *IgnoreFiles) Name() string { return f.name }

// EnterDir registers dir, whose entries are names, and loads its ignore
// file when names contains it. An ignore file that is not a regular file
// (a directory, or a symlink, which git does not follow either) is
// skipped. It returns an error when the file cannot be read; dir is then
// registered without rules.
func (f *IgnoreFiles) EnterDir(ctx context.Context, dir string, names []string) error {
	dir = filepath.Clean(dir)
	d := &ignoreDir{path: dir}
	if up := filepath.Dir(dir); up != dir {
		d.parent, d.ignored = f.lookup(dir, true)
	}
	var err error
	for _, n := range names {
		if n == f.name {
			d.rules, err = loadIgnoreFile(ctx, filepath.Join(dir, n))
			break
		}
	}
	f.mu.Lock()
	f.dirs[dir] = d
	f.mu.Unlock()
	return err
}

func loadIgnoreFile(ctx context.Context, name string) (*GitignoreRules, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load ignore file %s: %w", name, err)
	}
	fi, err := os.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("load ignore file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil
	}
	if fi.Size() > maxIgnoreFileSize {
		return nil, fmt.Errorf("load ignore file %s: %d bytes, more than %d", name, fi.Size(), maxIgnoreFileSize)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("load ignore file: %w", err)
	}
	return ParseGitignore(data), nil
}

// LeaveDir forgets dir once the walk is done with it and everything below
// it, to bound memory. Directories already entered below it keep working.
func (f *IgnoreFiles) LeaveDir(dir string) {
	f.mu.Lock()
	delete(f.dirs, filepath.Clean(dir))
	f.mu.Unlock()
}

// Ignored reports whether path is ignored; isDir says whether it is a
// directory. Rules come from the nearest entered ancestor and its entered
// ancestors; a path with no entered ancestor is never ignored.
func (f *IgnoreFiles) Ignored(path string, isDir bool) bool {
	_, ignored := f.lookup(filepath.Clean(path), isDir)
	return ignored
}

// lookup finds the nearest entered ancestor of path (a clean path) and
// decides path: ignored when that ancestor is, when a directory between
// them is, or by the rules.
func (f *IgnoreFiles) lookup(path string, isDir bool) (*ignoreDir, bool) {
	var d *ignoreDir
	var between []string // directories between d and path, nearest first
	f.mu.RLock()
	for p := filepath.Dir(path); ; p = filepath.Dir(p) {
		if d = f.dirs[p]; d != nil {
			break
		}
		if up := filepath.Dir(p); up == p {
			break
		}
		between = append(between, p)
	}
	f.mu.RUnlock()
	if d == nil {
		return nil, false
	}
	if d.ignored {
		return d, true
	}
	for i := len(between) - 1; i >= 0; i-- {
		if decide(d, between[i], true) {
			return d, true
		}
	}
	return d, decide(d, path, isDir)
}

// decide applies the rules of d and its ancestors, deepest first, to path
// (below d). The first file with a matching pattern decides.
func decide(d *ignoreDir, path string, isDir bool) bool {
	for lvl := d; lvl != nil; lvl = lvl.parent {
		if lvl.rules == nil {
			continue
		}
		rel, ok := relSlash(lvl.path, path)
		if !ok {
			continue
		}
		if ignored, decided := lvl.rules.Match(rel, isDir); decided {
			return ignored
		}
	}
	return false
}

// relSlash returns path relative to dir with '/' separators, if path is
// strictly below dir.
func relSlash(dir, path string) (string, bool) {
	if dir == "." {
		if path == "." || filepath.IsAbs(path) || path == ".." || strings.HasPrefix(path, ".."+string(filepath.Separator)) {
			return "", false
		}
		return filepath.ToSlash(path), true
	}
	prefix := dir
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	if len(path) <= len(prefix) || !strings.HasPrefix(path, prefix) {
		return "", false
	}
	return filepath.ToSlash(path[len(prefix):]), true
}
