// Package mem is an in-memory backend for fast unit tests.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// Backend keeps files in a map.
type Backend struct {
	mu    sync.Mutex // guards files
	files map[backend.Handle][]byte
}

// New returns an empty in-memory backend.
func New() *Backend { return &Backend{files: make(map[backend.Handle][]byte)} }

var _ backend.Backend = (*Backend)(nil)

// Location implements backend.Backend.
func (b *Backend) Location() string { return "mem:" }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return 8 }

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	buf, err := io.ReadAll(rd)
	if err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if int64(len(buf)) != rd.Length() {
		return fmt.Errorf("save %v: read %d bytes, want %d", h, len(buf), rd.Length())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.files[h]; ok {
		return fmt.Errorf("save %v: %w", h, backend.ErrAlreadyExists)
	}
	b.files[h] = buf
	return nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	buf, ok := b.files[h]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("load %v: %w", h, backend.ErrNotExist)
	}
	if offset < 0 || length < 0 || offset > int64(len(buf)) {
		return fmt.Errorf("load %v: invalid range offset %d length %d (size %d)", h, offset, length, len(buf))
	}
	buf = buf[offset:]
	if length > 0 {
		if length > len(buf) {
			return fmt.Errorf("load %v: range %d+%d beyond end of file: %w", h, offset, length, io.ErrUnexpectedEOF)
		}
		buf = buf[:length]
	}
	return fn(bytes.NewReader(buf))
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return backend.FileInfo{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	buf, ok := b.files[h]
	if !ok {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, backend.ErrNotExist)
	}
	return backend.FileInfo{Name: h.Name, Size: int64(len(buf))}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	b.mu.Lock()
	var infos []backend.FileInfo
	for h, buf := range b.files {
		if h.Type == t {
			infos = append(infos, backend.FileInfo{Name: h.Name, Size: int64(len(buf))})
		}
	}
	b.mu.Unlock()
	for _, fi := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.files, h)
	return nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error { return nil }
