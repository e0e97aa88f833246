package cli

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

type lsOptions struct {
	long      bool
	recursive bool
	filter    snapshotFilterOptions
}

func newLsCommand(g *globalOptions) *cobra.Command {
	var o lsOptions
	cmd := &cobra.Command{
		Use:   "ls [flags] SNAPSHOT [DIR...]",
		Short: "List files in a snapshot",
		Long: `List the files of SNAPSHOT. Without DIR everything is listed; with DIRs
only their entries (and with --recursive everything below them).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLs(cmd.Context(), g, o, args)
		},
	}
	cmd.Flags().BoolVarP(&o.long, "long", "l", false, "long listing (mode, owner, size, time)")
	cmd.Flags().BoolVar(&o.recursive, "recursive", false, "list directories given as DIR recursively")
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

// lsSnapshotJSON and lsNodeJSON are restic's ls --json shapes.
type lsSnapshotJSON struct {
	*snapshot.Snapshot
	ID         string `json:"id"`
	ShortID    string `json:"short_id"`
	StructType string `json:"struct_type"`
}

type lsNodeJSON struct {
	Name        string    `json:"name"`
	Type        string    `json:"type"`
	Path        string    `json:"path"`
	UID         uint32    `json:"uid"`
	GID         uint32    `json:"gid"`
	Size        *uint64   `json:"size,omitempty"`
	Mode        uint32    `json:"mode,omitempty"`
	Permissions string    `json:"permissions,omitempty"`
	ModTime     time.Time `json:"mtime,omitempty"`
	AccessTime  time.Time `json:"atime,omitempty"`
	ChangeTime  time.Time `json:"ctime,omitempty"`
	StructType  string    `json:"struct_type"`
}

func runLs(ctx context.Context, g *globalOptions, o lsOptions, args []string) error {
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "ls", true)
	if err != nil {
		return err
	}
	defer unlock()
	sn, err := r.FindSnapshot(ctx, args[0], o.filter.filter())
	if err != nil {
		return err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	dirs := args[1:]
	for i := range dirs {
		dirs[i] = path.Clean("/" + dirs[i])
	}
	if g.JSON {
		if err := g.printJSON(lsSnapshotJSON{Snapshot: sn, ID: sn.ID().String(), ShortID: sn.ID().Str(), StructType: "snapshot"}); err != nil {
			return err
		}
	} else {
		g.printf("snapshot %s of %v at %s:\n", sn.ID().Str(), sn.Paths, sn.Time)
	}
	return walkTree(ctx, r, *sn.Tree, "/", func(p string, n *tree.Node) (bool, error) {
		show, descend := lsMatch(p, n, dirs, o.recursive)
		if show {
			if err := g.printLsNode(p, n, o.long); err != nil {
				return false, err
			}
		}
		return descend, nil
	})
}

// lsMatch decides whether p is printed and whether to descend into it.
func lsMatch(p string, n *tree.Node, dirs []string, recursive bool) (show, descend bool) {
	if len(dirs) == 0 {
		return true, true
	}
	for _, d := range dirs {
		switch {
		case p == d:
			return recursive, true
		case strings.HasPrefix(p, d+"/") || d == "/":
			rest := strings.TrimPrefix(strings.TrimPrefix(p, d), "/")
			direct := !strings.Contains(rest, "/")
			if recursive {
				return true, true
			}
			return direct, false
		case strings.HasPrefix(d, p+"/"):
			return false, true
		}
	}
	return false, false
}

func (g *globalOptions) printLsNode(p string, n *tree.Node, long bool) error {
	if g.JSON {
		j := lsNodeJSON{Name: n.Name, Type: string(n.Type), Path: p, UID: n.UID, GID: n.GID, Mode: uint32(n.Mode),
			Permissions: n.Mode.String(), ModTime: n.ModTime, AccessTime: n.AccessTime, ChangeTime: n.ChangeTime, StructType: "node"}
		if n.Type == tree.NodeFile {
			s := n.Size
			j.Size = &s
		}
		return g.printJSON(j)
	}
	if long {
		user := n.User
		if user == "" {
			user = fmt.Sprint(n.UID)
		}
		group := n.Group
		if group == "" {
			group = fmt.Sprint(n.GID)
		}
		extra := ""
		if n.Type == tree.NodeSymlink {
			extra = " -> " + n.LinkTarget
		}
		fmt.Fprintf(g.stdout, "%s %8s %8s %10d %s %s%s\n", n.Mode, user, group, n.Size, n.ModTime.Local().Format("2006-01-02 15:04:05"), p, extra)
		return nil
	}
	fmt.Fprintln(g.stdout, p)
	return nil
}

// walkTree visits every node below tree id depth first in name order.
// fn returns whether to descend into a directory.
func walkTree(ctx context.Context, r *repo.Repository, id core.ID, prefix string, fn func(p string, n *tree.Node) (bool, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	buf, err := r.LoadBlob(ctx, core.TreeBlob, id, nil)
	if err != nil {
		return fmt.Errorf("tree %v: %w", id.Str(), err)
	}
	t, err := tree.DecodeTree(buf)
	if err != nil {
		return fmt.Errorf("tree %v: %w", id.Str(), err)
	}
	for _, n := range t.Nodes {
		p := path.Join(prefix, n.Name)
		descend, err := fn(p, n)
		if err != nil {
			return err
		}
		if descend && n.Type == tree.NodeDir && n.Subtree != nil {
			if err := walkTree(ctx, r, *n.Subtree, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
