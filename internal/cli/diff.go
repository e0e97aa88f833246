package cli

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"sort"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

func init() { extraCommands = append(extraCommands, newDiffCommand) }

type diffOptions struct {
	metadata bool
}

func newDiffCommand(g *globalOptions) *cobra.Command {
	var o diffOptions
	cmd := &cobra.Command{
		Use:   "diff [flags] SNAPSHOT1 SNAPSHOT2",
		Short: "Show differences between two snapshots",
		Long: `Show what changed from SNAPSHOT1 to SNAPSHOT2. Each line starts with what
happened to the path:

  +  the item was added
  -  the item was removed
  U  the metadata (mode, times, owner, ...) changed (only with --metadata)
  M  the file's content changed
  T  the type changed (e.g. a file became a symlink)

Directories end in "/". A statistics block follows: files, directories and
other entries added and removed, and the data and tree blobs (and their
plaintext bytes) only the first or only the second snapshot uses.

With --json every change is a {"message_type":"change"} line and the
statistics a final {"message_type":"statistics"} line, as restic prints them.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd.Context(), g, o, args)
		},
	}
	cmd.Flags().BoolVar(&o.metadata, "metadata", false, "also report metadata changes (U)")
	return cmd
}

// diffStat counts one side of a diff (restic's DiffStat).
type diffStat struct {
	Files     int    `json:"files"`
	Dirs      int    `json:"dirs"`
	Others    int    `json:"others"`
	DataBlobs int    `json:"data_blobs"`
	TreeBlobs int    `json:"tree_blobs"`
	Bytes     uint64 `json:"bytes"`
}

func (s *diffStat) addNode(n *tree.Node) {
	switch n.Type {
	case tree.NodeFile:
		s.Files++
	case tree.NodeDir:
		s.Dirs++
	default:
		s.Others++
	}
}

// diffStatsJSON is restic's diff --json statistics message.
type diffStatsJSON struct {
	MessageType    string   `json:"message_type"` // "statistics"
	SourceSnapshot string   `json:"source_snapshot"`
	TargetSnapshot string   `json:"target_snapshot"`
	ChangedFiles   int      `json:"changed_files"`
	Added          diffStat `json:"added"`
	Removed        diffStat `json:"removed"`
}

// diffChangeJSON is restic's diff --json change message.
type diffChangeJSON struct {
	MessageType string `json:"message_type"` // "change"
	Path        string `json:"path"`
	Modifier    string `json:"modifier"`
}

// differ compares two snapshots' trees. It is used by one goroutine.
type differ struct {
	g        *globalOptions
	r        *repo.Repository
	metadata bool
	stats    diffStatsJSON
	// before and after collect the blobs of the first and second snapshot
	// below changed directories; common collects those of subtrees both
	// share unchanged.
	before, after, common core.BlobSet
}

// loadTreeByID loads and decodes tree blob id.
func loadTreeByID(ctx context.Context, r *repo.Repository, id core.ID) (*tree.Tree, error) {
	buf, err := r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		return nil, fmt.Errorf("load tree %v: %w", id.Str(), err)
	}
	t, err := tree.DecodeTree(buf)
	if err != nil {
		return nil, fmt.Errorf("decode tree %v: %w", id.Str(), err)
	}
	return t, nil
}

func runDiff(ctx context.Context, g *globalOptions, o diffOptions, args []string) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "diff", true)
	if err != nil {
		return err
	}
	defer unlock()
	sn1, err := r.FindSnapshot(ctx, args[0], snapshot.Filter{})
	if err != nil {
		return err
	}
	sn2, err := r.FindSnapshot(ctx, args[1], snapshot.Filter{})
	if err != nil {
		return err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	g.printf("comparing snapshot %s to %s:\n\n", sn1.ID().Str(), sn2.ID().Str())
	d := &differ{g: g, r: r, metadata: o.metadata,
		before: core.NewBlobSet(), after: core.NewBlobSet(), common: core.NewBlobSet()}
	d.stats = diffStatsJSON{MessageType: "statistics", SourceSnapshot: args[0], TargetSnapshot: args[1]}
	d.before.Insert(core.BlobHandle{Type: core.TreeBlob, ID: *sn1.Tree})
	d.after.Insert(core.BlobHandle{Type: core.TreeBlob, ID: *sn2.Tree})
	if err := d.diffTree(ctx, "/", *sn1.Tree, *sn2.Tree); err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	// blobs both sides use count for neither
	for h := range d.before {
		if d.after.Has(h) || d.common.Has(h) {
			continue
		}
		d.countBlob(h, &d.stats.Removed)
	}
	for h := range d.after {
		if d.before.Has(h) || d.common.Has(h) {
			continue
		}
		d.countBlob(h, &d.stats.Added)
	}
	if g.JSON {
		return g.printJSON(d.stats)
	}
	s := d.stats
	g.printf("\n")
	g.printf("Files:       %5d new, %5d removed, %5d changed\n", s.Added.Files, s.Removed.Files, s.ChangedFiles)
	g.printf("Dirs:        %5d new, %5d removed\n", s.Added.Dirs, s.Removed.Dirs)
	g.printf("Others:      %5d new, %5d removed\n", s.Added.Others, s.Removed.Others)
	g.printf("Data Blobs:  %5d new, %5d removed\n", s.Added.DataBlobs, s.Removed.DataBlobs)
	g.printf("Tree Blobs:  %5d new, %5d removed\n", s.Added.TreeBlobs, s.Removed.TreeBlobs)
	g.printf("  Added:   %-5s\n", formatBytesRestic(s.Added.Bytes))
	g.printf("  Removed: %-5s\n", formatBytesRestic(s.Removed.Bytes))
	return nil
}

// countBlob adds h to st: its count by type and its plaintext size.
func (d *differ) countBlob(h core.BlobHandle, st *diffStat) {
	switch h.Type {
	case core.DataBlob:
		st.DataBlobs++
	case core.TreeBlob:
		st.TreeBlobs++
	}
	l, ok := d.r.Index().Lookup(h)
	if !ok {
		d.g.warnf("unable to find blob size for %v\n", h)
		return
	}
	st.Bytes += uint64(l.DataLength())
}

func (d *differ) change(p, mod string) error {
	if d.g.JSON {
		return d.g.printJSON(diffChangeJSON{MessageType: "change", Path: p, Modifier: mod})
	}
	d.g.printf("%-5s%v\n", mod, p)
	return nil
}

// nodeBlobs adds the blobs n refers to directly (file content, a
// directory's tree) to set.
func nodeBlobs(set core.BlobSet, n *tree.Node) {
	switch n.Type {
	case tree.NodeFile:
		for _, id := range n.Content {
			set.Insert(core.BlobHandle{Type: core.DataBlob, ID: id})
		}
	case tree.NodeDir:
		if n.Subtree != nil {
			set.Insert(core.BlobHandle{Type: core.TreeBlob, ID: *n.Subtree})
		}
	}
}

func (d *differ) diffTree(ctx context.Context, prefix string, id1, id2 core.ID) error {
	t1, err := loadTreeByID(ctx, d.r, id1)
	if err != nil {
		return err
	}
	t2, err := loadTreeByID(ctx, d.r, id2)
	if err != nil {
		return err
	}
	nodes1 := make(map[string]*tree.Node, len(t1.Nodes))
	nodes2 := make(map[string]*tree.Node, len(t2.Nodes))
	var names []string
	for _, n := range t1.Nodes {
		nodes1[n.Name] = n
		names = append(names, n.Name)
	}
	for _, n := range t2.Nodes {
		nodes2[n.Name] = n
		if _, ok := nodes1[n.Name]; !ok {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		n1, in1 := nodes1[name]
		n2, in2 := nodes2[name]
		if in1 {
			nodeBlobs(d.before, n1)
		}
		if in2 {
			nodeBlobs(d.after, n2)
		}
		p := path.Join(prefix, name)
		switch {
		case in1 && in2:
			if err := d.diffBoth(ctx, p, n1, n2); err != nil {
				return err
			}
		case in1:
			if n1.Type == tree.NodeDir {
				p += "/"
			}
			if err := d.change(p, "-"); err != nil {
				return err
			}
			d.stats.Removed.addNode(n1)
			if n1.Type == tree.NodeDir && n1.Subtree != nil {
				if err := d.listDir(ctx, "-", &d.stats.Removed, d.before, p, *n1.Subtree); err != nil {
					return err
				}
			}
		default:
			if n2.Type == tree.NodeDir {
				p += "/"
			}
			if err := d.change(p, "+"); err != nil {
				return err
			}
			d.stats.Added.addNode(n2)
			if n2.Type == tree.NodeDir && n2.Subtree != nil {
				if err := d.listDir(ctx, "+", &d.stats.Added, d.after, p, *n2.Subtree); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// diffBoth handles a name present in both trees.
func (d *differ) diffBoth(ctx context.Context, p string, n1, n2 *tree.Node) error {
	mod := ""
	if n1.Type != n2.Type {
		mod += "T"
	}
	shown := p
	if n2.Type == tree.NodeDir {
		shown += "/"
	}
	if n1.Type == tree.NodeFile && n2.Type == tree.NodeFile && !sameContentExact(n1.Content, n2.Content) {
		// (restic 0.14 reports a content change as M alone, never MU)
		mod += "M"
		d.stats.ChangedFiles++
	} else if d.metadata && !nodesEqual(n1, n2) {
		mod += "U"
	}
	if mod != "" {
		if err := d.change(shown, mod); err != nil {
			return err
		}
	}
	dir1 := n1.Type == tree.NodeDir && n1.Subtree != nil
	dir2 := n2.Type == tree.NodeDir && n2.Subtree != nil
	switch {
	case dir1 && dir2:
		if *n1.Subtree == *n2.Subtree {
			return d.collectDir(ctx, d.common, *n1.Subtree)
		}
		return d.diffTree(ctx, p, *n1.Subtree, *n2.Subtree)
	case dir1:
		return d.collectDir(ctx, d.before, *n1.Subtree)
	case dir2:
		return d.collectDir(ctx, d.after, *n2.Subtree)
	}
	return nil
}

// listDir prints every entry below tree id with mod, counting them in st
// and their blobs in set.
func (d *differ) listDir(ctx context.Context, mod string, st *diffStat, set core.BlobSet, prefix string, id core.ID) error {
	t, err := loadTreeByID(ctx, d.r, id)
	if err != nil {
		return err
	}
	for _, n := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := path.Join(prefix, n.Name)
		if n.Type == tree.NodeDir {
			p += "/"
		}
		if err := d.change(p, mod); err != nil {
			return err
		}
		st.addNode(n)
		nodeBlobs(set, n)
		if n.Type == tree.NodeDir && n.Subtree != nil {
			if err := d.listDir(ctx, mod, st, set, p, *n.Subtree); err != nil {
				return err
			}
		}
	}
	return nil
}

// collectDir adds every blob below tree id to set.
func (d *differ) collectDir(ctx context.Context, set core.BlobSet, id core.ID) error {
	t, err := loadTreeByID(ctx, d.r, id)
	if err != nil {
		return err
	}
	for _, n := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		nodeBlobs(set, n)
		if n.Type == tree.NodeDir && n.Subtree != nil {
			if err := d.collectDir(ctx, set, *n.Subtree); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameContentExact compares content lists as restic's reflect.DeepEqual
// does: null and [] differ.
func sameContentExact(a, b core.IDs) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// nodesEqual is restic's Node.Equals: every stored field is compared
// (times with time.Equal, content and xattrs by value).
func nodesEqual(a, b *tree.Node) bool {
	if a.Name != b.Name || a.Type != b.Type || a.Mode != b.Mode ||
		!a.ModTime.Equal(b.ModTime) || !a.AccessTime.Equal(b.AccessTime) || !a.ChangeTime.Equal(b.ChangeTime) ||
		a.UID != b.UID || a.GID != b.GID || a.User != b.User || a.Group != b.Group ||
		a.Inode != b.Inode || a.DeviceID != b.DeviceID || a.Size != b.Size || a.Links != b.Links ||
		a.LinkTarget != b.LinkTarget || a.Device != b.Device || a.Error != b.Error {
		return false
	}
	if len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if a.Content[i] != b.Content[i] {
			return false
		}
	}
	if (a.Subtree == nil) != (b.Subtree == nil) || (a.Subtree != nil && *a.Subtree != *b.Subtree) {
		return false
	}
	if len(a.ExtendedAttributes) != len(b.ExtendedAttributes) {
		return false
	}
	xa := make(map[string][]byte, len(a.ExtendedAttributes))
	for _, x := range a.ExtendedAttributes {
		xa[x.Name] = x.Value
	}
	for _, x := range b.ExtendedAttributes {
		v, ok := xa[x.Name]
		if !ok || !bytes.Equal(v, x.Value) {
			return false
		}
	}
	if len(a.GenericAttributes) != len(b.GenericAttributes) {
		return false
	}
	for k, v := range a.GenericAttributes {
		w, ok := b.GenericAttributes[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// formatBytesRestic renders a byte count as restic's statistics do.
func formatBytesRestic(c uint64) string {
	b := float64(c)
	switch {
	case c >= 1<<40:
		return fmt.Sprintf("%.3f TiB", b/(1<<40))
	case c >= 1<<30:
		return fmt.Sprintf("%.3f GiB", b/(1<<30))
	case c >= 1<<20:
		return fmt.Sprintf("%.3f MiB", b/(1<<20))
	case c >= 1<<10:
		return fmt.Sprintf("%.3f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%d B", c)
}
