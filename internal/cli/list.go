package cli

import (
	"bufio"
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/index"
)

func init() { extraCommands = append(extraCommands, newListCommand) }

func newListCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list [flags] blobs|packs|index|snapshots|keys|locks",
		Short: "List objects in the repository",
		Long: `List the IDs of the repository's pack, index, snapshot, key or lock files,
one per line, or with "blobs" every blob of the index as "type id".
With --json the result is one JSON array: of IDs, or for blobs of
{"type":...,"id":...} objects.

"list locks" takes no lock; the others take a non-exclusive lock.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"blobs", "packs", "index", "snapshots", "keys", "locks"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runList(cmd.Context(), g, args[0])
		},
	}
}

// listBlobJSON is one element of list blobs --json.
type listBlobJSON struct {
	Type core.BlobType `json:"type"`
	ID   core.ID       `json:"id"`
}

func runList(ctx context.Context, g *globalOptions, what string) error {
	types := map[string]core.FileType{
		"packs": core.PackFile, "index": core.IndexFile, "snapshots": core.SnapshotFile,
		"keys": core.KeyFile, "locks": core.LockFile,
	}
	ft, isFile := types[what]
	if !isFile && what != "blobs" {
		return fmt.Errorf("list: invalid type %q (want blobs, packs, index, snapshots, keys or locks)", what)
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	if what != "locks" {
		unlock, lctx, _, err := g.lockRepository(ctx, r, false, "list", true)
		if err != nil {
			return err
		}
		defer unlock()
		ctx = lctx
	}
	out := bufio.NewWriter(g.stdout)
	if what == "blobs" {
		if err := r.LoadIndex(ctx); err != nil {
			return err
		}
		var blobs []listBlobJSON
		r.Index().Each(func(l index.Location) {
			blobs = append(blobs, listBlobJSON{Type: l.Type, ID: l.ID})
		})
		if g.JSON {
			if blobs == nil {
				blobs = []listBlobJSON{}
			}
			return g.printJSON(blobs)
		}
		for _, b := range blobs {
			fmt.Fprintf(out, "%v %v\n", b.Type, b.ID)
		}
		return out.Flush()
	}
	ids, err := r.ListIDs(ctx, ft)
	if err != nil {
		return err
	}
	sort.Sort(ids)
	if g.JSON {
		strs := make([]string, 0, len(ids))
		for _, id := range ids {
			strs = append(strs, id.String())
		}
		return g.printJSON(strs)
	}
	for _, id := range ids {
		fmt.Fprintln(out, id)
	}
	return out.Flush()
}
