package cache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// trashPrefix starts the names of repository cache directories being
// removed: a directory is first renamed (atomically, so that exactly one
// of several concurrent clean-ups takes it) and then deleted.
const trashPrefix = ".trash-"

// DirInfo describes one repository's cache directory.
type DirInfo struct {
	ID       string    // repository config ID (the directory name)
	Path     string    // absolute path
	LastUsed time.Time // modification time, set whenever a process opens it
	Size     int64     // total size of its files; -1 if not computed
	Old      bool      // not used for longer than the max age
}

// ListDirs lists the repository cache directories in base, sorted by ID.
// A missing base is an empty list. Directories are old when not used for
// longer than maxAge (0 means DefaultMaxAge).
func ListDirs(base string, maxAge time.Duration, withSize bool) ([]DirInfo, error) {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("cache: list %s: %w", abs, err)
	}
	now := time.Now()
	var out []DirInfo
	for _, e := range ents {
		if !e.IsDir() || !IsRepoDirName(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		d := DirInfo{
			ID:       e.Name(),
			Path:     filepath.Join(abs, e.Name()),
			LastUsed: fi.ModTime(),
			Size:     -1,
			Old:      now.Sub(fi.ModTime()) > maxAge,
		}
		if withSize {
			d.Size = dirSize(d.Path)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// dirSize sums the sizes of the regular files below dir, skipping files
// removed while it walks.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished or unreadable: skip
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Cleanup removes the repository cache directories in base that were not
// used for longer than maxAge (0 means DefaultMaxAge), and leftovers of
// interrupted clean-ups. It is idempotent and safe to run concurrently
// with other clean-ups and with processes using the cache: a directory
// that vanishes meanwhile is not an error. It returns the directories it
// removed.
func Cleanup(base string, maxAge time.Duration) ([]DirInfo, error) {
	dirs, err := ListDirs(base, maxAge, false)
	if err != nil {
		return nil, err
	}
	var removed []DirInfo
	var errs []error
	for _, d := range dirs {
		if !d.Old {
			continue
		}
		ok, err := removeDir(d.Path)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed = append(removed, d)
		}
	}
	// leftovers of clean-ups that were interrupted
	if abs, err := filepath.Abs(base); err == nil {
		if ents, err := os.ReadDir(abs); err == nil {
			for _, e := range ents {
				if e.IsDir() && strings.HasPrefix(e.Name(), trashPrefix) {
					if err := removeAll(filepath.Join(abs, e.Name())); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	return removed, errors.Join(errs...)
}

// removeDir renames dir to a unique trash name next to it and deletes
// that. ok is false if dir was already gone (someone else removed it).
func removeDir(dir string) (ok bool, err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	trash := filepath.Join(filepath.Dir(dir), trashPrefix+hex.EncodeToString(rnd[:]))
	if err := os.Rename(dir, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("cache: remove %s: %w", dir, err)
	}
	return true, removeAll(trash)
}

// removeAll deletes dir and everything below it; missing entries are fine.
func removeAll(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, serr := os.Lstat(dir); errors.Is(serr, fs.ErrNotExist) {
		return nil // a concurrent clean-up finished it
	}
	return fmt.Errorf("cache: remove %s: %w", dir, err)
}
