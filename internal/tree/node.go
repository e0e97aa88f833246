// Package tree defines the Node and Tree types of cairn's repository format
// and their JSON encoding, which reproduces restic's tree blobs byte for byte.
//
// A tree blob is the JSON document {"nodes":[...]} followed by a newline; its
// ID is the SHA-256 of those bytes. Because identical bytes mean identical IDs,
// cairn and restic deduplicate each other's trees only if every byte matches.
// The encoder therefore does not use encoding/json's reflection for nodes; it
// writes the fields by hand in restic's order with encoding/json's escaping
// rules as of the Go release restic 0.14 was built with (go1.19). The
// decoder (decode.go) is hand-written too, for speed, and reproduces what
// json.Unmarshal into restic's node struct accepts and returns.
package tree

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
)

// NodeType is the kind of a node, stored as the JSON "type" string.
type NodeType string

// The node types restic knows. NodeIrregular was added by restic 0.17 for
// files Go reports as os.ModeIrregular; restic 0.14 never writes it.
const (
	NodeFile      NodeType = "file"
	NodeDir       NodeType = "dir"
	NodeSymlink   NodeType = "symlink"
	NodeDev       NodeType = "dev"     // block device
	NodeCharDev   NodeType = "chardev" // character device
	NodeFifo      NodeType = "fifo"
	NodeSocket    NodeType = "socket"
	NodeIrregular NodeType = "irregular"
)

// Known reports whether t is one of the node types above.
func (t NodeType) Known() bool {
	switch t {
	case NodeFile, NodeDir, NodeSymlink, NodeDev, NodeCharDev, NodeFifo, NodeSocket, NodeIrregular:
		return true
	}
	return false
}

// ExtendedAttribute is one extended attribute (xattr) of a node. Value is
// encoded as standard base64; a nil Value encodes as null, an empty non-nil
// Value as "".
type ExtendedAttribute struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// Node is one entry of a directory: a file, directory, symlink, device, fifo
// or socket, with its metadata.
//
// The field order and JSON names are restic's. Node has custom MarshalJSON
// and UnmarshalJSON methods; the struct tags only document the mapping.
// There is no LinkTargetRaw field: when LinkTarget is not valid UTF-8 the
// encoder adds "linktarget_raw" (base64 of the raw bytes) after "linktarget",
// and the decoder prefers "linktarget_raw" when present (restic ≥ 0.16
// behaviour; restic 0.14 stores only the U+FFFD-mangled "linktarget").
type Node struct {
	Name               string                     `json:"name"`
	Type               NodeType                   `json:"type"`
	Mode               os.FileMode                `json:"mode,omitempty"`
	ModTime            time.Time                  `json:"mtime"`
	AccessTime         time.Time                  `json:"atime"`
	ChangeTime         time.Time                  `json:"ctime"`
	UID                uint32                     `json:"uid"`
	GID                uint32                     `json:"gid"`
	User               string                     `json:"user,omitempty"`
	Group              string                     `json:"group,omitempty"`
	Inode              uint64                     `json:"inode,omitempty"`
	DeviceID           uint64                     `json:"device_id,omitempty"` // st_dev of the file
	Size               uint64                     `json:"size,omitempty"`
	Links              uint64                     `json:"links,omitempty"`
	LinkTarget         string                     `json:"linktarget,omitempty"`
	ExtendedAttributes []ExtendedAttribute        `json:"extended_attributes,omitempty"`
	GenericAttributes  map[string]json.RawMessage `json:"generic_attributes,omitempty"` // Windows-only in restic
	Device             uint64                     `json:"device,omitempty"`             // st_rdev of dev/chardev nodes
	// Content lists the data blobs of a file in order. It is never omitted:
	// an empty file must have a non-nil empty slice (encoded as []), every
	// other node type nil (encoded as null).
	Content core.IDs `json:"content"`
	// Subtree is the ID of a directory's tree blob (required for dirs).
	Subtree *core.ID `json:"subtree,omitempty"`
	// Error records why the node could not be read completely.
	Error string `json:"error,omitempty"`
}

// MarshalJSON encodes n exactly as restic does (see AppendJSON).
func (n Node) MarshalJSON() ([]byte, error) {
	return n.AppendJSON(make([]byte, 0, 256+len(n.Content)*(2*core.IDSize+3)))
}

