package cli

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/tree"
)

func init() { extraCommands = append(extraCommands, newDumpCommand) }

type dumpOptions struct {
	archive string
	filter  snapshotFilterOptions
}

func newDumpCommand(g *globalOptions) *cobra.Command {
	var o dumpOptions
	cmd := &cobra.Command{
		Use:   "dump [flags] SNAPSHOT PATH",
		Short: "Print a file of a snapshot, or a directory as an archive",
		Long: `Write the file PATH of SNAPSHOT to standard output. If PATH is a
directory, its contents are written as a tar archive (default) or, with
--archive zip, a zip archive; "/" dumps the whole snapshot.

Tar archives (PAX format) keep each entry's permissions and setuid, setgid
and sticky bits, owner (uid/gid and names), modification time with
nanoseconds, symlink targets, FIFOs and devices, extended attributes
(SCHILY.xattr.*) and POSIX ACLs (SCHILY.acl.*). Sockets are left out. Zip
archives keep modes, times and symlinks only. An archive is not written to
a terminal.

"latest" picks the newest snapshot matching --host/--tag/--path.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDump(cmd.Context(), g, o, args)
		},
	}
	cmd.Flags().StringVarP(&o.archive, "archive", "a", "tar", "archive `format` for directories: tar or zip")
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

func runDump(ctx context.Context, g *globalOptions, o dumpOptions, args []string) error {
	switch o.archive {
	case "tar", "zip":
	default:
		return fmt.Errorf("dump: unknown archive format %q (want tar or zip)", o.archive)
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "dump", true)
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
	bw := bufio.NewWriterSize(g.stdout, 1<<20)
	d := &dumper{r: r, w: bw, format: o.archive, g: g}
	if err := d.dumpPath(ctx, *sn.Tree, args[1]); err != nil {
		_ = bw.Flush()
		return fmt.Errorf("dump %s: %w", args[1], err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dump: write: %w", err)
	}
	return nil
}

// dumper writes files and archives of one snapshot; used by one goroutine.
type dumper struct {
	r      *repo.Repository
	w      io.Writer
	format string
	g      *globalOptions
}

// dumpPath resolves p below the root tree and dumps what it names.
func (d *dumper) dumpPath(ctx context.Context, root core.ID, p string) error {
	clean := path.Clean("/" + p)
	if clean == "/" {
		return d.archive(ctx, root, "/")
	}
	comps := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	cur := root
	item := "/"
	for i, comp := range comps {
		t, err := loadTreeByID(ctx, d.r, cur)
		if err != nil {
			return err
		}
		item = path.Join(item, comp)
		n := t.Find(comp)
		if n == nil {
			return fmt.Errorf("path %q not found in snapshot", item)
		}
		last := i == len(comps)-1
		switch {
		case last && n.Type == tree.NodeFile:
			return d.writeContent(ctx, d.w, n)
		case n.Type == tree.NodeDir && n.Subtree != nil:
			if last {
				return d.archive(ctx, *n.Subtree, item)
			}
			cur = *n.Subtree
		case !last:
			return fmt.Errorf("%q should be a dir, but is a %q", item, n.Type)
		default:
			return fmt.Errorf("%q should be a file, but is a %q", item, n.Type)
		}
	}
	return nil
}

// stdoutIsTerminal reports whether the output goes to a terminal.
func (d *dumper) stdoutIsTerminal() bool {
	f, ok := d.g.stdout.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// archive writes every entry below tree id as an archive; entry names are
// their snapshot paths relative to "/" (so prefix is kept).
func (d *dumper) archive(ctx context.Context, id core.ID, prefix string) error {
	if d.stdoutIsTerminal() {
		return errors.New("stdout is a terminal; redirect the archive to a file or pipe")
	}
	var aw archiveWriter
	switch d.format {
	case "zip":
		aw = &zipArchive{d: d, zw: zip.NewWriter(d.w)}
	default:
		aw = &tarArchive{d: d, tw: tar.NewWriter(d.w)}
	}
	if err := d.archiveTree(ctx, aw, id, prefix); err != nil {
		return err
	}
	return aw.close()
}

func (d *dumper) archiveTree(ctx context.Context, aw archiveWriter, id core.ID, prefix string) error {
	t, err := loadTreeByID(ctx, d.r, id)
	if err != nil {
		return err
	}
	for _, n := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := path.Join(prefix, n.Name)
		if err := aw.add(ctx, strings.TrimPrefix(p, "/"), n); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if n.Type == tree.NodeDir && n.Subtree != nil {
			if err := d.archiveTree(ctx, aw, *n.Subtree, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// contentSize is the plaintext size of a file's blobs according to the
// index (archive headers must announce exactly what follows).
func (d *dumper) contentSize(n *tree.Node) (int64, error) {
	var size int64
	for _, id := range n.Content {
		l, ok := d.r.Index().Lookup(core.BlobHandle{Type: core.DataBlob, ID: id})
		if !ok {
			return 0, fmt.Errorf("data blob %v not found in index", id.Str())
		}
		size += int64(l.DataLength())
	}
	return size, nil
}

// writeContent writes a file's data blobs to w in order, loading a few
// blobs ahead in parallel.
func (d *dumper) writeContent(ctx context.Context, w io.Writer, n *tree.Node) error {
	ahead := min(max(d.r.Connections(), 2), 8)
	type result struct {
		buf []byte
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var pending []chan result
	next := 0
	start := func() {
		id := n.Content[next]
		next++
		ch := make(chan result, 1)
		go func() {
			buf, err := d.r.LoadBlob(ctx, core.DataBlob, id, nil)
			ch <- result{buf, err}
		}()
		pending = append(pending, ch)
	}
	// drain waits for the loads still running when we stop early.
	drain := func() {
		cancel()
		for _, ch := range pending {
			<-ch
		}
	}
	for next < len(n.Content) && len(pending) < ahead {
		start()
	}
	for len(pending) > 0 {
		res := <-pending[0]
		pending = pending[1:]
		if res.err != nil {
			drain()
			return fmt.Errorf("load content of %q: %w", n.Name, res.err)
		}
		if _, err := w.Write(res.buf); err != nil {
			drain()
			return fmt.Errorf("write: %w", err)
		}
		if next < len(n.Content) {
			start()
		}
	}
	return nil
}

// archiveWriter adds snapshot entries to an archive.
type archiveWriter interface {
	add(ctx context.Context, name string, n *tree.Node) error
	close() error
}

// tar mode bits for setuid, setgid and sticky (c_ISUID etc.).
const (
	tarISUID = 0o4000
	tarISGID = 0o2000
	tarISVTX = 0o1000
)

type tarArchive struct {
	d  *dumper
	tw *tar.Writer
}

func (a *tarArchive) add(ctx context.Context, name string, n *tree.Node) error {
	h := &tar.Header{
		Name:       name,
		Mode:       int64(n.Mode.Perm()),
		Uid:        int(n.UID),
		Gid:        int(n.GID),
		Uname:      n.User,
		Gname:      n.Group,
		ModTime:    n.ModTime,
		AccessTime: n.AccessTime,
		ChangeTime: n.ChangeTime,
		PAXRecords: tarXattrRecords(n.ExtendedAttributes),
		Format:     tar.FormatPAX,
	}
	if n.Mode&os.ModeSetuid != 0 {
		h.Mode |= tarISUID
	}
	if n.Mode&os.ModeSetgid != 0 {
		h.Mode |= tarISGID
	}
	if n.Mode&os.ModeSticky != 0 {
		h.Mode |= tarISVTX
	}
	switch n.Type {
	case tree.NodeFile:
		h.Typeflag = tar.TypeReg
		size, err := a.d.contentSize(n)
		if err != nil {
			return err
		}
		h.Size = size
	case tree.NodeDir:
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case tree.NodeSymlink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = n.LinkTarget
	case tree.NodeFifo:
		h.Typeflag = tar.TypeFifo
	case tree.NodeCharDev, tree.NodeDev:
		h.Typeflag = tar.TypeBlock
		if n.Type == tree.NodeCharDev {
			h.Typeflag = tar.TypeChar
		}
		h.Devmajor = int64(unix.Major(n.Device))
		h.Devminor = int64(unix.Minor(n.Device))
	default:
		a.d.g.verbosef(1, "dump: skipping %s (a %s cannot be archived)\n", name, n.Type)
		return nil
	}
	if err := a.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar header: %w", err)
	}
	if n.Type == tree.NodeFile {
		return a.d.writeContent(ctx, a.tw, n)
	}
	return nil
}

func (a *tarArchive) close() error {
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	return nil
}

// tarXattrRecords maps extended attributes to PAX records: POSIX ACLs to
// SCHILY.acl.access/default (text form), everything else to
// SCHILY.xattr.<name>.
func tarXattrRecords(xs []tree.ExtendedAttribute) map[string]string {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]string, len(xs))
	for _, x := range xs {
		switch x.Name {
		case "system.posix_acl_access", "system.posix_acl_default":
			text, err := decodePosixACL(x.Value)
			if err != nil || text == "" {
				continue
			}
			if x.Name == "system.posix_acl_access" {
				m["SCHILY.acl.access"] = text
			} else {
				m["SCHILY.acl.default"] = text
			}
		default:
			if x.Name == "" || strings.ContainsAny(x.Name, "=\x00") {
				continue // cannot be a PAX record key
			}
			m["SCHILY.xattr."+x.Name] = string(x.Value)
		}
	}
	return m
}

// POSIX ACL xattr tags (linux/posix_acl_xattr.h).
const (
	aclTagUserObj  = 0x01
	aclTagUser     = 0x02
	aclTagGroupObj = 0x04
	aclTagGroup    = 0x08
	aclTagMask     = 0x10
	aclTagOther    = 0x20
	aclXattrV2     = 2
)

// decodePosixACL turns a system.posix_acl_* value (a little-endian version
// word, then 8-byte entries of tag, permissions and id) into the text form
// "user::rw-,user:1000:r--,group::r--,mask::r--,other::---".
func decodePosixACL(b []byte) (string, error) {
	if len(b) < 4 || (len(b)-4)%8 != 0 {
		return "", fmt.Errorf("posix acl: bad length %d", len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != aclXattrV2 {
		return "", fmt.Errorf("posix acl: unsupported version %d", v)
	}
	var parts []string
	for i := 4; i+8 <= len(b); i += 8 {
		tag := binary.LittleEndian.Uint16(b[i:])
		perm := binary.LittleEndian.Uint16(b[i+2:])
		id := binary.LittleEndian.Uint32(b[i+4:])
		rwx := []byte("---")
		if perm&4 != 0 {
			rwx[0] = 'r'
		}
		if perm&2 != 0 {
			rwx[1] = 'w'
		}
		if perm&1 != 0 {
			rwx[2] = 'x'
		}
		var s string
		switch tag {
		case aclTagUserObj:
			s = "user::"
		case aclTagUser:
			s = "user:" + strconv.FormatUint(uint64(id), 10) + ":"
		case aclTagGroupObj:
			s = "group::"
		case aclTagGroup:
			s = "group:" + strconv.FormatUint(uint64(id), 10) + ":"
		case aclTagMask:
			s = "mask::"
		case aclTagOther:
			s = "other::"
		default:
			return "", fmt.Errorf("posix acl: unknown tag %#x", tag)
		}
		parts = append(parts, s+string(rwx))
	}
	return strings.Join(parts, ","), nil
}

type zipArchive struct {
	d  *dumper
	zw *zip.Writer
}

func (a *zipArchive) add(ctx context.Context, name string, n *tree.Node) error {
	h := &zip.FileHeader{Name: name, Modified: zipTime(n.ModTime), Method: zip.Store}
	switch n.Type {
	case tree.NodeFile:
		h.Method = zip.Deflate
		h.SetMode(n.Mode &^ os.ModeType)
	case tree.NodeDir:
		h.Name += "/"
		h.SetMode(n.Mode | os.ModeDir)
	case tree.NodeSymlink:
		h.SetMode(n.Mode | os.ModeSymlink)
	default:
		a.d.g.verbosef(1, "dump: skipping %s (a %s cannot be stored in a zip archive)\n", name, n.Type)
		return nil
	}
	w, err := a.zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("zip header: %w", err)
	}
	switch n.Type {
	case tree.NodeFile:
		return a.d.writeContent(ctx, w, n)
	case tree.NodeSymlink:
		if _, err := io.WriteString(w, n.LinkTarget); err != nil {
			return fmt.Errorf("zip: %w", err)
		}
	}
	return nil
}

// zipMinTime and zipMaxTime bound what a zip header can hold (MS-DOS
// dates start in 1980, the extended timestamp is 32-bit Unix seconds).
var (
	zipMinTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	zipMaxTime = time.Unix(1<<32-1, 0).UTC()
)

// zipTime clamps t into the range zip headers can store, instead of
// letting it wrap around.
func zipTime(t time.Time) time.Time {
	switch {
	case t.Before(zipMinTime):
		return zipMinTime
	case t.After(zipMaxTime):
		return zipMaxTime
	}
	return t
}

func (a *zipArchive) close() error {
	if err := a.zw.Close(); err != nil {
		return fmt.Errorf("zip: %w", err)
	}
	return nil
}
