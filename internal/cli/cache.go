package cli

import (
	"context"
	"fmt"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/cache"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/ui"
)

func init() {
	repoOpenHooks = append(repoOpenHooks, openCache)
	extraCommands = append(extraCommands, newCacheCommand)
}

// cacheBase returns the cache base directory: --cache-dir, else
// $CAIRN_CACHE_DIR, else the user's cache directory + "/cairn".
func (g *globalOptions) cacheBase() (string, error) {
	if g.CacheDir != "" {
		return g.CacheDir, nil
	}
	return cache.DefaultDir()
}

// openCache puts the local cache in front of the repository's backend,
// unless --no-cache is set (check sets it too: it must never trust the
// cache, H35). A cache that cannot be opened is reported and skipped: it
// never fails a command.
func openCache(_ context.Context, g *globalOptions, r *repo.Repository) error {
	if g.NoCache {
		return nil
	}
	base, err := g.cacheBase()
	if err != nil {
		g.warnf("cairn: not using a cache: %v\n", err)
		return nil
	}
	var logMu sync.Mutex // serializes cache warnings from concurrent loads
	c, err := cache.New(base, r.Config().ID, cache.Options{Logf: func(format string, args ...any) {
		if g.Verbose > 0 {
			logMu.Lock()
			defer logMu.Unlock()
			g.warnf(format, args...)
		}
	}})
	if err != nil {
		g.warnf("cairn: not using a cache: %v\n", err)
		return nil
	}
	var cb *cache.Backend
	r.WrapBackend(func(be backend.Backend) backend.Backend {
		cb = cache.Wrap(be, c)
		return cb
	})
	tp := &treePacks{r: r}
	cb.SetMetadataPacks(tp.has)
	return nil
}

// treePacks answers "does this pack hold tree blobs" from the repository's
// current index, rebuilding its set only when the index changed.
type treePacks struct {
	r *repo.Repository

	mu sync.Mutex // guards idx, blobs, packs
	// idx and blobs identify the index state packs was computed from.
	idx   *index.MasterIndex
	blobs int
	packs core.IDSet
}

func (t *treePacks) has(id core.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.packs.Has(id) {
		return true // pack IDs are content hashes: once a tree pack, always
	}
	mi := t.r.Index()
	n := mi.Count(core.InvalidBlob)
	if mi == t.idx && n == t.blobs {
		return false
	}
	packs := core.NewIDSet()
	mi.Each(func(l index.Location) {
		if l.Type == core.TreeBlob {
			packs.Insert(l.Pack)
		}
	})
	t.idx, t.blobs, t.packs = mi, n, packs
	return packs.Has(id)
}

type cacheOptions struct {
	cleanup bool
	maxAge  int
	noSize  bool
}

// cacheDirJSON is one cache directory in --json output.
type cacheDirJSON struct {
	ID       string    `json:"id"`
	Path     string    `json:"path"`
	LastUsed time.Time `json:"last_used"`
	AgeDays  int       `json:"age_days"`
	Old      bool      `json:"old"`
	Size     *int64    `json:"size,omitempty"`
}

func newCacheCommand(g *globalOptions) *cobra.Command {
	var o cacheOptions
	cmd := &cobra.Command{
		Use:   "cache [flags]",
		Short: "List or clean up local cache directories",
		Long: `List the local cache directories, one per repository, with their size and
when they were last used; --cleanup removes those not used for longer than
--max-age days.

The cache lives in --cache-dir, else $CAIRN_CACHE_DIR, else
$XDG_CACHE_HOME/cairn (~/.cache/cairn). It holds encrypted copies of index
files, snapshot files and packs holding directory trees, and is safe to share
between processes. Do not point it at restic's cache directory: the formats
may differ. Removing it, or files in it, at any time is safe.

The cache command needs no repository.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCache(g, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.cleanup, "cleanup", false, "remove old cache directories")
	f.IntVar(&o.maxAge, "max-age", int(cache.DefaultMaxAge/(24*time.Hour)), "directories not used for this many `days` are old")
	f.BoolVar(&o.noSize, "no-size", false, "do not compute the size of each directory")
	return cmd
}

func runCache(g *globalOptions, o cacheOptions) error {
	if o.maxAge < 0 {
		return fmt.Errorf("cache: --max-age %d: must not be negative", o.maxAge)
	}
	base, err := g.cacheBase()
	if err != nil {
		return err
	}
	maxAge := time.Duration(o.maxAge) * 24 * time.Hour
	if o.maxAge == 0 {
		maxAge = time.Nanosecond // 0 days: everything not used right now
	}
	if o.cleanup {
		removed, err := cache.Cleanup(base, maxAge)
		if g.JSON {
			if jerr := g.printJSON(map[string]any{"removed": toCacheDirJSON(removed, false)}); jerr != nil {
				return jerr
			}
		} else {
			for _, d := range removed {
				g.verbosef(1, "removed %s\n", d.Path)
			}
			g.printf("removed %d old cache directories from %s\n", len(removed), base)
		}
		if err != nil {
			return fmt.Errorf("cache cleanup: %w", err)
		}
		return nil
	}
	dirs, err := cache.ListDirs(base, maxAge, !o.noSize)
	if err != nil {
		return err
	}
	if g.JSON {
		return g.printJSON(toCacheDirJSON(dirs, !o.noSize))
	}
	if len(dirs) == 0 {
		g.printf("no cache directories in %s\n", base)
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
	header := "Repo ID\tLast Used\tOld"
	if !o.noSize {
		header += "\tSize"
	}
	fmt.Fprintln(tw, header)
	fmt.Fprintln(tw, "--------------------------------------------------")
	nOld := 0
	for _, d := range dirs {
		old := ""
		if d.Old {
			old = "yes"
			nOld++
		}
		line := fmt.Sprintf("%s\t%s\t%s", d.ID[:10], ageString(d.LastUsed), old)
		if !o.noSize {
			line += "\t" + ui.Bytes(uint64(d.Size))
		}
		fmt.Fprintln(tw, line)
	}
	fmt.Fprintln(tw, "--------------------------------------------------")
	fmt.Fprintf(tw, "%d cache directories in %s\n", len(dirs), base)
	if err := tw.Flush(); err != nil {
		return err
	}
	if nOld > 0 && !g.Quiet && !g.JSON {
		fmt.Fprintf(g.stdout, "%d old cache directories found, remove them with 'cairn cache --cleanup'\n", nOld)
	}
	return nil
}

func ageDays(t time.Time) int { return int(time.Since(t) / (24 * time.Hour)) }

func ageString(t time.Time) string {
	switch d := ageDays(t); d {
	case 0:
		return "today"
	case 1:
		return "1 day ago"
	default:
		return fmt.Sprintf("%d days ago", d)
	}
}

func toCacheDirJSON(dirs []cache.DirInfo, withSize bool) []cacheDirJSON {
	out := make([]cacheDirJSON, 0, len(dirs))
	for _, d := range dirs {
		j := cacheDirJSON{ID: d.ID, Path: d.Path, LastUsed: d.LastUsed, AgeDays: ageDays(d.LastUsed), Old: d.Old}
		if withSize {
			size := d.Size
			j.Size = &size
		}
		out = append(out, j)
	}
	return out
}
