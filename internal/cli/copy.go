package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/pack"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

func init() { extraCommands = append(extraCommands, newCopyCommand) }

type copyOptions struct {
	fromRepo         string
	fromPasswordFile string
	fromPasswordCmd  string
	fromKeyHint      string
	filter           snapshotFilterOptions
}

func newCopyCommand(g *globalOptions) *cobra.Command {
	var o copyOptions
	cmd := &cobra.Command{
		Use:   "copy [flags] --from-repo SOURCE [SNAPSHOT...]",
		Short: "Copy snapshots from another repository",
		Long: `Copy snapshots from the repository given with --from-repo (or
CAIRN_FROM_REPOSITORY, RESTIC_FROM_REPOSITORY) into the repository given with
-r. Without SNAPSHOT every snapshot matching --host/--tag/--path is copied.

A snapshot is skipped when the destination already holds a copy of it: a
snapshot whose "original" (or own ID) is the source snapshot's original (or
ID) and whose time, tree, host, user, paths, tags and excludes are equal.
Copies get "original" set to the source snapshot's ID (kept if already set)
and no parent.

Every blob the destination lacks is read from the source, decrypted and
stored again with the destination's key. Files are not re-chunked, so if the
two repositories use different chunker polynomials the copied data does not
deduplicate with data backed up directly (see init --copy-chunker-params).

The source password comes from --from-password-file, --from-password-command,
CAIRN_FROM_PASSWORD_FILE, CAIRN_FROM_PASSWORD_COMMAND, CAIRN_FROM_PASSWORD (or
the RESTIC_FROM_* variables), or a prompt. Both repositories are locked
non-exclusively (the source not with --no-lock).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCopy(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.fromRepo, "from-repo", "", "source `repository` (default: $CAIRN_FROM_REPOSITORY)")
	f.StringVar(&o.fromPasswordFile, "from-password-file", "", "read the source password from `file` (default: $CAIRN_FROM_PASSWORD_FILE)")
	f.StringVar(&o.fromPasswordCmd, "from-password-command", "", "run `command` for the source password (default: $CAIRN_FROM_PASSWORD_COMMAND)")
	f.StringVar(&o.fromKeyHint, "from-key-hint", "", "key `ID` to try first in the source repository")
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

// fromPassword finds the source repository's password.
func (o copyOptions) fromPassword(g *globalOptions) (string, error) {
	cmd := o.fromPasswordCmd
	if cmd == "" {
		cmd = env("CAIRN_FROM_PASSWORD_COMMAND", "RESTIC_FROM_PASSWORD_COMMAND")
	}
	if cmd != "" {
		return runPasswordCommand(cmd)
	}
	file := o.fromPasswordFile
	if file == "" {
		file = env("CAIRN_FROM_PASSWORD_FILE")
	}
	if file == "" && os.Getenv("CAIRN_FROM_PASSWORD") != "" {
		return os.Getenv("CAIRN_FROM_PASSWORD"), nil
	}
	if file == "" {
		file = env("RESTIC_FROM_PASSWORD_FILE")
	}
	if file == "" && os.Getenv("RESTIC_FROM_PASSWORD") != "" {
		return os.Getenv("RESTIC_FROM_PASSWORD"), nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read source password file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("source password file %s is empty", file)
		}
		return pw, nil
	}
	return g.promptPassword("enter password for source repository: ", false)
}

// openSource opens the --from-repo repository with the source password.
func (o copyOptions) openSource(ctx context.Context, g *globalOptions) (*repo.Repository, error) {
	loc := o.fromRepo
	if loc == "" {
		loc = env("CAIRN_FROM_REPOSITORY", "RESTIC_FROM_REPOSITORY")
	}
	if loc == "" {
		return nil, errors.New("copy: no source repository given: use --from-repo or set CAIRN_FROM_REPOSITORY")
	}
	src := *g
	src.Repo = loc
	src.KeyHint = o.fromKeyHint
	if src.KeyHint == "" {
		src.KeyHint = env("CAIRN_FROM_KEY_HINT", "RESTIC_FROM_KEY_HINT")
	}
	be, err := src.openBackend(ctx, loc, false)
	if err != nil {
		return nil, fmt.Errorf("open source repository: %w", err)
	}
	pw, err := o.fromPassword(g)
	if err != nil {
		be.Close()
		return nil, err
	}
	opts, err := src.repoOptions()
	if err != nil {
		be.Close()
		return nil, err
	}
	r, err := repo.Open(ctx, be, pw, opts)
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("open source repository: %w", err)
	}
	for _, hook := range repoOpenHooks {
		if err := hook(ctx, &src, r); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// similarSnapshots reports whether a and b are copies of each other:
// everything but parent and original is equal.
func similarSnapshots(a, b *snapshot.Snapshot) bool {
	if !a.Time.Equal(b.Time) || a.Tree == nil || b.Tree == nil || *a.Tree != *b.Tree ||
		a.Hostname != b.Hostname || a.Username != b.Username || a.UID != b.UID || a.GID != b.GID ||
		len(a.Paths) != len(b.Paths) || len(a.Excludes) != len(b.Excludes) || len(a.Tags) != len(b.Tags) {
		return false
	}
	if !a.HasPaths(b.Paths) || !a.HasTags(b.Tags) {
		return false
	}
	for i := range a.Excludes {
		if a.Excludes[i] != b.Excludes[i] {
			return false
		}
	}
	return true
}

func runCopy(ctx context.Context, g *globalOptions, o copyOptions, args []string) error {
	src, err := o.openSource(ctx, g)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer dst.Close()
	unlockSrc, ctx, _, err := g.lockRepository(ctx, src, false, "copy (source)", true)
	if err != nil {
		return fmt.Errorf("lock source repository: %w", err)
	}
	defer unlockSrc()
	unlockDst, ctx, _, err := g.lockRepository(ctx, dst, false, "copy", false)
	if err != nil {
		return fmt.Errorf("lock destination repository: %w", err)
	}
	defer unlockDst()

	if src.Config().ChunkerPolynomial != dst.Config().ChunkerPolynomial {
		g.verbosef(1, "the repositories use different chunker polynomials; copied files will not deduplicate with new backups\n")
	}
	if err := src.LoadIndex(ctx); err != nil {
		return fmt.Errorf("load source index: %w", err)
	}
	if err := dst.LoadIndex(ctx); err != nil {
		return fmt.Errorf("load destination index: %w", err)
	}
	dstAll, dstErrs, err := dst.LoadAllSnapshots(ctx)
	if err != nil {
		return fmt.Errorf("load destination snapshots: %w", err)
	}
	for _, e := range dstErrs {
		g.warnf("warning: destination %v\n", e)
	}
	byOriginal := make(map[core.ID][]*snapshot.Snapshot)
	for _, sn := range dstAll {
		if sn.Original != nil && !sn.Original.IsNull() {
			byOriginal[*sn.Original] = append(byOriginal[*sn.Original], sn)
		}
		byOriginal[*sn.ID()] = append(byOriginal[*sn.ID()], sn)
	}
	list, err := g.loadSnapshots(ctx, src, o.filter.filter(), args)
	if err != nil {
		return err
	}
	snapshot.SortByTime(list)

	c := &copier{g: g, src: src, dst: dst, visited: core.NewIDSet()}
	copied := 0
	seen := core.NewIDSet()
	for _, sn := range list {
		srcID := *sn.ID()
		if seen.Has(srcID) {
			continue
		}
		seen.Insert(srcID)
		g.verbosef(1, "\nsnapshot %s of %v at %s)\n", srcID.Str(), sn.Paths, sn.Time)
		orig := srcID
		if sn.Original != nil && !sn.Original.IsNull() {
			orig = *sn.Original
		}
		var already *snapshot.Snapshot
		for _, cand := range byOriginal[orig] {
			if similarSnapshots(cand, sn) {
				already = cand
				break
			}
		}
		if already != nil {
			g.verbosef(1, "  skipping source snapshot %s, was already copied to snapshot %s\n", srcID.Str(), already.ID().Str())
			continue
		}
		g.verbosef(1, "  copy started, this may take a while...\n")
		if err := c.copyTree(ctx, *sn.Tree); err != nil {
			return fmt.Errorf("copy snapshot %s: %w", srcID.Str(), err)
		}
		if err := dst.Flush(ctx); err != nil {
			return fmt.Errorf("copy snapshot %s: %w", srcID.Str(), err)
		}
		sn.Parent = nil
		if sn.Original == nil || sn.Original.IsNull() {
			sn.Original = &srcID
		}
		newID, err := dst.SaveSnapshot(ctx, sn)
		if err != nil {
			return fmt.Errorf("copy snapshot %s: %w", srcID.Str(), err)
		}
		byOriginal[orig] = append(byOriginal[orig], sn)
		copied++
		if g.JSON {
			if err := g.printJSON(map[string]string{"message_type": "copied", "source_snapshot": srcID.String(), "snapshot_id": newID.String()}); err != nil {
				return err
			}
		}
		g.printf("snapshot %s copied to %s\n", srcID.Str(), newID.Str())
	}
	g.verbosef(1, "\n")
	if g.JSON {
		return g.printJSON(map[string]any{"message_type": "summary", "snapshots_copied": copied, "snapshots_considered": len(seen), "blobs_copied": c.blobs, "bytes_copied": c.bytes})
	}
	g.printf("copied %d of %d snapshots (%d blobs, %d bytes of plaintext)\n", copied, len(seen), c.blobs, c.bytes)
	return nil
}

// copier copies trees and their blobs from src to dst.
type copier struct {
	g        *globalOptions
	src, dst *repo.Repository
	// visited holds trees already walked (by an earlier snapshot); their
	// blobs are in dst once that snapshot's copy was flushed.
	visited core.IDSet

	mu    sync.Mutex // guards blobs, bytes
	blobs int
	bytes uint64
}

// copyTree copies every blob below root that dst lacks.
func (c *copier) copyTree(ctx context.Context, root core.ID) error {
	need := core.NewBlobSet()
	var mu sync.Mutex // guards need, next and c.visited while a level loads
	level := []core.ID{root}
	c.visited.Insert(root)
	for len(level) > 0 {
		var next []core.ID
		eg, ectx := errgroup.WithContext(ctx)
		eg.SetLimit(c.src.Connections() + 2)
		for _, id := range level {
			eg.Go(func() error {
				t, err := loadTreeByID(ectx, c.src, id)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if h := (core.BlobHandle{Type: core.TreeBlob, ID: id}); !c.dst.Index().Has(h) {
					need.Insert(h)
				}
				for _, n := range t.Nodes {
					switch {
					case n.Type == tree.NodeFile:
						for _, b := range n.Content {
							if h := (core.BlobHandle{Type: core.DataBlob, ID: b}); !c.dst.Index().Has(h) {
								need.Insert(h)
							}
						}
					case n.Type == tree.NodeDir && n.Subtree != nil:
						if !c.visited.Has(*n.Subtree) {
							c.visited.Insert(*n.Subtree)
							next = append(next, *n.Subtree)
						}
					}
				}
				return nil
			})
		}
		if err := eg.Wait(); err != nil {
			return err
		}
		level = next
	}
	return c.copyBlobs(ctx, need)
}

// copyBlobs copies the blobs in need, reading each source pack once.
func (c *copier) copyBlobs(ctx context.Context, need core.BlobSet) error {
	byPack := make(map[core.ID][]pack.Blob)
	for h := range need {
		l, ok := c.src.Index().Lookup(h)
		if !ok {
			return fmt.Errorf("blob %v is not in the source index", h)
		}
		byPack[l.Pack] = append(byPack[l.Pack], l.Blob)
	}
	packs := make(core.IDs, 0, len(byPack))
	for id := range byPack {
		packs = append(packs, id)
	}
	sort.Sort(packs)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(c.src.Connections())
	for _, p := range packs {
		blobs := byPack[p]
		sort.Slice(blobs, func(i, j int) bool { return blobs[i].Offset < blobs[j].Offset })
		eg.Go(func() error { return c.copyPack(ectx, p, blobs) })
	}
	return eg.Wait()
}

// copyPack reads the range of pack p holding blobs (sorted by offset) in
// one request, and stores each blob in dst. A blob that fails to decode
// is loaded again from any other copy the source index knows.
func (c *copier) copyPack(ctx context.Context, p core.ID, blobs []pack.Blob) error {
	start := int64(blobs[0].Offset)
	last := blobs[len(blobs)-1]
	length := int64(last.Offset) + int64(last.Length) - start
	done := make([]bool, len(blobs))
	var retry []pack.Blob
	h := backend.Handle{Type: core.PackFile, Name: p.String()}
	err := c.src.Backend().Load(ctx, h, int(length), start, func(rd io.Reader) error {
		retry = retry[:0]
		pos := start
		var sealed, plain []byte
		for i, b := range blobs {
			if skip := int64(b.Offset) - pos; skip > 0 {
				if _, err := io.CopyN(io.Discard, rd, skip); err != nil {
					return err
				}
			}
			if cap(sealed) < int(b.Length) {
				sealed = make([]byte, b.Length)
			}
			sealed = sealed[:b.Length]
			if _, err := io.ReadFull(rd, sealed); err != nil {
				return err
			}
			pos = int64(b.Offset) + int64(b.Length)
			if done[i] {
				continue // saved by an earlier attempt of this callback
			}
			var err error
			plain, err = c.src.DecodeBlob(b, sealed, plain)
			if err != nil {
				retry = append(retry, b)
				continue
			}
			if err := c.save(ctx, b.BlobHandle, plain); err != nil {
				return err
			}
			done[i] = true
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// the pack could not be read: try every blob on its own (the index
		// may know other copies)
		c.g.warnf("warning: reading pack %v: %v; loading its blobs one by one\n", p.Str(), err)
		retry = retry[:0]
		for i, b := range blobs {
			if !done[i] {
				retry = append(retry, b)
			}
		}
	}
	for _, b := range retry {
		plain, err := c.src.LoadBlob(ctx, b.Type, b.ID, nil)
		if err != nil {
			return fmt.Errorf("copy blob %v: %w", b.BlobHandle, err)
		}
		if err := c.save(ctx, b.BlobHandle, plain); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) save(ctx context.Context, h core.BlobHandle, plain []byte) error {
	res, err := c.dst.SaveBlob(ctx, h.Type, plain, h.ID, false)
	if err != nil {
		return fmt.Errorf("save blob %v: %w", h, err)
	}
	if !res.Known {
		c.mu.Lock()
		c.blobs++
		c.bytes += uint64(len(plain))
		c.mu.Unlock()
	}
	return nil
}
