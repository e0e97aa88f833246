package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/restic/chunker"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/tree"
)

// RunStdin saves the data read from rd as one file named name (a path
// relative to the root: "dir/file" creates the directories) with the
// metadata restic gives stdin backups: mode 0644, all times now, the
// current uid and gid.
func (a *Archiver) RunStdin(ctx context.Context, rd io.Reader, name string, now time.Time) (*Result, error) {
	clean := path.Clean("/" + name)
	if clean == "/" {
		return nil, errors.New("backup: --stdin-filename is empty")
	}
	a.ctx, a.cancel = context.WithCancelCause(ctx)
	defer a.cancel(nil)
	start := time.Now()
	ch := chunker.New(rd, a.pol)
	content := core.IDs{}
	var size uint64
	for {
		buf := getBuf(chunker.MaxSize)
		c, err := ch.Next(buf)
		if err == io.EOF {
			putBuf(buf)
			break
		}
		if err != nil {
			putBuf(buf)
			return nil, fmt.Errorf("backup: read stdin: %w", err)
		}
		id, err := a.saveBlobNow(c.Data)
		putBuf(c.Data)
		if err != nil {
			return nil, err
		}
		content = append(content, id)
		size += uint64(c.Length)
	}
	node := &tree.Node{Name: path.Base(clean), Type: tree.NodeFile, Mode: 0o644, ModTime: now, AccessTime: now, ChangeTime: now,
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Size: size, Content: content}
	// wrap the node in its parent directories, innermost first
	dir := path.Dir(clean)
	nodes := []*tree.Node{node}
	for {
		buf, err := tree.EncodeTree(nodes)
		if err != nil {
			return nil, err
		}
		res, err := a.saveBlob(core.TreeBlob, buf, core.ID{})
		if err != nil {
			return nil, err
		}
		if !res.Known {
			a.st.treeBlobs.Add(1)
		}
		id := res.ID
		if dir == "/" {
			if !a.opts.DryRun {
				if err := a.repo.Flush(ctx); err != nil {
					return nil, fmt.Errorf("backup: flush: %w", err)
				}
			}
			a.st.filesNew.Add(1)
			a.st.filesProcessed.Add(1)
			a.st.bytesProcessed.Add(size)
			return &Result{Tree: id, Summary: snapshot.Summary{BackupStart: start, BackupEnd: time.Now(),
				FilesNew: 1, DataBlobs: int(a.st.dataBlobs.Load()), TreeBlobs: int(a.st.treeBlobs.Load()),
				DataAdded: a.st.dataAdded.Load(), DataAddedPacked: a.st.dataAddedPacked.Load(),
				TotalFilesProcessed: 1, TotalBytesProcessed: size}}, nil
		}
		nodes = []*tree.Node{{Name: path.Base(dir), Type: tree.NodeDir, Mode: os.ModeDir | 0o755, ModTime: now, AccessTime: now, ChangeTime: now,
			UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Subtree: &id}}
		dir = path.Dir(dir)
	}
}
