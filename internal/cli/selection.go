package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/spf13/pflag"

	"github.com/cairn-backup/cairn/internal/archiver"
	"github.com/cairn-backup/cairn/internal/filter"
	"github.com/cairn-backup/cairn/internal/restorer"
)

// selectionOptions are backup's file selection flags, with restic's
// semantics.
type selectionOptions struct {
	excludes         []string
	iexcludes        []string
	excludeFiles     []string
	iexcludeFiles    []string
	excludeCaches    bool
	excludeIfPresent []string
	excludeLarger    string
	ignoreFiles      []string
	ignore           multiHook // set by dirHook; consulted by the select function
}

func addSelectionFlags(f *pflag.FlagSet, o *selectionOptions) {
	f.StringArrayVarP(&o.excludes, "exclude", "e", nil, "exclude files matching `pattern` (repeatable)")
	f.StringArrayVar(&o.iexcludes, "iexclude", nil, "like --exclude, case-insensitive")
	f.StringArrayVar(&o.excludeFiles, "exclude-file", nil, "read exclude patterns from `file` (repeatable)")
	f.StringArrayVar(&o.iexcludeFiles, "iexclude-file", nil, "like --exclude-file, case-insensitive")
	f.BoolVar(&o.excludeCaches, "exclude-caches", false, "exclude the contents of directories holding a valid CACHEDIR.TAG")
	f.StringArrayVar(&o.excludeIfPresent, "exclude-if-present", nil, "exclude the contents of directories holding `filename[:header]` (repeatable)")
	f.StringVar(&o.excludeLarger, "exclude-larger-than", "", "exclude files larger than `size` (k, m, g, t suffixes)")
	f.StringArrayVar(&o.ignoreFiles, "exclude-ignore-file", nil, "honour per-directory ignore files called `name`, with .gitignore semantics (repeatable)")
}

func (o *selectionOptions) patterns() (cs, ci []string, err error) {
	cs = append(cs, o.excludes...)
	ci = append(ci, o.iexcludes...)
	for _, f := range o.excludeFiles {
		p, err := filter.ReadExcludeFile(context.Background(), f)
		if err != nil {
			return nil, nil, err
		}
		cs = append(cs, p...)
	}
	for _, f := range o.iexcludeFiles {
		p, err := filter.ReadExcludeFile(context.Background(), f)
		if err != nil {
			return nil, nil, err
		}
		ci = append(ci, p...)
	}
	return cs, ci, nil
}

func (o *selectionOptions) build() (archiver.SelectFunc, error) {
	cs, ci, err := o.patterns()
	if err != nil {
		return nil, err
	}
	exc, err := filter.ParsePatterns(cs)
	if err != nil {
		return nil, err
	}
	iexc, err := filter.ParseInsensitivePatterns(ci)
	if err != nil {
		return nil, err
	}
	var tags []filter.TagFile
	if o.excludeCaches {
		tags = append(tags, filter.CacheDirTag)
	}
	for _, spec := range o.excludeIfPresent {
		t, err := filter.ParseTagFile(spec)
		if err != nil {
			return nil, err
		}
		tags = append(tags, t)
	}
	var limit int64 = -1
	if o.excludeLarger != "" {
		if limit, err = filter.ParseSize(o.excludeLarger); err != nil {
			return nil, err
		}
	}
	if exc.Len() == 0 && iexc.Len() == 0 && len(tags) == 0 && limit < 0 && len(o.ignoreFiles) == 0 {
		return nil, nil
	}
	var tagged sync.Map // dir -> *TagFile that excludes its contents (or nil)
	return func(path string, fi os.FileInfo) bool {
		abs, err := filepath.Abs(path)
		if err != nil {
			abs = path
		}
		if m, _ := exc.Match(abs); m {
			return false
		}
		if m, _ := iexc.Match(abs); m {
			return false
		}
		if limit >= 0 && filter.TooLarge(limit, fi) {
			return false
		}
		if o.ignore != nil && o.ignore.ignored(path, fi.IsDir()) {
			return false
		}
		if len(tags) > 0 {
			dir := filepath.Dir(path)
			v, ok := tagged.Load(dir)
			if !ok {
				var hit *filter.TagFile
				for i := range tags {
					if found, err := tags[i].Check(context.Background(), dir); err == nil && found {
						hit = &tags[i]
						break
					}
				}
				v, _ = tagged.LoadOrStore(dir, hit)
			}
			if t := v.(*filter.TagFile); t != nil && t.ExcludesChild(filepath.Base(path)) {
				return false
			}
		}
		return true
	}, nil
}

func (o *selectionOptions) excludePatterns() []string {
	cs, ci, err := o.patterns()
	if err != nil {
		return nil
	}
	return append(cs, ci...)
}

// buildRestoreSelect applies --include/--exclude (and the case-insensitive
// forms) to snapshot paths, as restic's restore does.
func buildRestoreSelect(o restoreOptions) (restorer.SelectFunc, error) {
	exc, err := filter.ParsePatterns(o.exclude)
	if err != nil {
		return nil, err
	}
	iexc, err := filter.ParseInsensitivePatterns(o.iexclude)
	if err != nil {
		return nil, err
	}
	inc, err := filter.ParsePatterns(o.include)
	if err != nil {
		return nil, err
	}
	iinc, err := filter.ParseInsensitivePatterns(o.iinclude)
	if err != nil {
		return nil, err
	}
	if exc.Len()+iexc.Len() > 0 && inc.Len()+iinc.Len() > 0 {
		return nil, fmt.Errorf("--exclude and --include cannot be combined")
	}
	if exc.Len()+iexc.Len()+inc.Len()+iinc.Len() == 0 {
		return nil, nil
	}
	return func(item string, isDir bool) (bool, bool) {
		if exc.Len()+iexc.Len() > 0 {
			m1, _ := exc.Match(item)
			m2, _ := iexc.Match(item)
			if m1 || m2 {
				return false, false
			}
			return true, true
		}
		m1, c1, _ := inc.MatchWithChild(item)
		m2, c2, _ := iinc.MatchWithChild(item)
		return m1 || m2, c1 || c2 || m1 || m2
	}, nil
}

// dirHook returns the per-directory ignore-file handler, if any.
func (o *selectionOptions) dirHook() (archiver.DirHook, error) {
	if len(o.ignoreFiles) == 0 {
		return nil, nil
	}
	var hooks multiHook
	for _, name := range o.ignoreFiles {
		f, err := filter.NewIgnoreFiles(name)
		if err != nil {
			return nil, err
		}
		hooks = append(hooks, f)
	}
	o.ignore = hooks
	return hooks, nil
}

type multiHook []*filter.IgnoreFiles

func (m multiHook) EnterDir(ctx context.Context, dir string, names []string) error {
	var first error
	for _, f := range m {
		if err := f.EnterDir(ctx, dir, names); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (m multiHook) LeaveDir(dir string) {
	for _, f := range m {
		f.LeaveDir(dir)
	}
}

func (m multiHook) ignored(path string, isDir bool) bool {
	for _, f := range m {
		if f.Ignored(path, isDir) {
			return true
		}
	}
	return false
}
