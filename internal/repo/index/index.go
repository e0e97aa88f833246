// Package index encodes restic index files and keeps the in-memory master
// index that maps every blob to its pack.
package index

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// File is one decoded index file.
type File struct {
	Packs []PackEntry
	// Pending lists packs that a cairn prune marked for deletion (the
	// "cairn_pending" extension; restic ignores it). See docs/concurrency.md.
	Pending []Pending
}

// PackEntry lists the blobs of one pack.
type PackEntry struct {
	ID    core.ID
	Blobs []pack.Blob
}

// Pending records a pack marked for deletion since a time.
type Pending struct {
	Pack  core.ID   `json:"pack"`
	Since time.Time `json:"since"`
}

type jsonBlob struct {
	ID                 core.ID       `json:"id"`
	Type               core.BlobType `json:"type"`
	Offset             uint32        `json:"offset"`
	Length             uint32        `json:"length"`
	UncompressedLength uint32        `json:"uncompressed_length,omitempty"`
}

type jsonPack struct {
	ID    core.ID    `json:"id"`
	Blobs []jsonBlob `json:"blobs"`
}

type jsonFile struct {
	Supersedes []core.ID  `json:"supersedes,omitempty"`
	Packs      []jsonPack `json:"packs"`
	Pending    []Pending  `json:"cairn_pending,omitempty"`
}

// Encode returns the JSON form of f, as restic writes it (json.Encoder,
// trailing newline).
func Encode(f *File) ([]byte, error) {
	jf := jsonFile{Packs: make([]jsonPack, 0, len(f.Packs)), Pending: f.Pending}
	for _, p := range f.Packs {
		jp := jsonPack{ID: p.ID, Blobs: make([]jsonBlob, 0, len(p.Blobs))}
		for _, b := range p.Blobs {
			jp.Blobs = append(jp.Blobs, jsonBlob{ID: b.ID, Type: b.Type, Offset: b.Offset, Length: b.Length, UncompressedLength: b.UncompressedLength})
		}
		jf.Packs = append(jf.Packs, jp)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(jf); err != nil {
		return nil, fmt.Errorf("encode index: %w", err)
	}
	return buf.Bytes(), nil
}

// Decode parses an index file, validating every entry. v1 reports whether
// the repository is format version 1, where compressed blobs are invalid.
func Decode(buf []byte, v1 bool) (*File, error) {
	buf = bytes.TrimSpace(buf)
	if len(buf) > 0 && buf[0] == '[' {
		return nil, fmt.Errorf("decode index: legacy (pre-0.2) index format is not supported")
	}
	var jf jsonFile
	if err := json.Unmarshal(buf, &jf); err != nil {
		return nil, fmt.Errorf("decode index: %w", err)
	}
	f := &File{Packs: make([]PackEntry, 0, len(jf.Packs)), Pending: jf.Pending}
	for i, jp := range jf.Packs {
		p := PackEntry{ID: jp.ID, Blobs: make([]pack.Blob, 0, len(jp.Blobs))}
		for j, jb := range jp.Blobs {
			if jb.Type != core.DataBlob && jb.Type != core.TreeBlob {
				return nil, fmt.Errorf("decode index: pack %d blob %d: invalid type", i, j)
			}
			if jb.Length < 32 {
				return nil, fmt.Errorf("decode index: pack %v blob %v: length %d below encryption overhead", jp.ID.Str(), jb.ID.Str(), jb.Length)
			}
			if uint64(jb.Offset)+uint64(jb.Length) > 1<<32-1 {
				return nil, fmt.Errorf("decode index: pack %v blob %v: offset+length overflows", jp.ID.Str(), jb.ID.Str())
			}
			if v1 && jb.UncompressedLength != 0 {
				return nil, fmt.Errorf("decode index: pack %v blob %v: compressed blob in a version 1 repository", jp.ID.Str(), jb.ID.Str())
			}
			p.Blobs = append(p.Blobs, pack.Blob{
				BlobHandle:         core.BlobHandle{ID: jb.ID, Type: jb.Type},
				Offset:             jb.Offset,
				Length:             jb.Length,
				UncompressedLength: jb.UncompressedLength,
			})
		}
		f.Packs = append(f.Packs, p)
	}
	return f, nil
}

// SortBlobs sorts a pack's blobs by offset (the order of the pack header).
func SortBlobs(blobs []pack.Blob) {
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].Offset < blobs[j].Offset })
}
