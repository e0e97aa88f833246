package filter

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/internal/forget/restictest"
)

// The differential test runs "restic backup --dry-run -vv" with exclude
// options over a small tree and compares the items restic would save with
// a walk that uses this package's filters the way restic's archiver does.

type resticFixture struct {
	repos []*restictest.Repo // clones of one repository, one per worker
	dir   string             // scratch directory
	root  string             // the tree that is backed up
}

var (
	resticOnce sync.Once
	resticFx   *resticFixture
	resticErr  error
	scratchDir string // removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if scratchDir != "" {
		if err := os.RemoveAll(scratchDir); err != nil {
			fmt.Fprintf(os.Stderr, "remove %s: %v\n", scratchDir, err)
		}
	}
	os.Exit(code)
}

func getResticFixture(t *testing.T) *resticFixture {
	t.Helper()
	resticOnce.Do(func() { resticFx, resticErr = buildResticFixture(context.Background()) })
	restictest.SkipOrFail(t, resticErr)
	return resticFx
}

// treeFiles lists the files of the test tree with their sizes.
var treeFiles = map[string]int{
	"a/foo/b/f":             1,
	"foo/g":                 1,
	"foobar/g2":             1,
	"x/h":                   1,
	"x/foo.go":              1,
	"x/$x":                  1,
	"x/sub/s":               1,
	"x/sub/deep/y/b/c":      1,
	"x/sub/deep/y/b/d":      1,
	"top":                   1,
	"TOP2":                  1,
	"Mixed.Case":            1,
	"space dir/file one":    1,
	"cache/data":            1,
	"cache/sub/more":        1,
	"badcache/data":         1,
	"tagged/.nobackup":      0,
	"tagged/keep":           1,
	"tagged/inner/file":     1,
	"big":                   3000,
	"small":                 10,
	"br[ack]et":             1,
	"deep/1/2/3/4/5/6/leaf": 1,
	"main.c":                1,
	"bak~":                  1,
}

func buildResticFixture(ctx context.Context) (*resticFixture, error) {
	bin, err := restictest.Lookup()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cairn-filter-")
	if err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	scratchDir = dir
	root := filepath.Join(dir, "tree")
	for name, size := range treeFiles {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, size), 0o644); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}
	tags := map[string]string{
		"cache/CACHEDIR.TAG":    "Signature: 8a477f597d28d172789f06886806bc55 and more",
		"badcache/CACHEDIR.TAG": "Signature: 8a477f597d28d172789f06886806bc5",
	}
	for name, content := range tags {
		if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(name)), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}
	repo, err := restictest.Init(ctx, bin, filepath.Join(dir, "repo"), "cairn-test")
	if err != nil {
		return nil, err
	}
	fx := &resticFixture{repos: []*restictest.Repo{repo}, dir: dir, root: root}
	// Parallel runs need separate repositories: restic 0.14 stalls for
	// seconds when a lock file of a concurrent command vanishes under it.
	for i := 1; i < 3; i++ {
		c, err := repo.Clone(ctx, filepath.Join(dir, fmt.Sprintf("repo%d", i)))
		if err != nil {
			return nil, err
		}
		fx.repos = append(fx.repos, c)
	}
	return fx, nil
}

var newLine = regexp.MustCompile(`^new\s+(.*), saved in `)

// resticSaves runs one dry-run backup per option list (in parallel, one
// repository clone per worker) and returns, for each, the paths below (and
// including) root that restic would save.
func (fx *resticFixture) resticSaves(t *testing.T, env []string, optsList [][]string) [][]string {
	t.Helper()
	results := make([][]string, len(optsList))
	errs := make([]error, len(optsList))
	var wg sync.WaitGroup
	for w, repo := range fx.repos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(optsList); i += len(fx.repos) {
				results[i], errs[i] = fx.saves(repo, env, optsList[i])
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("options %q: %v", optsList[i], err)
		}
	}
	return results
}

