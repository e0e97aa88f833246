package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

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
	content, size, err := a.saveStream(rd)
	if err != nil {
		return nil, err
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
		res, err := a.saveBlob(core.TreeBlob, buf, core.ID{}, 0)
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

// saveStream chunks rd like a file without a parent version and saves the
// chunks on the blob workers, as Run does for files: reading and chunking
// here, hashing, compression and encryption in parallel.
func (a *Archiver) saveStream(rd io.Reader) (core.IDs, uint64, error) {
	a.chunkSlots = make(chan struct{}, a.opts.BlobWorkers+1)
	a.blobJobs = make(chan *blobJob, a.opts.BlobWorkers*2)
	for range a.opts.BlobWorkers {
		a.blobWorkers.Add(1)
		go a.blobWorker()
	}
	defer func() {
		close(a.blobJobs)
		a.blobWorkers.Wait()
	}()
	cr, err := newChunkReader(a.pol)
	if err != nil {
		return nil, 0, err
	}
	cr.reset(&streamReaderAt{r: rd}, 0, false, nil)
	cr.deferIDs = true
	defer cr.close()
	content, size, err := a.saveChunks(cr.next)
	var fatal *fatalError
	switch {
	case err == nil:
		return content, size, nil
	case errors.As(err, &fatal):
		return nil, 0, fatal.err
	case errors.Is(err, context.Cause(a.ctx)):
		return nil, 0, err
	}
	return nil, 0, fmt.Errorf("backup: read stdin: %w", err)
}

// streamReaderAt lets chunkReader, which reads a file strictly from front
// to back with ReadAt, read a stream: each read must start where the
// previous one ended.
type streamReaderAt struct {
	r   io.Reader
	off int64 // offset of the next byte of r
}

func (s *streamReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off != s.off {
		return 0, fmt.Errorf("stream read at offset %d, next byte is %d", off, s.off)
	}
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}
