package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/filter"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

func init() { extraCommands = append(extraCommands, newFindCommand) }

type findOptions struct {
	oldest, newest string
	snapshots      []string
	blobID         bool
	treeID         bool
	packID         bool
	showPackID     bool
	ignoreCase     bool
	long           bool
	filter         snapshotFilterOptions
}

func newFindCommand(g *globalOptions) *cobra.Command {
	var o findOptions
	cmd := &cobra.Command{
		Use:   "find [flags] PATTERN...",
		Short: "Find files or directories (or blobs, trees, packs) in snapshots",
		Long: `Search the snapshots for entries whose path matches one of the PATTERNs
(the exclude pattern syntax: "*.go", "/home/*/notes", "**/cache"). A
directory that matches is listed and searched further.

With --blob, --tree or --pack the PATTERNs are IDs instead (full or a
prefix): --blob finds the files holding a data blob, --tree the directories
whose tree it is, --pack the files holding any blob stored in the pack.

--oldest and --newest restrict matches by modification time; they accept
"2006-01-02", "2006-01-02 15:04[:05[ -0700|MST]]", "02.01.2006[ 15:04[:05]]"
and RFC 3339. Without --snapshot every snapshot matching --host/--tag/--path
is searched. --json prints restic's find --json document.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFind(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.oldest, "oldest", "O", "", "oldest modification `time` to match")
	f.StringVarP(&o.newest, "newest", "N", "", "newest modification `time` to match")
	f.StringArrayVarP(&o.snapshots, "snapshot", "s", nil, "snapshot `id` to search in (repeatable)")
	f.BoolVar(&o.blobID, "blob", false, "the patterns are data blob IDs")
	f.BoolVar(&o.treeID, "tree", false, "the patterns are tree IDs")
	f.BoolVar(&o.packID, "pack", false, "the patterns are pack IDs")
	f.BoolVar(&o.showPackID, "show-pack-id", false, "print the packs holding the blobs or trees found (with --blob, --tree or --pack)")
	f.BoolVarP(&o.ignoreCase, "ignore-case", "i", false, "ignore case in patterns")
	f.BoolVarP(&o.long, "long", "l", false, "long listing (mode, owner, size, time)")
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

// findTimeFormats are the layouts --oldest/--newest accept (restic's, plus
// RFC 3339).
var findTimeFormats = []string{
	"2006-01-02",
	"2006-01-02 15:04",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05 MST",
	"02.01.2006",
	"02.01.2006 15:04",
	"02.01.2006 15:04:05",
	"02.01.2006 15:04:05 -0700",
	"02.01.2006 15:04:05 MST",
	"Mon Jan 2 15:04:05 -0700 MST 2006",
	time.RFC3339Nano,
}

// parseFindTime parses s in the local time zone.
func parseFindTime(s string) (time.Time, error) {
	for _, layout := range findTimeFormats {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unable to parse time %q", s)
}

// findNodeJSON is one match in restic's find --json output: the node's
// fields without name, inode, xattrs, device, content and subtree, headed
// by its path and permission string.
type findNodeJSON struct {
	Path        string      `json:"path,omitempty"`
	Permissions string      `json:"permissions,omitempty"`
	Type        string      `json:"type"`
	Mode        os.FileMode `json:"mode,omitempty"`
	ModTime     time.Time   `json:"mtime"`
	AccessTime  time.Time   `json:"atime"`
	ChangeTime  time.Time   `json:"ctime"`
	UID         uint32      `json:"uid"`
	GID         uint32      `json:"gid"`
	User        string      `json:"user,omitempty"`
	Group       string      `json:"group,omitempty"`
	DeviceID    uint64      `json:"device_id,omitempty"`
	Size        uint64      `json:"size,omitempty"`
	Links       uint64      `json:"links,omitempty"`
	LinkTarget  string      `json:"linktarget,omitempty"`
	Error       string      `json:"error,omitempty"`
}

// findObjectJSON is one --blob/--tree/--pack hit in restic's find --json.
type findObjectJSON struct {
	ObjectType string    `json:"object_type"`
	ID         string    `json:"id"`
	Path       string    `json:"path"`
	ParentTree string    `json:"parent_tree,omitempty"`
	SnapshotID string    `json:"snapshot"`
	Time       time.Time `json:"time"`
}

// findOutput writes matches in restic's text or JSON shape. The JSON
// document is streamed: for paths, [{"matches":[...],"hits":n,"snapshot":id},...];
// for objects a flat list.
type findOutput struct {
	w     io.Writer
	g     *globalOptions
	json  bool
	long  bool
	inuse bool // "[" written
	cur   *snapshot.Snapshot
	hits  int
	err   error // first write error
}

func (o *findOutput) write(s string) {
	if o.err == nil {
		_, o.err = io.WriteString(o.w, s)
	}
}

func (o *findOutput) pathMatch(sn *snapshot.Snapshot, p string, n *tree.Node) {
	if !o.json {
		if o.cur != sn {
			if o.cur != nil {
				o.g.printf("\n")
			}
			o.cur = sn
			o.g.printf("Found matching entries in snapshot %s from %s\n", sn.ID().Str(), sn.Time.Local().Format("2006-01-02 15:04:05"))
		}
		o.write(formatFindNode(p, n, o.long) + "\n")
		return
	}
	b, err := json.Marshal(findNodeJSON{Path: p, Permissions: n.Mode.String(), Type: string(n.Type), Mode: n.Mode,
		ModTime: n.ModTime, AccessTime: n.AccessTime, ChangeTime: n.ChangeTime, UID: n.UID, GID: n.GID,
		User: n.User, Group: n.Group, DeviceID: n.DeviceID, Size: n.Size, Links: n.Links, LinkTarget: n.LinkTarget, Error: n.Error})
	if err != nil {
		o.g.warnf("encode match %s: %v\n", p, err)
		return
	}
	if !o.inuse {
		o.write("[")
		o.inuse = true
	}
	if o.cur != sn {
		if o.cur != nil {
			o.write(fmt.Sprintf("],\"hits\":%d,\"snapshot\":%q},", o.hits, o.cur.ID().String()))
		}
		o.write(`{"matches":[`)
		o.cur = sn
		o.hits = 0
	}
	if o.hits > 0 {
		o.write(",")
	}
	o.write(string(b))
	o.hits++
}

func (o *findOutput) object(sn *snapshot.Snapshot, kind string, id core.ID, p string, parent *core.ID) {
	if !o.json {
		o.write(fmt.Sprintf("Found %s %s\n", kind, id))
		if kind == "blob" {
			o.write(fmt.Sprintf(" ... in file %s\n", p))
			o.write(fmt.Sprintf("     (tree %s)\n", parent))
		} else {
			o.write(fmt.Sprintf(" ... path %s\n", p))
		}
		o.write(fmt.Sprintf(" ... in snapshot %s (%s)\n", sn.ID().Str(), sn.Time.Local().Format("2006-01-02 15:04:05")))
		return
	}
	j := findObjectJSON{ObjectType: kind, ID: id.String(), Path: p, SnapshotID: sn.ID().String(), Time: sn.Time}
	if parent != nil {
		j.ParentTree = parent.String()
	}
	b, err := json.Marshal(j)
	if err != nil {
		o.g.warnf("encode match %s: %v\n", p, err)
		return
	}
	if !o.inuse {
		o.write("[")
		o.inuse = true
	}
	if o.hits > 0 {
		o.write(",")
	}
	o.write(string(b))
	o.hits++
}

func (o *findOutput) finish(pathMode bool) error {
	if o.json {
		if pathMode && o.cur != nil {
			o.write(fmt.Sprintf("],\"hits\":%d,\"snapshot\":%q}", o.hits, o.cur.ID().String()))
		}
		if o.inuse {
			o.write("]\n")
		} else {
			o.write("[]\n")
		}
	}
	return o.err
}

// formatFindNode is restic's find line: the path, or with long the mode,
// owner, size and time too.
func formatFindNode(p string, n *tree.Node, long bool) string {
	if !long {
		return p
	}
	var mode os.FileMode
	target := ""
	switch n.Type {
	case tree.NodeDir:
		mode = os.ModeDir
	case tree.NodeSymlink:
		mode = os.ModeSymlink
		target = " -> " + n.LinkTarget
	case tree.NodeDev:
		mode = os.ModeDevice
	case tree.NodeCharDev:
		mode = os.ModeDevice | os.ModeCharDevice
	case tree.NodeFifo:
		mode = os.ModeNamedPipe
	case tree.NodeSocket:
		mode = os.ModeSocket
	}
	return fmt.Sprintf("%s %5d %5d %6d %s %s%s", mode|n.Mode, n.UID, n.GID, n.Size,
		n.ModTime.Local().Format("2006-01-02 15:04:05"), p, target)
}

// finder holds one find run's state; used by one goroutine.
type finder struct {
	g   *globalOptions
	r   *repo.Repository
	out *findOutput

	// path mode
	patterns       []filter.Pattern
	matchAll       bool // an empty pattern was given
	ignoreCase     bool
	oldest, newest time.Time

	// ID mode: lower-case hex prefixes (or full IDs)
	blobPrefixes []string
	treePrefixes []string
	found        core.BlobSet // objects reported (for --show-pack-id)

	loadErrs int // trees that could not be loaded
}

// parseIDPatterns checks that every pattern is a hex ID prefix.
func parseIDPatterns(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		a = strings.ToLower(a)
		if a == "" || len(a) > 2*core.IDSize {
			return nil, fmt.Errorf("invalid ID %q", a)
		}
		s := a
		if len(s)%2 == 1 {
			s += "0"
		}
		if _, err := hex.DecodeString(s); err != nil {
			return nil, fmt.Errorf("invalid ID %q: not hexadecimal", a)
		}
		out = append(out, a)
	}
	return out, nil
}

func hasIDPrefix(id core.ID, prefixes []string) bool {
	s := id.String()
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func runFind(ctx context.Context, g *globalOptions, o findOptions, args []string) error {
	kinds := 0
	for _, b := range []bool{o.blobID, o.treeID, o.packID} {
		if b {
			kinds++
		}
	}
	if kinds > 1 {
		return errors.New("find: only one of --blob, --tree and --pack may be given")
	}
	f := &finder{g: g, ignoreCase: o.ignoreCase, found: core.NewBlobSet()}
	var err error
	if o.oldest != "" {
		if f.oldest, err = parseFindTime(o.oldest); err != nil {
			return fmt.Errorf("find --oldest: %w", err)
		}
	}
	if o.newest != "" {
		if f.newest, err = parseFindTime(o.newest); err != nil {
			return fmt.Errorf("find --newest: %w", err)
		}
	}
	idMode := kinds == 1
	if !idMode {
		for _, a := range args {
			if o.ignoreCase {
				a = strings.ToLower(a)
			}
			if a == "" {
				f.matchAll = true
				continue
			}
			p, err := filter.ParsePattern(a)
			if err != nil {
				return fmt.Errorf("find: %w", err)
			}
			f.patterns = append(f.patterns, p)
		}
	} else {
		ids, err := parseIDPatterns(args)
		if err != nil {
			return fmt.Errorf("find: %w", err)
		}
		switch {
		case o.blobID:
			f.blobPrefixes = ids
		case o.treeID:
			f.treePrefixes = ids
		}
	}

	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	f.r = r
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "find", true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	if o.packID {
		ids, err := parseIDPatterns(args)
		if err != nil {
			return fmt.Errorf("find: %w", err)
		}
		if f.blobPrefixes, err = f.packsToBlobs(ctx, ids); err != nil {
			return err
		}
	}
	list, err := g.loadSnapshots(ctx, r, o.filter.filter(), o.snapshots)
	if err != nil {
		return err
	}
	if len(o.snapshots) == 0 {
		snapshot.SortByTime(list)
	}
	f.out = &findOutput{w: g.stdout, g: g, json: g.JSON, long: o.long}
	for _, sn := range list {
		if idMode {
			err = f.findIDs(ctx, sn)
		} else {
			err = f.findPaths(ctx, sn)
		}
		if err != nil {
			return err
		}
	}
	if err := f.out.finish(!idMode); err != nil {
		return fmt.Errorf("find: write output: %w", err)
	}
	if o.showPackID && idMode && !g.JSON {
		f.printPacks()
	}
	if f.loadErrs > 0 {
		return fmt.Errorf("find: %d trees could not be loaded; the search is incomplete", f.loadErrs)
	}
	return nil
}

// walkFind visits the entries below tree id depth first in name order;
// fn returns whether to descend into a directory. A tree that cannot be
// loaded is reported and skipped.
func (f *finder) walkFind(ctx context.Context, sn *snapshot.Snapshot, id core.ID, prefix string, fn func(p string, parent core.ID, n *tree.Node) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := loadTreeByID(ctx, f.r, id)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.loadErrs++
		f.g.warnf("unable to load tree %s\n ... which belongs to snapshot %s: %v\n", id, sn.ID(), err)
		return nil
	}
	for _, n := range t.Nodes {
		p := path.Join(prefix, n.Name)
		if fn(p, id, n) && n.Type == tree.NodeDir && n.Subtree != nil {
			if err := f.walkFind(ctx, sn, *n.Subtree, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *finder) findPaths(ctx context.Context, sn *snapshot.Snapshot) error {
	return f.walkFind(ctx, sn, *sn.Tree, "/", func(p string, _ core.ID, n *tree.Node) bool {
		norm := p
		if f.ignoreCase {
			norm = strings.ToLower(p)
		}
		found := f.matchAll
		for i := 0; !found && i < len(f.patterns); i++ {
			m, _ := f.patterns[i].Match(norm)
			found = m
		}
		descend := false
		if n.Type == tree.NodeDir {
			descend = f.matchAll
			for i := 0; !descend && i < len(f.patterns); i++ {
				m, _ := f.patterns[i].ChildMatch(norm)
				descend = m
			}
		}
		if !found {
			return descend
		}
		if !f.oldest.IsZero() && n.ModTime.Before(f.oldest) {
			return descend
		}
		if !f.newest.IsZero() && n.ModTime.After(f.newest) {
			return descend
		}
		f.out.pathMatch(sn, p, n)
		return true
	})
}

func (f *finder) findIDs(ctx context.Context, sn *snapshot.Snapshot) error {
	return f.walkFind(ctx, sn, *sn.Tree, "/", func(p string, parent core.ID, n *tree.Node) bool {
		if n.Type == tree.NodeDir && n.Subtree != nil && len(f.treePrefixes) > 0 && hasIDPrefix(*n.Subtree, f.treePrefixes) {
			f.out.object(sn, "tree", *n.Subtree, p, nil)
			f.found.Insert(core.BlobHandle{Type: core.TreeBlob, ID: *n.Subtree})
		}
		if n.Type == tree.NodeFile && len(f.blobPrefixes) > 0 {
			for _, id := range n.Content {
				if hasIDPrefix(id, f.blobPrefixes) {
					f.out.object(sn, "blob", id, p, &parent)
					f.found.Insert(core.BlobHandle{Type: core.DataBlob, ID: id})
				}
			}
		}
		return true
	})
}

// packsToBlobs resolves pack ID prefixes to the full IDs of the blobs in
// those packs, reading the pack headers (or, for packs missing from the
// backend, the index).
func (f *finder) packsToBlobs(ctx context.Context, prefixes []string) ([]string, error) {
	want := make(map[string]bool, len(prefixes)) // prefix -> found
	for _, p := range prefixes {
		want[p] = false
	}
	blobs := make(map[string]struct{})
	err := f.r.List(ctx, core.PackFile, func(id core.ID, size int64) error {
		s := id.String()
		hit := false
		for p := range want {
			if strings.HasPrefix(s, p) {
				want[p] = true
				hit = true
			}
		}
		if !hit {
			return nil
		}
		bl, err := f.r.LoadPackHeader(ctx, id, size)
		if err != nil {
			return fmt.Errorf("find --pack: %w", err)
		}
		for _, b := range bl {
			blobs[b.ID.String()] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find --pack: list packs: %w", err)
	}
	var missing []string
	for p, ok := range want {
		if !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		// packs missing from the backend may still be in the index
		fromIndex := map[string]bool{}
		f.r.Index().Each(func(l index.Location) {
			s := l.Pack.String()
			for _, p := range missing {
				if strings.HasPrefix(s, p) {
					fromIndex[p] = true
					blobs[l.ID.String()] = struct{}{}
				}
			}
		})
		var still []string
		for _, p := range missing {
			if !fromIndex[p] {
				still = append(still, p)
			}
		}
		if len(fromIndex) > 0 {
			f.g.warnf("some pack files are missing from the repository, getting their blobs from the repository index\n")
		}
		if len(still) > 0 {
			sort.Strings(still)
			return nil, fmt.Errorf("find: unable to find pack(s): %v: %w", still, backend.ErrNotExist)
		}
	}
	out := make([]string, 0, len(blobs))
	for b := range blobs {
		out = append(out, b)
	}
	sort.Strings(out)
	return out, nil
}

// printPacks prints the pack of every object found (--show-pack-id).
func (f *finder) printPacks() {
	hs := make([]core.BlobHandle, 0, len(f.found))
	for h := range f.found {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].ID.String() < hs[j].ID.String() })
	for _, h := range hs {
		l, ok := f.r.Index().Lookup(h)
		if !ok {
			fmt.Fprintf(f.g.stdout, "Object %s not found in the index\n", h.ID.Str())
			continue
		}
		fmt.Fprintf(f.g.stdout, "Object belongs to pack %s\n ... Pack %s: <Blob (%v) %s, offset %d, length %d, uncompressed length %d>\n",
			l.Pack, l.Pack.Str(), h.Type, h.ID.Str(), l.Offset, l.Length, l.UncompressedLength)
	}
}
