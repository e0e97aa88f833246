package cli

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
	"github.com/cairn-backup/cairn/internal/ui"
)

func init() { extraCommands = append(extraCommands, newStatsCommand) }

// The counting modes of stats.
const (
	statsModeRestoreSize     = "restore-size"
	statsModeFilesByContents = "files-by-contents"
	statsModeRawData         = "raw-data"
	statsModeBlobsPerFile    = "blobs-per-file"
)

type statsOptions struct {
	mode   string
	filter snapshotFilterOptions
}

func newStatsCommand(g *globalOptions) *cobra.Command {
	var o statsOptions
	cmd := &cobra.Command{
		Use:   "stats [flags] [SNAPSHOT...]",
		Short: "Show statistics about the repository's data",
		Long: `Walk the given snapshots (all matching --host/--tag/--path if none are
given; "latest" works) and count, depending on --mode:

  restore-size       the files and their sizes as a restore would create
                     them (hard links counted once per snapshot);
  files-by-contents  files with distinct contents and their sizes;
  raw-data           the blobs the snapshots use, by their stored
                     (compressed, encrypted) size;
  blobs-per-file     like files-by-contents, but the sizes of the distinct
                     blobs of each file.

The numbers are those restic's stats command reports.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStats(cmd.Context(), g, o, args)
		},
	}
	cmd.Flags().StringVar(&o.mode, "mode", statsModeRestoreSize, "counting `mode`: restore-size, files-by-contents, raw-data or blobs-per-file")
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

// statsJSON is stats --json's output, field for field restic's.
type statsJSON struct {
	TotalSize              uint64  `json:"total_size"`
	TotalUncompressedSize  uint64  `json:"total_uncompressed_size,omitempty"`
	CompressionRatio       float64 `json:"compression_ratio,omitempty"`
	CompressionProgress    float64 `json:"compression_progress,omitempty"`
	CompressionSpaceSaving float64 `json:"compression_space_saving,omitempty"`
	TotalFileCount         uint64  `json:"total_file_count"`
	TotalBlobCount         uint64  `json:"total_blob_count,omitempty"`
	SnapshotsCount         int     `json:"snapshots_count"`
}

// statsTreeCacheSize bounds how many decoded trees stats keeps.
const statsTreeCacheSize = 4096

// statsCounter accumulates the numbers over the snapshots.
type statsCounter struct {
	r    *repo.Repository
	mode string
	out  statsJSON

	// trees caches decoded trees (stats walks shared trees repeatedly).
	trees map[core.ID]*tree.Tree
	// uniqueFiles holds the content fingerprints seen (files-by-contents,
	// blobs-per-file).
	uniqueFiles map[[sha256.Size]byte]struct{}
	// fileBlobs maps a path to the blobs counted for it (blobs-per-file).
	fileBlobs map[string]core.IDSet
	// blobs collects the used blobs (raw-data).
	blobs core.BlobSet
	// seenTrees are the trees already walked for raw-data.
	seenTrees core.IDSet
}

type statsInode struct{ inode, device uint64 }

func runStats(ctx context.Context, g *globalOptions, o statsOptions, args []string) error {
	switch o.mode {
	case statsModeRestoreSize, statsModeFilesByContents, statsModeRawData, statsModeBlobsPerFile:
	default:
		return fmt.Errorf("stats: unknown counting mode %q (want restore-size, files-by-contents, raw-data or blobs-per-file)", o.mode)
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "stats", true)
	if err != nil {
		return err
	}
	defer unlock()
	list, err := g.loadSnapshots(ctx, r, o.filter.filter(), args)
	if err != nil {
		return err
	}
	snapshot.SortByTime(list)
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	c := &statsCounter{r: r, mode: o.mode, trees: make(map[core.ID]*tree.Tree),
		uniqueFiles: make(map[[sha256.Size]byte]struct{}), fileBlobs: make(map[string]core.IDSet),
		blobs: core.NewBlobSet(), seenTrees: core.NewIDSet()}
	for _, sn := range list {
		if err := c.addSnapshot(ctx, sn); err != nil {
			return fmt.Errorf("stats: snapshot %v: %w", sn.ID().Str(), err)
		}
	}
	if o.mode == statsModeRawData {
		if err := c.countBlobs(); err != nil {
			return fmt.Errorf("stats: %w", err)
		}
	}
	if g.JSON {
		return g.printJSON(c.out)
	}
	s := c.out
	fmt.Fprintf(g.stdout, "Stats in %s mode:\n", o.mode)
	fmt.Fprintf(g.stdout, "     Snapshots processed:  %d\n", s.SnapshotsCount)
	if s.TotalBlobCount > 0 {
		fmt.Fprintf(g.stdout, "        Total Blob Count:  %d\n", s.TotalBlobCount)
	}
	if s.TotalFileCount > 0 {
		fmt.Fprintf(g.stdout, "        Total File Count:  %d\n", s.TotalFileCount)
	}
	if s.TotalUncompressedSize > 0 {
		fmt.Fprintf(g.stdout, " Total Uncompressed Size:  %s\n", ui.Bytes(s.TotalUncompressedSize))
	}
	fmt.Fprintf(g.stdout, "              Total Size:  %s\n", ui.Bytes(s.TotalSize))
	if s.CompressionProgress > 0 {
		fmt.Fprintf(g.stdout, "    Compression Progress:  %.2f%%\n", s.CompressionProgress)
	}
	if s.CompressionRatio > 0 {
		fmt.Fprintf(g.stdout, "       Compression Ratio:  %.2fx\n", s.CompressionRatio)
	}
	if s.CompressionSpaceSaving > 0 {
		fmt.Fprintf(g.stdout, "Compression Space Saving:  %.2f%%\n", s.CompressionSpaceSaving)
	}
	return nil
}

func (c *statsCounter) loadTree(ctx context.Context, id core.ID) (*tree.Tree, error) {
	if t, ok := c.trees[id]; ok {
		return t, nil
	}
	buf, err := c.r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		return nil, fmt.Errorf("tree %v: %w", id.Str(), err)
	}
	t, err := tree.DecodeTree(buf)
	if err != nil {
		return nil, fmt.Errorf("tree %v: %w", id.Str(), err)
	}
	if len(c.trees) < statsTreeCacheSize {
		c.trees[id] = t
	}
	return t, nil
}

func (c *statsCounter) addSnapshot(ctx context.Context, sn *snapshot.Snapshot) error {
	c.out.SnapshotsCount++
	if c.mode == statsModeRawData {
		return c.collectBlobs(ctx, *sn.Tree)
	}
	hardlinks := make(map[statsInode]struct{}) // per snapshot, as restic
	return c.walk(ctx, *sn.Tree, "/", func(p string, n *tree.Node) error {
		return c.countNode(p, n, hardlinks)
	})
}

// walk visits every node below tree id, depth first in name order, a
// directory before its contents.
func (c *statsCounter) walk(ctx context.Context, id core.ID, prefix string, fn func(p string, n *tree.Node) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := c.loadTree(ctx, id)
	if err != nil {
		return err
	}
	for _, n := range t.Nodes {
		p := path.Join(prefix, n.Name)
		if n.Type == "" {
			return fmt.Errorf("node %q has no type", p)
		}
		if err := fn(p, n); err != nil {
			return err
		}
		if n.Type == tree.NodeDir {
			if n.Subtree == nil {
				return fmt.Errorf("directory %q has no subtree", p)
			}
			if err := c.walk(ctx, *n.Subtree, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// contentFingerprint identifies a node by its content list (every node
// without content, directories included, shares one fingerprint).
func contentFingerprint(n *tree.Node) [sha256.Size]byte {
	h := sha256.New()
	for _, id := range n.Content {
		h.Write(id[:])
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func (c *statsCounter) countNode(p string, n *tree.Node, hardlinks map[statsInode]struct{}) error {
	switch c.mode {
	case statsModeRestoreSize:
		// every node is restored; a hard-linked inode's data only once
		c.out.TotalFileCount++
		key := statsInode{n.Inode, n.DeviceID}
		if _, seen := hardlinks[key]; !seen || n.Inode == 0 {
			hardlinks[key] = struct{}{}
			c.out.TotalSize += n.Size
		}
		return nil
	case statsModeFilesByContents, statsModeBlobsPerFile:
		fp := contentFingerprint(n)
		if _, seen := c.uniqueFiles[fp]; seen {
			return nil
		}
		c.uniqueFiles[fp] = struct{}{}
		if c.mode == statsModeFilesByContents {
			c.out.TotalSize += n.Size
			c.out.TotalFileCount++
			return nil
		}
		for _, id := range n.Content {
			blobs, ok := c.fileBlobs[p]
			if !ok {
				blobs = core.NewIDSet()
				c.fileBlobs[p] = blobs
				c.out.TotalFileCount++
			}
			if blobs.Has(id) {
				continue
			}
			l, found := c.r.Index().Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
			if !found {
				return fmt.Errorf("data blob %v of %q not found in the index", id.Str(), p)
			}
			c.out.TotalSize += uint64(l.DataLength())
			blobs.Insert(id)
			c.out.TotalBlobCount++
		}
	}
	return nil
}

// collectBlobs adds every blob reachable from tree id to c.blobs.
func (c *statsCounter) collectBlobs(ctx context.Context, id core.ID) error {
	if c.seenTrees.Has(id) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.seenTrees.Insert(id)
	c.blobs.Insert(core.BlobHandle{ID: id, Type: core.TreeBlob})
	t, err := c.loadTree(ctx, id)
	if err != nil {
		return err
	}
	for _, n := range t.Nodes {
		switch n.Type {
		case tree.NodeFile:
			for _, b := range n.Content {
				c.blobs.Insert(core.BlobHandle{ID: b, Type: core.DataBlob})
			}
		case tree.NodeDir:
			if n.Subtree == nil {
				return fmt.Errorf("directory %q in tree %v has no subtree", n.Name, id.Str())
			}
			if err := c.collectBlobs(ctx, *n.Subtree); err != nil {
				return err
			}
		}
	}
	return nil
}

// countBlobs sums the stored sizes of the collected blobs (raw-data), and
// in v2 repositories the compression figures.
func (c *statsCounter) countBlobs() error {
	v2 := c.r.Config().Version >= 2
	var compressed, compressedUncompressed uint64
	for h := range c.blobs {
		l, ok := c.r.Index().Lookup(h)
		if !ok {
			return fmt.Errorf("blob %v not found in the index", h)
		}
		c.out.TotalSize += uint64(l.Length)
		if v2 {
			full := uint64(l.DataLength()) + crypto.Extension
			c.out.TotalUncompressedSize += full
			if l.IsCompressed() {
				compressed += uint64(l.Length)
				compressedUncompressed += full
			}
		}
		c.out.TotalBlobCount++
	}
	if compressed > 0 {
		c.out.CompressionRatio = float64(compressedUncompressed) / float64(compressed)
	}
	if c.out.TotalUncompressedSize > 0 {
		c.out.CompressionProgress = float64(compressedUncompressed) / float64(c.out.TotalUncompressedSize) * 100
		c.out.CompressionSpaceSaving = (1 - float64(c.out.TotalSize)/float64(c.out.TotalUncompressedSize)) * 100
	}
	return nil
}
