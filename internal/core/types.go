package core

import (
	"encoding/json"
	"fmt"
	"sort"
)

// BlobType is the kind of a blob. The numeric values are cairn's own; the
// pack header type byte is computed separately by the pack package.
type BlobType uint8

const (
	InvalidBlob BlobType = iota
	DataBlob
	TreeBlob
	NumBlobTypes // number of blob types, for arrays indexed by BlobType
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("invalid(%d)", uint8(t))
}

// MarshalJSON encodes t as "data" or "tree".
func (t BlobType) MarshalJSON() ([]byte, error) {
	switch t {
	case DataBlob:
		return []byte(`"data"`), nil
	case TreeBlob:
		return []byte(`"tree"`), nil
	}
	return nil, fmt.Errorf("cannot encode blob type %d", uint8(t))
}

// UnmarshalJSON decodes "data" or "tree".
func (t *BlobType) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"data"`:
		*t = DataBlob
	case `"tree"`:
		*t = TreeBlob
	default:
		return fmt.Errorf("invalid blob type %s", b)
	}
	return nil
}

// BlobHandle names a blob: deduplication is by (type, ID).
type BlobHandle struct {
	ID   ID
	Type BlobType
}

func (h BlobHandle) String() string { return h.Type.String() + "/" + h.ID.Str() }

// BlobSet is a set of blob handles.
type BlobSet map[BlobHandle]struct{}

// NewBlobSet returns a set holding hs.
func NewBlobSet(hs ...BlobHandle) BlobSet {
	s := make(BlobSet, len(hs))
	for _, h := range hs {
		s[h] = struct{}{}
	}
	return s
}

// Has reports whether h is in s.
func (s BlobSet) Has(h BlobHandle) bool { _, ok := s[h]; return ok }

// Insert adds h to s.
func (s BlobSet) Insert(h BlobHandle) { s[h] = struct{}{} }

// Delete removes h from s.
func (s BlobSet) Delete(h BlobHandle) { delete(s, h) }

// FileType is the kind of a repository file; its String is the directory
// name used by every backend layout.
type FileType uint8

const (
	PackFile FileType = iota + 1
	IndexFile
	KeyFile
	LockFile
	SnapshotFile
	ConfigFile
)

// AllFileTypes lists the file types that live in directories (not config).
var AllFileTypes = []FileType{PackFile, IndexFile, KeyFile, LockFile, SnapshotFile}

func (t FileType) String() string {
	switch t {
	case PackFile:
		return "data"
	case IndexFile:
		return "index"
	case KeyFile:
		return "keys"
	case LockFile:
		return "locks"
	case SnapshotFile:
		return "snapshots"
	case ConfigFile:
		return "config"
	}
	return fmt.Sprintf("invalid(%d)", uint8(t))
}

// ParseFileType maps a directory name ("data", "index", …, "config") to its type.
func ParseFileType(s string) (FileType, error) {
	for _, t := range append(AllFileTypes, ConfigFile) {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("invalid file type %q", s)
}

func sortIDs(ids IDs) { sort.Sort(ids) }

var _ json.Marshaler = ID{}