func (fx *resticFixture) saves(repo *restictest.Repo, env, opts []string) ([]string, error) {
	args := append([]string{"backup", "--dry-run", "-vv"}, opts...)
	args = append(args, fx.root)
	stdout, stderr, err := repo.RunCombined(context.Background(), fx.dir, env, args...)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, stderr)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	for sc.Scan() {
		m := newLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		p := strings.TrimSuffix(m[1], "/")
		if p == fx.root || strings.HasPrefix(p, fx.root+"/") {
			out = append(out, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

// walkConfig holds the filters of one backup.
type walkConfig struct {
	excludes  *Patterns
	iexcludes *Patterns
	tags      []TagFile
	maxSize   int64 // < 0: no limit
}

// cairnSaves walks root as restic's archiver does: an item is skipped
// (and not descended into) when any filter rejects it.
func cairnSaves(t *testing.T, root string, cfg walkConfig) []string {
	t.Helper()
	ctx := context.Background()
	tagged := map[string]bool{} // directory+tag name -> contents excluded
	rejected := func(path string, fi fs.FileInfo) bool {
		for _, ps := range []*Patterns{cfg.excludes, cfg.iexcludes} {
			m, err := ps.Match(path)
			if err != nil {
				t.Fatal(err)
			}
			if m {
				return true
			}
		}
		for _, tag := range cfg.tags {
			if !tag.ExcludesChild(filepath.Base(path)) {
				continue
			}
			key := filepath.Dir(path) + "\x00" + tag.String()
			ex, seen := tagged[key]
			if !seen {
				ex, _ = tag.Check(ctx, filepath.Dir(path)) // errors are warnings
				tagged[key] = ex
			}
			if ex {
				return true
			}
		}
		return cfg.maxSize >= 0 && TooLarge(cfg.maxSize, fi)
	}
	var out []string
	var walk func(path string)
	walk = func(path string) {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if rejected(path, fi) {
			return
		}
		out = append(out, path)
		if !fi.IsDir() {
			return
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			walk(filepath.Join(path, e.Name()))
		}
	}
	walk(root)
	sort.Strings(out)
	return out
}

func TestDifferentialExcludes(t *testing.T) {
	fx := getResticFixture(t)
	r := fx.root
	t.Setenv("CAIRN_FILTER_TEST_VAR", "foo")
	excludeFile := filepath.Join(fx.dir, "excludes.txt")
	if err := os.WriteFile(excludeFile, []byte("# comment\n\n  top  \r\n$CAIRN_FILTER_TEST_VAR/g\nx/$$x\n*.go\n#x/h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	iexcludeFile := filepath.Join(fx.dir, "iexcludes.txt")
	if err := os.WriteFile(iexcludeFile, []byte("\xef\xbb\xbfMIXED.case\nTop2\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		excludes  []string
		iexcludes []string
		files     []string // --exclude-file
		ifiles    []string // --iexclude-file
		tags      []string // --exclude-if-present
		caches    bool
		size      string
	}{
		{name: "none"},
		{name: "component", excludes: []string{"foo"}},
		{name: "glob", excludes: []string{"*.go", "*.c", "*~"}},
		{name: "negation", excludes: []string{"x/*", "!foo.go", "!sub"}},
		{name: "negation of deeper", excludes: []string{r + "/*", "!" + r + "/x", "!" + r + "/deep", r + "/x/sub/*", "!" + r + "/x/sub/deep"}},
		{name: "anchored root", excludes: []string{r}},
		{name: "anchored subdir", excludes: []string{r + "/x"}},
		{name: "anchored trailing slash", excludes: []string{r + "/cache/"}},
		{name: "anchored missing", excludes: []string{"/nonexistent"}},
		{name: "star root quirk", excludes: []string{"*" + r}},
		{name: "class never matches the root", excludes: []string{"[^x]" + r}},
		{name: "double star relative", excludes: []string{"x/**/b/**/c"}},
		{name: "double star anchored quirk", excludes: []string{r + "/x/**/b/**/c"}},
		{name: "double star anchored", excludes: []string{r + "/**/b/d", r + "/deep/**/leaf"}},
		{name: "double star short", excludes: []string{"**/s", "a/**"}},
		{name: "two level", excludes: []string{"*/*/g", "sub/deep"}},
		{name: "space and brackets", excludes: []string{"space dir", `br\[ack\]et`}},
		{name: "classes", excludes: []string{"[bf]oo*", "?op", "[!x]"}},
		{name: "cleaned", excludes: []string{"x/./sub/../h", "./small"}},
		{name: "iexclude", iexcludes: []string{"TOP*", "mixed.CASE", "X/SUB"}},
		{name: "exclude file", files: []string{excludeFile}},
		{name: "iexclude file", ifiles: []string{iexcludeFile}},
		{name: "exclude caches", caches: true},
		{name: "exclude if present", tags: []string{".nobackup"}},
		{name: "exclude if present header", tags: []string{"CACHEDIR.TAG:Signature: 8a4"}},
		{name: "exclude if present too long header", tags: []string{"CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55 and more and more"}},
		{name: "exclude if present in subdir", tags: []string{"inner/file"}},
		{name: "size 1k", size: "1k"},
		{name: "size 10", size: "10"},
		{name: "size 9B", size: "9B"},
		{name: "combined", excludes: []string{"deep", "!deep"}, iexcludes: []string{"BIG"}, caches: true, tags: []string{".nobackup"}, size: "5"},
	}
	env := []string{"CAIRN_FILTER_TEST_VAR=foo"}
	optsList := make([][]string, len(cases))
	cfgs := make([]walkConfig, len(cases))
	for i, tc := range cases {
		var opts []string
		cfg := walkConfig{maxSize: -1}
		excl := append([]string(nil), tc.excludes...)
		iexcl := append([]string(nil), tc.iexcludes...)
		for _, p := range tc.excludes {
			opts = append(opts, "--exclude", p)
		}
		for _, p := range tc.iexcludes {
			opts = append(opts, "--iexclude", p)
		}
		for _, f := range tc.files {
			opts = append(opts, "--exclude-file", f)
			l, err := ReadExcludeFile(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			excl = append(excl, l...)
		}
		for _, f := range tc.ifiles {
			opts = append(opts, "--iexclude-file", f)
			l, err := ReadExcludeFile(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			iexcl = append(iexcl, l...)
		}
		for _, s := range tc.tags {
			opts = append(opts, "--exclude-if-present", s)
			tag, err := ParseTagFile(s)
			if err != nil {
				t.Fatal(err)
			}
			cfg.tags = append(cfg.tags, tag)
		}
		if tc.caches {
			opts = append(opts, "--exclude-caches")
			cfg.tags = append(cfg.tags, CacheDirTag)
		}
		if tc.size != "" {
			opts = append(opts, "--exclude-larger-than", tc.size)
			n, err := ParseSize(tc.size)
			if err != nil {
				t.Fatal(err)
			}
			cfg.maxSize = n
		}
		var err error
		if cfg.excludes, err = ParsePatterns(excl); err != nil {
			t.Fatal(err)
		}
		if cfg.iexcludes, err = ParseInsensitivePatterns(iexcl); err != nil {
			t.Fatal(err)
		}
		optsList[i], cfgs[i] = opts, cfg
	}
	wants := fx.resticSaves(t, env, optsList)
	for i, tc := range cases {
		got := cairnSaves(t, fx.root, cfgs[i])
		if strings.Join(got, "\n") != strings.Join(wants[i], "\n") {
			t.Errorf("%s: restic saves:\n  %s\ncairn saves:\n  %s", tc.name, strings.Join(wants[i], "\n  "), strings.Join(got, "\n  "))
		}
	}
}
