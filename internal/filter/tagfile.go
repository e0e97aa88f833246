package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TagFile is an --exclude-if-present spec: a directory holding a file Name
// (that starts with Header, when Header is set) has its contents excluded,
// except the tag file itself; the directory entry stays.
type TagFile struct {
	Name   string
	Header []byte
}

// CacheDirTag is --exclude-caches: the Cache Directory Tagging Standard's
// CACHEDIR.TAG with its signature line.
var CacheDirTag = TagFile{Name: "CACHEDIR.TAG", Header: []byte("Signature: 8a477f597d28d172789f06886806bc55")}

// ParseTagFile parses "NAME[:HEADER]" (split at the first ':'). An empty
// NAME is an error; an empty HEADER means presence alone is enough. NAME is
// joined to the directory as given, so "sub/FILE" tests a file in a
// subdirectory, as in restic.
func ParseTagFile(spec string) (TagFile, error) {
	name, header, _ := strings.Cut(spec, ":")
	if name == "" {
		return TagFile{}, fmt.Errorf("parse --exclude-if-present %q: no name for exclusion tagfile provided", spec)
	}
	t := TagFile{Name: name}
	if header != "" {
		t.Header = []byte(header)
	}
	return t, nil
}

// String returns the spec ParseTagFile reads.
func (t TagFile) String() string {
	if len(t.Header) == 0 {
		return t.Name
	}
	return t.Name + ":" + string(t.Header)
}

// ErrTagMismatch is wrapped by Check's error when the tag file exists but
// does not start with the header.
var ErrTagMismatch = errors.New("invalid signature in exclusion tagfile")

// Check reports whether the contents of dir are excluded by t. A missing
// tag file gives (false, nil). When the tag file exists but cannot be read
// or its header does not match, the directory is not excluded and the error
// says why; callers report it as a warning and carry on, as restic does.
func (t TagFile) Check(ctx context.Context, dir string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("check tag file in %s: %w", dir, err)
	}
	name := filepath.Join(dir, t.Name)
	if _, err := os.Lstat(name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("check tag file: %w", err)
	}
	if len(t.Header) == 0 {
		return true, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return false, fmt.Errorf("check tag file: %w", err)
	}
	defer f.Close()
	buf := make([]byte, len(t.Header))
	if _, err := io.ReadFull(f, buf); err != nil {
		return false, fmt.Errorf("check tag file %s: could not read signature: %w", name, err)
	}
	if !bytes.Equal(buf, t.Header) {
		return false, fmt.Errorf("check tag file %s: %w", name, ErrTagMismatch)
	}
	return true, nil
}

// ExcludesChild reports whether the entry called child of a directory that
// Check found tagged is excluded: everything but the tag file itself.
func (t TagFile) ExcludesChild(child string) bool { return child != t.Name }

// ParseSize parses an --exclude-larger-than value: a decimal byte count
// with an optional suffix b/B (bytes), k/K, m/M, g/G or t/T (powers of
// 1024). Unlike restic 0.14, negative values and values that overflow
// int64 are errors (restic wraps them and then excludes every file).
func ParseSize(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("parse size: expected size, got empty string")
	}
	num, unit := s, int64(1)
	switch s[len(s)-1] {
	case 'b', 'B':
		num = s[:len(s)-1]
	case 'k', 'K':
		num, unit = s[:len(s)-1], 1<<10
	case 'm', 'M':
		num, unit = s[:len(s)-1], 1<<20
	case 'g', 'G':
		num, unit = s[:len(s)-1], 1<<30
	case 't', 'T':
		num, unit = s[:len(s)-1], 1<<40
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse size %q: %w", s, err)
	}
	if v < 0 {
		return 0, fmt.Errorf("parse size %q: negative", s)
	}
	if v > (1<<63-1)/unit {
		return 0, fmt.Errorf("parse size %q: %w", s, strconv.ErrRange)
	}
	return v * unit, nil
}

// TooLarge is the --exclude-larger-than test: every entry except
// directories is excluded when its size exceeds limit (restic also applies
// it to symlinks, whose size is the length of their target).
func TooLarge(limit int64, fi fs.FileInfo) bool {
	return !fi.IsDir() && fi.Size() > limit
}
