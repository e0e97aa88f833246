package fsnode

import "sync"

// HardlinkIndex remembers, for files that had several hard links when they
// were backed up, which restored path came first, keyed by the node's
// (DeviceID, Inode). The restorer consults it for every non-directory node
// with Links > 1: the first occurrence is restored normally, later ones
// become os.Link(first, path). Inodes are only unique per device, hence the
// pair. The zero value is ready to use and it is safe for concurrent use.
//
// The first path must exist before a later one is linked to it; a restorer
// that creates files in tree order (and fills them in later) satisfies that.
type HardlinkIndex struct {
	mu    sync.Mutex // guards first
	first map[hardlinkKey]string
}

type hardlinkKey struct{ dev, ino uint64 }

// NewHardlinkIndex returns an empty index.
func NewHardlinkIndex() *HardlinkIndex { return &HardlinkIndex{} }

// LoadOrStore returns the first path recorded for (deviceID, inode) and
// true, or records path as the first one and returns path and false.
func (h *HardlinkIndex) LoadOrStore(deviceID, inode uint64, path string) (first string, loaded bool) {
	k := hardlinkKey{deviceID, inode}
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.first[k]; ok {
		return p, true
	}
	if h.first == nil {
		h.first = make(map[hardlinkKey]string)
	}
	h.first[k] = path
	return path, false
}

// Lookup returns the first path recorded for (deviceID, inode), if any.
func (h *HardlinkIndex) Lookup(deviceID, inode uint64) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.first[hardlinkKey{deviceID, inode}]
	return p, ok
}

// Forget removes the entry for (deviceID, inode), e.g. when restoring the
// first path failed and a later link should become the first instead.
func (h *HardlinkIndex) Forget(deviceID, inode uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.first, hardlinkKey{deviceID, inode})
}

// Len returns the number of recorded inodes.
func (h *HardlinkIndex) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.first)
}