// AppendJSON appends the JSON encoding of n to dst and returns the extended
// buffer. The encoding is byte-identical to restic's json.Marshal(node):
//   - the name goes through strconv.Quote with the outer quotes removed,
//     before the usual JSON string escaping;
//   - times are RFC 3339 with nanoseconds (trailing zeros trimmed) in the
//     time's own location, with years clamped into 0..9999 the way restic's
//     FixTime does (only the year changes);
//   - strings use encoding/json's HTML-safe escaping as of go1.19 (so \b and
//     \f are written as \u0008 and \u000c), invalid UTF-8 becomes \ufffd;
//   - omitempty fields are left out when zero; "content" is always present.
//
// The only error is an invalid GenericAttributes value.
func (n *Node) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"name":`...)
	dst = appendName(dst, n.Name)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, string(n.Type))
	if n.Mode != 0 {
		dst = append(dst, `,"mode":`...)
		dst = appendUint(dst, uint64(n.Mode))
	}
	dst = append(dst, `,"mtime":`...)
	dst = appendTime(dst, n.ModTime)
	dst = append(dst, `,"atime":`...)
	dst = appendTime(dst, n.AccessTime)
	dst = append(dst, `,"ctime":`...)
	dst = appendTime(dst, n.ChangeTime)
	dst = append(dst, `,"uid":`...)
	dst = appendUint(dst, uint64(n.UID))
	dst = append(dst, `,"gid":`...)
	dst = appendUint(dst, uint64(n.GID))
	if n.User != "" {
		dst = append(dst, `,"user":`...)
		dst = appendString(dst, n.User)
	}
	if n.Group != "" {
		dst = append(dst, `,"group":`...)
		dst = appendString(dst, n.Group)
	}
	if n.Inode != 0 {
		dst = append(dst, `,"inode":`...)
		dst = appendUint(dst, n.Inode)
	}
	if n.DeviceID != 0 {
		dst = append(dst, `,"device_id":`...)
		dst = appendUint(dst, n.DeviceID)
	}
	if n.Size != 0 {
		dst = append(dst, `,"size":`...)
		dst = appendUint(dst, n.Size)
	}
	if n.Links != 0 {
		dst = append(dst, `,"links":`...)
		dst = appendUint(dst, n.Links)
	}
	if n.LinkTarget != "" {
		dst = append(dst, `,"linktarget":`...)
		dst = appendString(dst, n.LinkTarget)
		if !validUTF8(n.LinkTarget) {
			dst = append(dst, `,"linktarget_raw":`...)
			dst = appendBase64(dst, []byte(n.LinkTarget))
		}
	}
	if len(n.ExtendedAttributes) > 0 {
		dst = append(dst, `,"extended_attributes":[`...)
		for i := range n.ExtendedAttributes {
			a := &n.ExtendedAttributes[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			dst = appendString(dst, a.Name)
			dst = append(dst, `,"value":`...)
			if a.Value == nil {
				dst = append(dst, "null"...)
			} else {
				dst = appendBase64(dst, a.Value)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if len(n.GenericAttributes) > 0 {
		// Rare (Windows-made trees only): encoding/json sorts the keys and
		// compacts the raw values, which is what restic writes.
		b, err := json.Marshal(n.GenericAttributes)
		if err != nil {
			return dst, fmt.Errorf("encode node %q: generic_attributes: %w", n.Name, err)
		}
		dst = append(dst, `,"generic_attributes":`...)
		dst = append(dst, b...)
	}
	if n.Device != 0 {
		dst = append(dst, `,"device":`...)
		dst = appendUint(dst, n.Device)
	}
	dst = append(dst, `,"content":`...)
	if n.Content == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range n.Content {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendID(dst, &n.Content[i])
		}
		dst = append(dst, ']')
	}
	if n.Subtree != nil {
		dst = append(dst, `,"subtree":`...)
		dst = appendID(dst, n.Subtree)
	}
	if n.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, n.Error)
	}
	return append(dst, '}'), nil
}

// ValidName reports whether name may appear in a tree: it must be non-empty,
// must not be "." or "..", and must not contain '/' or NUL. Such names cannot
// come from a POSIX directory listing, and restoring them would escape the
// target directory, so both the encoder and the decoder reject them.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("invalid node name: empty")
	case name == "." || name == "..":
		return fmt.Errorf("invalid node name %q", name)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Errorf("invalid node name %q: contains '/'", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("invalid node name %q: contains NUL", name)
	}
	return nil
}

// Validate checks the semantic rules restic's check applies to a node:
// a known type and a valid name, a non-nil Content for files, a Subtree for
// directories, and neither Content nor Subtree where they do not belong.
// The decoder does not call it, so that trees written by newer restic
// versions with unfamiliar types can still be listed.
func (n *Node) Validate() error {
	if err := ValidName(n.Name); err != nil {
		return err
	}
	if !n.Type.Known() {
		return fmt.Errorf("node %q: unknown type %q", n.Name, n.Type)
	}
	switch n.Type {
	case NodeFile:
		if n.Content == nil {
			return fmt.Errorf("file %q: content is null", n.Name)
		}
		if n.Subtree != nil {
			return fmt.Errorf("file %q: has a subtree", n.Name)
		}
	case NodeDir:
		if n.Subtree == nil {
			return fmt.Errorf("dir %q: no subtree", n.Name)
		}
		if n.Subtree.IsNull() {
			return fmt.Errorf("dir %q: null subtree ID", n.Name)
		}
		if len(n.Content) > 0 {
			return fmt.Errorf("dir %q: has content", n.Name)
		}
	default:
		if len(n.Content) > 0 || n.Subtree != nil {
			return fmt.Errorf("%s %q: has content or subtree", n.Type, n.Name)
		}
	}
	for i, id := range n.Content {
		if id.IsNull() {
			return fmt.Errorf("file %q: content blob %d has a null ID", n.Name, i)
		}
	}
	return nil
}
