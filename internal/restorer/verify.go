package restorer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/bufpool"
	"github.com/cairn-backup/cairn/internal/core"
)

// verify rereads every restored file and checks each blob's hash.
func (rs *restorer) verify(ctx context.Context) (uint64, []error) {
	var n atomic.Uint64
	var mu sync.Mutex // guards errs
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rs.opts.Workers)
	for _, fs := range rs.files {
		if fs.failed.Load() {
			continue
		}
		g.Go(func() error {
			if err := rs.verifyFile(gctx, fs); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("verify %s: %w", fs.path, err))
				mu.Unlock()
				return nil
			}
			n.Add(1)
			return nil
		})
	}
	_ = g.Wait()
	return n.Load(), errs
}

func (rs *restorer) verifyFile(ctx context.Context, fs *fileState) error {
	f, err := os.Open(fs.path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if uint64(fi.Size()) != fs.node.Size {
		return fmt.Errorf("size %d, snapshot says %d", fi.Size(), fs.node.Size)
	}
	idx := rs.r.Index()
	var buf []byte
	defer func() { bufpool.Put(buf) }()
	var off int64
	for _, id := range fs.node.Content {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		loc, ok := idx.Lookup(core.BlobHandle{ID: id, Type: core.DataBlob})
		if !ok {
			return fmt.Errorf("blob %v not in index", id.Str())
		}
		n := int(loc.DataLength())
		if cap(buf) < n {
			bufpool.Put(buf)
			buf = bufpool.Get(n)
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if core.Hash(buf) != id {
			return fmt.Errorf("content at offset %d does not match blob %v", off, id.Str())
		}
		off += int64(n)
	}
	var one [1]byte
	if n, _ := f.ReadAt(one[:], int64(fs.node.Size)); n != 0 {
		return errors.New("file is longer than in the snapshot")
	}
	return nil
}
