package index

import (
	"fmt"
	"sync"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// entry is the compact value stored per blob: 16 bytes.
type entry struct {
	pack   uint32 // index into MasterIndex.packs
	offset uint32
	length uint32
	ulen   uint32
}

// Location says where a blob is stored.
type Location struct {
	Pack core.ID
	pack.Blob
}

// MasterIndex maps every blob of the repository to its pack(s). It is safe
// for concurrent use.
type MasterIndex struct {
	mu sync.RWMutex // guards every field below
	// packs is the table of pack IDs; entries refer to packs by position.
	packs   []core.ID
	packNum map[core.ID]uint32
	// blobs holds the first known location of every blob.
	blobs map[core.BlobHandle]entry
	// dups holds further locations of blobs stored in several packs.
	dups map[core.BlobHandle][]entry
	// files lists, per loaded index file, the packs it describes.
	files map[core.ID][]uint32
	// pending holds packs marked for deletion by a cairn prune.
	pending map[core.ID]Pending
	// packBlobCount counts distinct blob entries per pack (by number), to
	// answer "is this pack indexed" and for prune.
	packBlobCount []uint32
}

// NewMaster returns an empty master index.
func NewMaster() *MasterIndex {
	return &MasterIndex{
		packNum: make(map[core.ID]uint32),
		blobs:   make(map[core.BlobHandle]entry),
		dups:    make(map[core.BlobHandle][]entry),
		files:   make(map[core.ID][]uint32),
		pending: make(map[core.ID]Pending),
	}
}

func (m *MasterIndex) packNumber(id core.ID) uint32 {
	if n, ok := m.packNum[id]; ok {
		return n
	}
	n := uint32(len(m.packs))
	m.packs = append(m.packs, id)
	m.packBlobCount = append(m.packBlobCount, 0)
	m.packNum[id] = n
	return n
}

// AddPack records the blobs of a pack (as listed by a pack header or an
// index file). fileID is the index file it came from, or the null ID for
// packs not yet written to an index file.
func (m *MasterIndex) AddPack(fileID core.ID, packID core.ID, blobs []pack.Blob) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addPackLocked(fileID, packID, blobs)
}

func (m *MasterIndex) addPackLocked(fileID core.ID, packID core.ID, blobs []pack.Blob) {
	n := m.packNumber(packID)
	if !fileID.IsNull() {
		m.files[fileID] = append(m.files[fileID], n)
	}
	// A pack listed again (in two index files, or split over two entries as
	// in restic#5212, H40) merges: entries already known are skipped, the
	// others are added, so every blob of every listing can be found, as
	// restic finds them.
	for _, b := range blobs {
		e := entry{pack: n, offset: b.Offset, length: b.Length, ulen: b.UncompressedLength}
		old, ok := m.blobs[b.BlobHandle]
		switch {
		case !ok:
			m.blobs[b.BlobHandle] = e
		case old == e:
			continue
		case containsEntry(m.dups[b.BlobHandle], e):
			continue
		default:
			m.dups[b.BlobHandle] = append(m.dups[b.BlobHandle], e)
		}
		m.packBlobCount[n]++
	}
}

func containsEntry(es []entry, e entry) bool {
	for _, x := range es {
		if x == e {
			return true
		}
	}
	return false
}

// AddFile merges a decoded index file.
func (m *MasterIndex) AddFile(fileID core.ID, f *File) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[fileID]; ok && !fileID.IsNull() {
		return
	}
	m.files[fileID] = m.files[fileID][:0:0]
	for _, p := range f.Packs {
		m.addPackLocked(fileID, p.ID, p.Blobs)
	}
	for _, p := range f.Pending {
		if old, ok := m.pending[p.Pack]; !ok || p.Since.Before(old.Since) {
			m.pending[p.Pack] = p
		}
	}
}

// HasFile reports whether the index file id has been loaded.
func (m *MasterIndex) HasFile(id core.ID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.files[id]
	return ok
}

// Files returns the IDs of the loaded index files.
func (m *MasterIndex) Files() core.IDSet {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := core.NewIDSet()
	for id := range m.files {
		if !id.IsNull() {
			s.Insert(id)
		}
	}
	return s
}

func (m *MasterIndex) location(h core.BlobHandle, e entry) Location {
	return Location{Pack: m.packs[e.pack], Blob: pack.Blob{BlobHandle: h, Offset: e.offset, Length: e.length, UncompressedLength: e.ulen}}
}

// Lookup returns the first known location of h.
func (m *MasterIndex) Lookup(h core.BlobHandle) (Location, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.blobs[h]
	if !ok {
		return Location{}, false
	}
	return m.location(h, e), true
}

// LookupAll returns every known location of h.
func (m *MasterIndex) LookupAll(h core.BlobHandle) []Location {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.blobs[h]
	if !ok {
		return nil
	}
	out := []Location{m.location(h, e)}
	for _, d := range m.dups[h] {
		out = append(out, m.location(h, d))
	}
	return out
}

// Has reports whether h is indexed.
func (m *MasterIndex) Has(h core.BlobHandle) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.blobs[h]
	return ok
}

// Count returns the number of distinct blobs of type t (InvalidBlob: all).
func (m *MasterIndex) Count(t core.BlobType) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if t == core.InvalidBlob {
		return len(m.blobs)
	}
	n := 0
	for h := range m.blobs {
		if h.Type == t {
			n++
		}
	}
	return n
}

// HasPack reports whether the pack is listed with at least one blob.
func (m *MasterIndex) HasPack(id core.ID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n, ok := m.packNum[id]
	return ok && m.packBlobCount[n] > 0
}

// Packs returns the set of indexed packs.
func (m *MasterIndex) Packs() core.IDSet {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := core.NewIDSet()
	for i, id := range m.packs {
		if m.packBlobCount[i] > 0 {
			s.Insert(id)
		}
	}
	return s
}

// Pending returns the packs marked for deletion.
func (m *MasterIndex) Pending() map[core.ID]Pending {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[core.ID]Pending, len(m.pending))
	for k, v := range m.pending {
		out[k] = v
	}
	return out
}

// Each calls fn for every blob location (duplicates included), grouped by
// no particular order. fn must not call back into m.
func (m *MasterIndex) Each(fn func(Location)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for h, e := range m.blobs {
		fn(m.location(h, e))
	}
	for h, es := range m.dups {
		for _, e := range es {
			fn(m.location(h, e))
		}
	}
}

// PackContents returns, per pack, its blobs sorted by offset.
func (m *MasterIndex) PackContents() map[core.ID][]pack.Blob {
	out := make(map[core.ID][]pack.Blob)
	m.Each(func(l Location) { out[l.Pack] = append(out[l.Pack], l.Blob) })
	for _, bl := range out {
		SortBlobs(bl)
	}
	return out
}

// FilePacks returns the packs described by index file id.
func (m *MasterIndex) FilePacks(id core.ID) (core.IDs, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	nums, ok := m.files[id]
	if !ok {
		return nil, fmt.Errorf("index file %v not loaded", id.Str())
	}
	out := make(core.IDs, 0, len(nums))
	for _, n := range nums {
		out = append(out, m.packs[n])
	}
	return out, nil
}
