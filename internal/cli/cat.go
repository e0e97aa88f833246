package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/restorer"
)

func newCatCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "cat [flags] config|masterkey|key|index|snapshot|lock|pack|blob|tree [ID]",
		Short: "Print internal repository objects",
		Long: `Print a repository object: config, masterkey, key ID, index ID, snapshot ID,
lock ID (decrypted JSON), pack ID (raw bytes), blob ID (the plaintext of a
data or tree blob), or tree SNAPSHOT[:PATH] (the tree of a snapshot).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCat(cmd.Context(), g, args)
		},
	}
}

func (g *globalOptions) printIndented(raw []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		_, err := g.stdout.Write(raw)
		return err
	}
	out.WriteByte('\n')
	_, err := g.stdout.Write(out.Bytes())
	return err
}

func runCat(ctx context.Context, g *globalOptions, args []string) error {
	kind := args[0]
	needID := kind != "config" && kind != "masterkey"
	if needID && len(args) != 2 {
		return fmt.Errorf("cat %s needs an ID", kind)
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "cat", true)
	if err != nil {
		return err
	}
	defer unlock()
	switch kind {
	case "config":
		b, err := json.Marshal(r.Config())
		if err != nil {
			return err
		}
		return g.printIndented(b)
	case "masterkey":
		b, err := json.Marshal(r.Key())
		if err != nil {
			return err
		}
		return g.printIndented(b)
	case "key":
		id, err := r.FindFile(ctx, core.KeyFile, args[1])
		if err != nil {
			return err
		}
		b, err := backend.LoadAll(ctx, r.Backend(), backend.Handle{Type: core.KeyFile, Name: id.String()})
		if err != nil {
			return err
		}
		return g.printIndented(b)
	case "index", "snapshot", "lock":
		t := map[string]core.FileType{"index": core.IndexFile, "snapshot": core.SnapshotFile, "lock": core.LockFile}[kind]
		id, err := r.FindFile(ctx, t, args[1])
		if err != nil {
			return err
		}
		b, err := r.LoadUnpacked(ctx, t, id)
		if err != nil {
			return err
		}
		return g.printIndented(b)
	case "pack":
		id, err := r.FindFile(ctx, core.PackFile, args[1])
		if err != nil {
			return err
		}
		b, err := backend.LoadAll(ctx, r.Backend(), backend.Handle{Type: core.PackFile, Name: id.String()})
		if err != nil {
			return err
		}
		if core.Hash(b) != id {
			g.warnf("warning: pack %v content does not match its ID (damaged)\n", id.Str())
		}
		_, err = g.stdout.Write(b)
		return err
	case "blob":
		id, err := core.ParseID(args[1])
		if err != nil {
			return err
		}
		if err := r.LoadIndex(ctx); err != nil {
			return err
		}
		for _, t := range []core.BlobType{core.DataBlob, core.TreeBlob} {
			if !r.Index().Has(core.BlobHandle{ID: id, Type: t}) {
				continue
			}
			b, err := r.LoadBlob(ctx, t, id, nil)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(b)
			return err
		}
		return fmt.Errorf("blob %v not found", id.Str())
	case "tree":
		snap, sub, _ := strings.Cut(args[1], ":")
		sn, err := r.FindSnapshot(ctx, snap, snapshotFilterOptions{}.filter())
		if err != nil {
			return err
		}
		if err := r.LoadIndex(ctx); err != nil {
			return err
		}
		id := *sn.Tree
		if sub != "" {
			if id, err = restorer.FindSubtree(ctx, r, id, sub); err != nil {
				return err
			}
		}
		b, err := r.LoadBlob(ctx, core.TreeBlob, id, nil)
		if err != nil {
			return err
		}
		return g.printIndented(b)
	}
	return errors.New("cat: unknown object type " + kind + " (want config, masterkey, key, index, snapshot, lock, pack, blob or tree)")
}
