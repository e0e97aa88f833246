package tree

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/internal/core"
)

// This file is a hand-written decoder for tree blobs. It replaces
// json.Unmarshal into restic's node struct shape, which used to be the
// largest CPU cost of backup, restore and check, and it is meant to be
// indistinguishable from it: it accepts and rejects exactly the inputs
// encoding/json (the default, "v1" implementation) accepted and rejected,
// and produces deeply equal values. In particular it reproduces:
//
//   - full JSON syntax validation (including inside ignored values, the
//     nesting limit of 10000 and trailing data), but no UTF-8 validation:
//     invalid bytes in strings become U+FFFD, like unpaired surrogates in
//     \u escapes;
//   - case-insensitive key matching with Unicode simple folding (so
//     "NAME", "Name" and "nameſ"-style keys hit the same field), the last
//     occurrence of a key winning;
//   - null leaving strings, numbers and times unchanged, but clearing
//     slices, maps and pointers;
//   - decoding a repeated array key into the slice already there, element
//     by element: struct elements keep the fields the new value omits, and
//     elements truncated by a shorter array reappear when a later array is
//     longer, until an empty array or null starts over;
//   - []byte from base64 strings or from arrays of numbers 0..255;
//   - numbers only as plain non-negative integers that fit the field;
//   - times through time.Time.UnmarshalJSON on the raw string;
//   - content and subtree IDs as 64 hex digits of either case after
//     unescaping, content null versus [];
//   - the post-processing of the old decoder: restic's name unquoting,
//     ValidName, linktarget_raw overriding linktarget, strict order.
//
// reference_test.go keeps the encoding/json version; the differential tests
// and FuzzDecodeTreeMatchesReference compare the two.

// maxNestingDepth is encoding/json's limit on nested arrays and objects.
const maxNestingDepth = 10000

// nodeState is a node being decoded: the Node itself plus the parts whose
// final form is only known once the whole document has been read.
type nodeState struct {
	Node
	// rawLink is the decoded linktarget_raw; non-nil replaces LinkTarget.
	rawLink []byte
	// subtree backs Node.Subtree when hasSubtree is set.
	subtree    core.ID
	hasSubtree bool
	// contentSet tells a content array (possibly empty) from null or
	// absent; the IDs are d.ids[contentOff:contentOff+contentLen].
	contentSet bool
	contentOff int
	contentLen int
}

// decoder holds the state of one DecodeTree or Node.UnmarshalJSON call.
type decoder struct {
	bufs  *scratchBufs // where scratch, ids and nodes came from
	data  []byte
	pos   int
	depth int // open arrays and objects around pos
	// scratch holds the last unescaped string; valid until the next one.
	scratch []byte
	// ids collects the content IDs of all nodes in document order.
	ids []core.ID
	// nodes is the "nodes" array; entries past len are either nil or
	// nodes an earlier, longer "nodes" array filled (see nodesValue).
	nodes []*nodeState
	// slab hands out nodeStates in small batches to save allocations.
	slab []nodeState
	// lastUser and lastGroup let equal user and group names share memory.
	lastUser, lastGroup string
	// lastTime is the time last decoded from the string lastTimeRaw.
	lastTimeRaw []byte
	lastTime    time.Time
	// zone is the last fixed zone oddZoneTime made, for zoneOffset.
	zone       *time.Location
	zoneOffset int
}

// DecodeTree parses a tree blob. Unknown top-level keys and unknown node keys
// are ignored (as restic does); a missing or null "nodes" gives an empty tree.
// It fails on malformed JSON, null nodes, names that cannot be unquoted or
// fail ValidName, invalid IDs or times, and names that are not strictly
// ascending. Semantic checks are left to Node.Validate.
//
// It accepts exactly what json.Unmarshal into restic's node structure
// accepts, with the same results (see decode.go).
func DecodeTree(buf []byte) (*Tree, error) {
	var d decoder
	d.init(buf)
	defer d.release()
	if err := d.treeDocument(); err != nil {
		return nil, fmt.Errorf("decode tree: %w", err)
	}
	t := &Tree{Nodes: make([]*Node, len(d.nodes))}
	for i, ns := range d.nodes {
		if ns == nil {
			return nil, fmt.Errorf("decode tree: node %d is null", i)
		}
		if err := ns.finishName(); err != nil {
			return nil, fmt.Errorf("decode tree: node %d: %w", i, err)
		}
		if i > 0 {
			if err := checkOrder(t.Nodes[i-1].Name, ns.Name); err != nil {
				return nil, fmt.Errorf("decode tree: %w", err)
			}
		}
		t.Nodes[i] = &ns.Node
	}
	d.finishNodes()
	return t, nil
}

// UnmarshalJSON decodes one node as restic does: the name is unquoted with
// strconv.Unquote and "linktarget_raw", when present, replaces "linktarget".
// Unknown keys are ignored. The name is also checked with ValidName.
func (n *Node) UnmarshalJSON(data []byte) error {
	var d decoder
	d.init(data)
	defer d.release()
	ns := new(nodeState)
	if err := d.nodeDocument(ns); err != nil {
		return fmt.Errorf("decode node: %w", err)
	}
	if err := ns.finishName(); err != nil {
		return err
	}
	d.nodes = append(d.nodes, ns)
	d.finishNodes()
	*n = ns.Node
	return nil
}

// scratchBufs are a decoder's working buffers, reused across calls. Nothing
// a decoder returns points into them.
type scratchBufs struct {
	scratch []byte
	ids     []core.ID
	nodes   []*nodeState // all nil
}

var scratchPool = sync.Pool{New: func() any { return new(scratchBufs) }}

// maxPooledLen bounds the buffers kept in scratchPool (in elements; the
// largest, ids, then holds 2 MiB).
const maxPooledLen = 1 << 16

// init prepares d to decode data, with buffers from scratchPool.
func (d *decoder) init(data []byte) {
	b := scratchPool.Get().(*scratchBufs)
	*d = decoder{data: data, bufs: b, scratch: b.scratch[:0], ids: b.ids[:0], nodes: b.nodes[:0]}
}

// release returns d's buffers to scratchPool; d must not be used after.
func (d *decoder) release() {
	clear(d.nodes[:cap(d.nodes)])
	b := d.bufs
	*b = scratchBufs{}
	if cap(d.scratch) <= maxPooledLen {
		b.scratch = d.scratch[:0]
	}
	if cap(d.ids) <= maxPooledLen {
		b.ids = d.ids[:0]
	}
	if cap(d.nodes) <= maxPooledLen {
		b.nodes = d.nodes[:0]
	}
	*d = decoder{}
	scratchPool.Put(b)
}

// finishName unquotes the name the way restic quotes it and checks it.
func (ns *nodeState) finishName() error {
	name, err := unquoteName(ns.Name)
	if err != nil {
		return fmt.Errorf("name %q: %w", ns.Name, err)
	}
	if err := ValidName(name); err != nil {
		return err
	}
	ns.Name = name
	return nil
}

// finishNodes fills in link targets, subtrees and contents of d.nodes, all
// non-nil. The IDs of nearby nodes share one allocation.
func (d *decoder) finishNodes() {
	const idsPerAlloc = 1024
	remaining := 0
	for _, ns := range d.nodes {
		if ns.contentSet {
			remaining += ns.contentLen
		}
	}
	var pool []core.ID
	for _, ns := range d.nodes {
		if ns.rawLink != nil {
			ns.LinkTarget = string(ns.rawLink)
			ns.rawLink = nil
		}
		if ns.hasSubtree {
			ns.Subtree = &ns.subtree
		}
		if !ns.contentSet {
			continue
		}
		k := ns.contentLen
		if k == 0 {
			ns.Content = core.IDs{}
			continue
		}
		if len(pool) < k {
			pool = make([]core.ID, max(k, min(idsPerAlloc, remaining)))
		}
		copy(pool, d.ids[ns.contentOff:ns.contentOff+k])
		ns.Content = core.IDs(pool[:k:k])
		pool = pool[k:]
		remaining -= k
	}
}

// newNode returns a zero nodeState, allocating a few at a time (few enough
// that a retained node does not pin much memory).
func (d *decoder) newNode() *nodeState {
	if len(d.slab) == 0 {
		// Guess the remaining count from the average node size so far.
		const maxBatch = 64
		avg := 400
		if k := len(d.nodes); k > 0 && d.pos > 0 {
			avg = max(d.pos/k, 64)
		}
		d.slab = make([]nodeState, min(max((len(d.data)-d.pos)/avg+1, 1), maxBatch))
	}
	ns := &d.slab[0]
	d.slab = d.slab[1:]
	return ns
}

// Errors.

// errEOF is what encoding/json reports for truncated input.
var errEOF = errors.New("unexpected end of JSON input")

// syntaxError describes the unexpected byte at d.pos (or the end of input).
func (d *decoder) syntaxError(context string) error {
	if d.pos >= len(d.data) {
		return errEOF
	}
	return fmt.Errorf("invalid character %q %s (offset %d)", rune(d.data[d.pos]), context, d.pos)
}

// typeError reports a value of the wrong kind for field (d.pos is at it).
func (d *decoder) typeError(field, goType string) error {
	var kind string
	switch d.peek() {
	case '"':
		kind = "string"
	case '{':
		kind = "object"
	case '[':
		kind = "array"
	case 't', 'f':
		kind = "bool"
	case 'n':
		kind = "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		kind = "number"
	default:
		return d.syntaxError("looking for beginning of value")
	}
	return fmt.Errorf("cannot unmarshal %s into %s of type %s (offset %d)", kind, field, goType, d.pos)
}

// Documents.

// treeDocument decodes {"nodes":[...]} into d.nodes.
func (d *decoder) treeDocument() error {
	d.skipSpace()
	switch d.peek() {
	case 'n':
		if err := d.literal("null"); err != nil {
			return err
		}
	case '{':
		if err := d.treeObject(); err != nil {
			return err
		}
	default:
		return d.typeError("tree", "object")
	}
	return d.end()
}

// nodeDocument decodes a single node object (or null) into ns.
func (d *decoder) nodeDocument(ns *nodeState) error {
	d.skipSpace()
	switch d.peek() {
	case 'n':
		if err := d.literal("null"); err != nil {
			return err
		}
	case '{':
		if err := d.nodeObject(ns); err != nil {
			return err
		}
	default:
		return d.typeError("node", "object")
	}
	return d.end()
}

// end checks that only white space follows the top-level value.
func (d *decoder) end() error {
	d.skipSpace()
	if d.pos < len(d.data) {
		return d.syntaxError("after top-level value")
	}
	return nil
}

// Objects and arrays.

// enter opens an array or object at d.pos.
func (d *decoder) enter() error {
	d.depth++
	if d.depth > maxNestingDepth {
		return fmt.Errorf("exceeded max depth (offset %d)", d.pos)
	}
	d.pos++
	d.skipSpace()
	return nil
}

// objectKey reads a key and the colon after it, returning the unescaped key
// (valid until the next string is unescaped). d.pos must be at the key.
func (d *decoder) objectKey() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.syntaxError("looking for beginning of object key string")
	}
	key, err := d.stringBytes()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.peek() != ':' {
		return nil, d.syntaxError("after object key")
	}
	d.pos++
	d.skipSpace()
	return key, nil
}

// next moves past the ',' or the closing byte after a member or element.
// It reports whether the container ended.
func (d *decoder) next(closing byte) (bool, error) {
	d.skipSpace()
	switch d.peek() {
	case ',':
		d.pos++
		d.skipSpace()
		return false, nil
	case closing:
		d.pos++
		d.depth--
		return true, nil
	}
	if closing == '}' {
		return false, d.syntaxError("after object key:value pair")
	}
	return false, d.syntaxError("after array element")
}

// treeObject decodes the top-level object.
func (d *decoder) treeObject() error {
	if err := d.enter(); err != nil {
		return err
	}
	if d.peek() == '}' {
		d.pos++
		d.depth--
		return nil
	}
	for {
		key, err := d.objectKey()
		if err != nil {
			return err
		}
		if string(key) == "nodes" || foldedEqual(key, "NODES") {
			err = d.nodesValue()
		} else {
			err = d.skipValue()
		}
		if err != nil {
			return err
		}
		if done, err := d.next('}'); done || err != nil {
			return err
		}
	}
}

// nodesValue decodes the "nodes" array into d.nodes. Like encoding/json it
// decodes into the nodes already there, so that a repeated "nodes" key
// merges into the earlier nodes, and nodes beyond a shorter array's end
// stay in d.nodes's spare capacity for a later, longer one.
func (d *decoder) nodesValue() error {
	switch d.peek() {
	case 'n':
		d.resetNodes()
		return d.literal("null")
	case '[':
	default:
		return d.typeError("nodes", "array of nodes")
	}
	if err := d.enter(); err != nil {
		return err
	}
	i := 0
	if d.peek() == ']' {
		d.pos++
		d.depth--
	} else {
		for {
			if i >= len(d.nodes) {
				// slices.Grow keeps the spare capacity's contents.
				d.nodes = slices.Grow(d.nodes, 1)[:i+1]
			}
			switch d.peek() {
			case 'n':
				d.nodes[i] = nil
				if err := d.literal("null"); err != nil {
					return err
				}
			case '{':
				if d.nodes[i] == nil {
					d.nodes[i] = d.newNode()
				}
				if err := d.nodeObject(d.nodes[i]); err != nil {
					return err
				}
			default:
				return d.typeError(fmt.Sprintf("node %d", i), "object")
			}
			i++
			if done, err := d.next(']'); err != nil {
				return err
			} else if done {
				break
			}
		}
	}
	if i == 0 {
		d.resetNodes()
	} else {
		d.nodes = d.nodes[:i]
	}
	return nil
}

// resetNodes forgets all nodes, including the spare capacity's.
func (d *decoder) resetNodes() {
	clear(d.nodes[:cap(d.nodes)])
	d.nodes = d.nodes[:0]
}

// Node fields, numbered for the key switch.
const (
	fieldUnknown = iota
	fieldName
	fieldType
	fieldMode
	fieldMtime
	fieldAtime
	fieldCtime
	fieldUID
	fieldGID
	fieldUser
	fieldGroup
	fieldInode
	fieldDeviceID
	fieldSize
	fieldLinks
	fieldLinkTarget
	fieldLinkTargetRaw
	fieldExtendedAttributes
	fieldGenericAttributes
	fieldDevice
	fieldContent
	fieldSubtree
	fieldError
)

// nodeField maps a key to a node field: exactly, or else case-insensitively
// as encoding/json does.
func nodeField(key []byte) int {
	switch string(key) {
	case "name":
		return fieldName
	case "type":
		return fieldType
	case "mode":
		return fieldMode
	case "mtime":
		return fieldMtime
	case "atime":
		return fieldAtime
	case "ctime":
		return fieldCtime
	case "uid":
		return fieldUID
	case "gid":
		return fieldGID
	case "user":
		return fieldUser
	case "group":
		return fieldGroup
	case "inode":
		return fieldInode
	case "device_id":
		return fieldDeviceID
	case "size":
		return fieldSize
	case "links":
		return fieldLinks
	case "linktarget":
		return fieldLinkTarget
	case "linktarget_raw":
		return fieldLinkTargetRaw
	case "extended_attributes":
		return fieldExtendedAttributes
	case "generic_attributes":
		return fieldGenericAttributes
	case "device":
		return fieldDevice
	case "content":
		return fieldContent
	case "subtree":
		return fieldSubtree
	case "error":
		return fieldError
	}
	var buf [32]byte
	folded, ok := foldKey(buf[:0], key)
	if !ok {
		return fieldUnknown
	}
	switch string(folded) {
	case "NAME":
		return fieldName
	case "TYPE":
		return fieldType
	case "MODE":
		return fieldMode
	case "MTIME":
		return fieldMtime
	case "ATIME":
		return fieldAtime
	case "CTIME":
		return fieldCtime
	case "UID":
		return fieldUID
	case "GID":
		return fieldGID
	case "USER":
		return fieldUser
	case "GROUP":
		return fieldGroup
	case "INODE":
		return fieldInode
	case "DEVICE_ID":
		return fieldDeviceID
	case "SIZE":
		return fieldSize
	case "LINKS":
		return fieldLinks
	case "LINKTARGET":
		return fieldLinkTarget
	case "LINKTARGET_RAW":
		return fieldLinkTargetRaw
	case "EXTENDED_ATTRIBUTES":
		return fieldExtendedAttributes
	case "GENERIC_ATTRIBUTES":
		return fieldGenericAttributes
	case "DEVICE":
		return fieldDevice
	case "CONTENT":
		return fieldContent
	case "SUBTREE":
		return fieldSubtree
	case "ERROR":
		return fieldError
	}
	return fieldUnknown
}

// foldKey appends key folded the way encoding/json matches field names: ASCII
// letters upper-cased, other runes replaced by the smallest rune of their
// simple case-folding orbit (so U+212A KELVIN SIGN becomes 'K' and U+017F
// LONG S becomes 'S'). It gives up (false) once the result outgrows dst's
// capacity, which is larger than any field name.
func foldKey(dst, key []byte) ([]byte, bool) {
	for i := 0; i < len(key); {
		if len(dst) == cap(dst) {
			return dst, false
		}
		c := key[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		if cap(dst)-len(dst) < utf8.UTFMax {
			return dst, false
		}
		dst = utf8.AppendRune(dst, foldRune(r))
		i += n
	}
	return dst, true
}

// foldRune returns the smallest rune in r's simple case-folding orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// foldedEqual reports whether key folds to upper (an upper-case ASCII name).
func foldedEqual(key []byte, upper string) bool {
	var buf [32]byte
	folded, ok := foldKey(buf[:0], key)
	return ok && string(folded) == upper
}

// nodeObject decodes a node object into ns, keeping the fields it omits.
func (d *decoder) nodeObject(ns *nodeState) error {
	if err := d.enter(); err != nil {
		return err
	}
	if d.peek() == '}' {
		d.pos++
		d.depth--
		return nil
	}
	n := &ns.Node
	for {
		key, err := d.objectKey()
		if err != nil {
			return err
		}
		switch nodeField(key) {
		case fieldName:
			err = d.stringValue(&n.Name, "name", internNone)
		case fieldType:
			var s string
			s, err = d.typeValue(string(n.Type))
			n.Type = NodeType(s)
		case fieldMode:
			var v uint64
			v, err = d.uintValue(uint64(n.Mode), 32, "mode", "os.FileMode")
			n.Mode = os.FileMode(v)
		case fieldMtime:
			err = d.timeValue(&n.ModTime, "mtime")
		case fieldAtime:
			err = d.timeValue(&n.AccessTime, "atime")
		case fieldCtime:
			err = d.timeValue(&n.ChangeTime, "ctime")
		case fieldUID:
			var v uint64
			v, err = d.uintValue(uint64(n.UID), 32, "uid", "uint32")
			n.UID = uint32(v)
		case fieldGID:
			var v uint64
			v, err = d.uintValue(uint64(n.GID), 32, "gid", "uint32")
			n.GID = uint32(v)
		case fieldUser:
			err = d.stringValue(&n.User, "user", internUser)
		case fieldGroup:
			err = d.stringValue(&n.Group, "group", internGroup)
		case fieldInode:
			n.Inode, err = d.uintValue(n.Inode, 64, "inode", "uint64")
		case fieldDeviceID:
			n.DeviceID, err = d.uintValue(n.DeviceID, 64, "device_id", "uint64")
		case fieldSize:
			n.Size, err = d.uintValue(n.Size, 64, "size", "uint64")
		case fieldLinks:
			n.Links, err = d.uintValue(n.Links, 64, "links", "uint64")
		case fieldLinkTarget:
			err = d.stringValue(&n.LinkTarget, "linktarget", internNone)
		case fieldLinkTargetRaw:
			err = d.bytesValue(&ns.rawLink, "linktarget_raw")
		case fieldExtendedAttributes:
			err = d.xattrsValue(&n.ExtendedAttributes)
		case fieldGenericAttributes:
			err = d.rawMapValue(&n.GenericAttributes, "generic_attributes")
		case fieldDevice:
			n.Device, err = d.uintValue(n.Device, 64, "device", "uint64")
		case fieldContent:
			err = d.contentValue(ns)
		case fieldSubtree:
			err = d.subtreeValue(ns)
		case fieldError:
			err = d.stringValue(&n.Error, "error", internNone)
		default:
			err = d.skipValue()
		}
		if err != nil {
			return err
		}
		if done, err := d.next('}'); done || err != nil {
			return err
		}
	}
}

// Scalars.

// Interning modes for stringValue.
const (
	internNone = iota
	internUser
	internGroup
)

// stringValue decodes a string field; null leaves *dst alone.
func (d *decoder) stringValue(dst *string, field string, intern int) error {
	switch d.peek() {
	case '"':
	case 'n':
		return d.literal("null")
	default:
		return d.typeError(field, "string")
	}
	b, err := d.stringBytes()
	if err != nil {
		return err
	}
	switch intern {
	case internUser:
		if string(b) != d.lastUser {
			d.lastUser = string(b)
		}
		*dst = d.lastUser
	case internGroup:
		if string(b) != d.lastGroup {
			d.lastGroup = string(b)
		}
		*dst = d.lastGroup
	default:
		*dst = string(b)
	}
	return nil
}

// typeValue decodes the type field (old is its current value), without
// allocating for the known types.
func (d *decoder) typeValue(old string) (string, error) {
	switch d.peek() {
	case '"':
	case 'n':
		return old, d.literal("null")
	default:
		return old, d.typeError("type", "tree.NodeType")
	}
	b, err := d.stringBytes()
	if err != nil {
		return old, err
	}
	switch string(b) {
	case string(NodeFile):
		return string(NodeFile), nil
	case string(NodeDir):
		return string(NodeDir), nil
	case string(NodeSymlink):
		return string(NodeSymlink), nil
	case string(NodeDev):
		return string(NodeDev), nil
	case string(NodeCharDev):
		return string(NodeCharDev), nil
	case string(NodeFifo):
		return string(NodeFifo), nil
	case string(NodeSocket):
		return string(NodeSocket), nil
	case string(NodeIrregular):
		return string(NodeIrregular), nil
	}
	return string(b), nil
}

// uintValue decodes an unsigned integer of the given bit size; null keeps
// old. Like encoding/json it accepts only plain digits (no sign, fraction
// or exponent) and rejects values that overflow.
func (d *decoder) uintValue(old uint64, bits int, field, goType string) (uint64, error) {
	switch c := d.peek(); {
	case c == 'n':
		return old, d.literal("null")
	case c == '-' || '0' <= c && c <= '9':
	default:
		return old, d.typeError(field, goType)
	}
	start := d.pos
	plain, err := d.number()
	if err != nil {
		return old, err
	}
	v, ok := parseUint(d.data[start:d.pos])
	if !plain || !ok || bits < 64 && v >= 1<<bits {
		return old, fmt.Errorf("cannot unmarshal number %s into %s of type %s (offset %d)",
			d.data[start:d.pos], field, goType, start)
	}
	return v, nil
}

// parseUint parses decimal digits, reporting overflow as !ok.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (1<<64-1)/10 {
			return 0, false
		}
		v *= 10
		if v+uint64(c-'0') < v {
			return 0, false
		}
		v += uint64(c - '0')
	}
	return v, true
}

// timeValue decodes a time with time.Time.UnmarshalJSON, as encoding/json
// does: the raw string, escapes and all, must be RFC 3339; null keeps *dst.
func (d *decoder) timeValue(dst *time.Time, field string) error {
	switch d.peek() {
	case '"':
	case 'n':
		return d.literal("null")
	default:
		return d.typeError(field, "time.Time")
	}
	start := d.pos
	// Fast path: take the next quote as the end. If the time parses, the
	// string holds only RFC 3339 characters, so that was the real end; if
	// it does not, the whole string cannot parse either (it is no shorter
	// and any escape or control character in it is rejected by the time
	// parser), so the input is invalid whichever error is reported.
	if q := bytes.IndexByte(d.data[start+1:], '"'); q >= 0 {
		end := start + 1 + q + 1
		raw := d.data[start:end]
		// mtime, atime and ctime are often equal: parsing is a function
		// of the bytes, so reuse the last result.
		if d.lastTimeRaw != nil && bytes.Equal(raw, d.lastTimeRaw) {
			*dst = d.lastTime
			d.pos = end
			return nil
		}
		if !d.oddZoneTime(dst, raw[1:len(raw)-1]) {
			if err := dst.UnmarshalJSON(raw); err != nil {
				if _, _, serr := d.scanString(); serr != nil {
					return serr
				}
				return fmt.Errorf("%s: %w", field, err)
			}
		}
		d.lastTimeRaw, d.lastTime = raw, *dst
		d.pos = end
		return nil
	}
	_, _, err := d.scanString()
	return err
}

// oddZoneTime handles times whose offset is not a whole number of hours
// (+05:30, -03:30, ...) unless the local zone has it: for those
// time.Time.UnmarshalJSON allocates a new time.FixedZone every time. It
// reports false, leaving the work to UnmarshalJSON, for anything else.
//
// When it reports true the result equals UnmarshalJSON's: s has the exact
// shape and ranges for which time's RFC 3339 fast path succeeds, the date
// and time are parsed by UnmarshalJSON itself (with the offset replaced by
// Z), and the offset is applied as that fast path does: the local zone if
// it has this offset at that instant, else an unnamed fixed zone (reused).
func (d *decoder) oddZoneTime(dst *time.Time, s []byte) bool {
	const prefix = len("2006-01-02T15:04:05")
	n := len(s)
	if n < prefix+len("+05:30") || n > 64 {
		return false
	}
	z := s[n-6:]
	if z[0] != '+' && z[0] != '-' || z[3] != ':' || !isDigit(z[1]) || !isDigit(z[2]) || !isDigit(z[4]) || !isDigit(z[5]) {
		return false
	}
	hr, mm := num2(z[1:]), num2(z[4:])
	if hr > 23 || mm > 59 || mm == 0 {
		return false
	}
	for i := 0; i < prefix; i++ {
		switch i {
		case 4, 7:
			if s[i] != '-' {
				return false
			}
		case 10:
			if s[i] != 'T' {
				return false
			}
		case 13, 16:
			if s[i] != ':' {
				return false
			}
		default:
			if !isDigit(s[i]) {
				return false
			}
		}
	}
	year := int(num2(s[0:]))*100 + int(num2(s[2:]))
	month, day := num2(s[5:]), num2(s[8:])
	if month < 1 || month > 12 || day < 1 || int(day) > daysIn(int(month), year) ||
		num2(s[11:]) > 23 || num2(s[14:]) > 59 || num2(s[17:]) > 59 {
		return false
	}
	if frac := s[prefix : n-6]; len(frac) > 0 {
		if len(frac) < 2 || frac[0] != '.' {
			return false
		}
		for _, c := range frac[1:] {
			if !isDigit(c) {
				return false
			}
		}
	}
	var buf [68]byte
	b := append(buf[:0], '"')
	b = append(b, s[:n-6]...)
	b = append(b, 'Z', '"')
	var t time.Time
	if t.UnmarshalJSON(b) != nil {
		return false // cannot happen after the checks above
	}
	offset := (int(hr)*60 + int(mm)) * 60
	if z[0] == '-' {
		offset = -offset
	}
	t = t.Add(-time.Duration(offset) * time.Second)
	if _, local := t.In(time.Local).Zone(); local == offset {
		*dst = t.In(time.Local)
		return true
	}
	if d.zone == nil || d.zoneOffset != offset {
		d.zone, d.zoneOffset = time.FixedZone("", offset), offset
	}
	*dst = t.In(d.zone)
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// num2 parses two decimal digits.
func num2(b []byte) byte { return (b[0]-'0')*10 + b[1] - '0' }

// daysIn returns the number of days of month in year (proleptic Gregorian).
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// IDs.

// contentValue decodes the content list: null, or an array of IDs.
func (d *decoder) contentValue(ns *nodeState) error {
	switch d.peek() {
	case 'n':
		ns.contentSet = false
		return d.literal("null")
	case '[':
	default:
		return fmt.Errorf("content: expected an array of IDs (offset %d): %w", d.pos, d.typeError("content", "IDs"))
	}
	if err := d.enter(); err != nil {
		return err
	}
	off := len(d.ids)
	if d.peek() == ']' {
		d.pos++
		d.depth--
	} else {
		for k := 0; ; k++ {
			var id core.ID
			if err := d.idString(&id, k); err != nil {
				return err
			}
			d.ids = append(d.ids, id)
			if done, err := d.next(']'); err != nil {
				return err
			} else if done {
				break
			}
		}
	}
	ns.contentSet, ns.contentOff, ns.contentLen = true, off, len(d.ids)-off
	return nil
}

// idString decodes a quoted ID into id; k is its index in the content list
// or -1 for the subtree.
func (d *decoder) idString(id *core.ID, k int) error {
	data := d.data
	// Fast path: 64 hex digits and the closing quote.
	if p := d.pos; p+2*core.IDSize+1 < len(data) && data[p] == '"' && data[p+2*core.IDSize+1] == '"' {
		if _, err := hex.Decode(id[:], data[p+1:p+1+2*core.IDSize]); err == nil {
			d.pos = p + 2*core.IDSize + 2
			return nil
		}
	}
	if d.peek() != '"' {
		return fmt.Errorf("%s is not a string: %w", idWhat(k), d.typeError(idWhat(k), "core.ID"))
	}
	b, err := d.stringBytes()
	if err != nil {
		return err
	}
	if len(b) != 2*core.IDSize {
		return fmt.Errorf("%s: invalid ID %.80q: length %d, want %d hex characters", idWhat(k), b, len(b), 2*core.IDSize)
	}
	if _, err := hex.Decode(id[:], b); err != nil {
		return fmt.Errorf("%s: invalid ID %q: %w", idWhat(k), b, err)
	}
	return nil
}

// idWhat names the ID idString decodes, for error messages.
func idWhat(k int) string {
	if k < 0 {
		return "subtree"
	}
	return "content: element " + strconv.Itoa(k)
}

// subtreeValue decodes the subtree ID or null.
func (d *decoder) subtreeValue(ns *nodeState) error {
	if d.peek() == 'n' {
		ns.hasSubtree = false
		return d.literal("null")
	}
	if err := d.idString(&ns.subtree, -1); err != nil {
		return err
	}
	ns.hasSubtree = true
	return nil
}

// Byte slices, extended attributes, generic attributes.

// bytesValue decodes a []byte as encoding/json does: null gives nil, a
// string is standard base64, and an array of numbers 0..255 is decoded
// element by element into the slice already in *dst.
func (d *decoder) bytesValue(dst *[]byte, field string) error {
	switch d.peek() {
	case 'n':
		*dst = nil
		return d.literal("null")
	case '"':
		s, err := d.stringBytes()
		if err != nil {
			return err
		}
		b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
		n, err := base64.StdEncoding.Decode(b, s)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		*dst = b[:n]
		return nil
	case '[':
	default:
		return d.typeError(field, "[]byte")
	}
	if err := d.enter(); err != nil {
		return err
	}
	s := *dst
	i := 0
	if d.peek() == ']' {
		d.pos++
		d.depth--
	} else {
		for {
			if i >= len(s) {
				s = slices.Grow(s, 1)[:i+1]
			}
			switch c := d.peek(); {
			case c == 'n':
				if err := d.literal("null"); err != nil {
					return err
				}
			case c == '-' || '0' <= c && c <= '9':
				v, err := d.uintValue(0, 8, field+" element", "uint8")
				if err != nil {
					return err
				}
				s[i] = byte(v)
			default:
				return d.typeError(field+" element", "uint8")
			}
			i++
			if done, err := d.next(']'); err != nil {
				return err
			} else if done {
				break
			}
		}
	}
	if i == 0 {
		s = make([]byte, 0)
	}
	*dst = s[:i]
	return nil
}

// xattrsValue decodes the extended attribute list into *dst, merging into
// the elements already there like encoding/json.
func (d *decoder) xattrsValue(dst *[]ExtendedAttribute) error {
	switch d.peek() {
	case 'n':
		*dst = nil
		return d.literal("null")
	case '[':
	default:
		return d.typeError("extended_attributes", "[]tree.ExtendedAttribute")
	}
	if err := d.enter(); err != nil {
		return err
	}
	s := *dst
	i := 0
	if d.peek() == ']' {
		d.pos++
		d.depth--
	} else {
		for {
			if i >= len(s) {
				s = slices.Grow(s, 1)[:i+1]
			}
			switch d.peek() {
			case 'n':
				if err := d.literal("null"); err != nil {
					return err
				}
			case '{':
				if err := d.xattrObject(&s[i]); err != nil {
					return err
				}
			default:
				return d.typeError("extended_attributes element", "tree.ExtendedAttribute")
			}
			i++
			if done, err := d.next(']'); err != nil {
				return err
			} else if done {
				break
			}
		}
	}
	if i == 0 {
		s = make([]ExtendedAttribute, 0)
	}
	*dst = s[:i]
	return nil
}

// xattrObject decodes one extended attribute into a, keeping omitted fields.
func (d *decoder) xattrObject(a *ExtendedAttribute) error {
	if err := d.enter(); err != nil {
		return err
	}
	if d.peek() == '}' {
		d.pos++
		d.depth--
		return nil
	}
	for {
		key, err := d.objectKey()
		if err != nil {
			return err
		}
		switch {
		case string(key) == "name" || foldedEqual(key, "NAME"):
			err = d.stringValue(&a.Name, "extended attribute name", internNone)
		case string(key) == "value" || foldedEqual(key, "VALUE"):
			err = d.bytesValue(&a.Value, "extended attribute value")
		default:
			err = d.skipValue()
		}
		if err != nil {
			return err
		}
		if done, err := d.next('}'); done || err != nil {
			return err
		}
	}
}

// rawMapValue decodes an object of raw JSON values into *dst, adding to
// the map already there; null gives nil.
func (d *decoder) rawMapValue(dst *map[string]json.RawMessage, field string) error {
	switch d.peek() {
	case 'n':
		*dst = nil
		return d.literal("null")
	case '{':
	default:
		return d.typeError(field, "map[string]json.RawMessage")
	}
	if err := d.enter(); err != nil {
		return err
	}
	if *dst == nil {
		*dst = make(map[string]json.RawMessage)
	}
	if d.peek() == '}' {
		d.pos++
		d.depth--
		return nil
	}
	for {
		key, err := d.objectKey()
		if err != nil {
			return err
		}
		k := string(key)
		start := d.pos
		if err := d.skipValue(); err != nil {
			return err
		}
		(*dst)[k] = append(json.RawMessage(nil), d.data[start:d.pos]...)
		if done, err := d.next('}'); done || err != nil {
			return err
		}
	}
}

// Lexical level.

func (d *decoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// literal consumes word (true, false or null).
func (d *decoder) literal(word string) error {
	for i := 0; i < len(word); i++ {
		if d.pos >= len(d.data) || d.data[d.pos] != word[i] {
			return d.syntaxError("in literal " + word)
		}
		d.pos++
	}
	return nil
}

// number consumes a JSON number and reports whether it is plain digits.
func (d *decoder) number() (plain bool, err error) {
	data, i := d.data, d.pos
	plain = true
	if i < len(data) && data[i] == '-' {
		plain = false
		i++
	}
	digits := func() bool {
		start := i
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		return i > start
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		digits()
	default:
		d.pos = i
		return false, d.syntaxError("in numeric literal")
	}
	if i < len(data) && data[i] == '.' {
		plain = false
		i++
		if !digits() {
			d.pos = i
			return false, d.syntaxError("after decimal point in numeric literal")
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		plain = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			d.pos = i
			return false, d.syntaxError("in exponent of numeric literal")
		}
	}
	d.pos = i
	return plain, nil
}

// strClass classifies string bytes: 0 needs a closer look (quote,
// backslash, control character), 1 is plain ASCII, 2 is part of a
// multi-byte sequence.
var strClass = func() (t [256]uint8) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = 1
	}
	t['"'], t['\\'] = 0, 0
	for c := 0x80; c < 0x100; c++ {
		t[c] = 2
	}
	return t
}()

// scanString consumes the string at d.pos (which is '"'), validating it as
// JSON. It returns the offset just after the opening quote and whether the
// contents need unescaping: they contain escapes or invalid UTF-8.
func (d *decoder) scanString() (start int, escaped bool, err error) {
	data := d.data
	start = d.pos + 1
	i := start
	var class uint8
	for {
		for i < len(data) {
			c := strClass[data[i]]
			if c == 0 {
				break
			}
			class |= c
			i++
		}
		if i >= len(data) {
			d.pos = i
			return 0, false, errEOF
		}
		switch c := data[i]; {
		case c == '"':
			if class&2 != 0 && !escaped && !utf8.Valid(data[start:i]) {
				escaped = true
			}
			d.pos = i + 1
			return start, escaped, nil
		case c == '\\':
			escaped = true
			i++
			if i >= len(data) {
				d.pos = i
				return 0, false, errEOF
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				i++
				for k := 0; k < 4; k++ {
					if i >= len(data) {
						d.pos = i
						return 0, false, errEOF
					}
					if !isHex(data[i]) {
						d.pos = i
						return 0, false, d.syntaxError("in \\u hexadecimal character escape")
					}
					i++
				}
			default:
				d.pos = i
				return 0, false, d.syntaxError("in string escape code")
			}
		default: // control character
			d.pos = i
			return 0, false, d.syntaxError("in string literal")
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// stringBytes consumes a string and returns its decoded contents: a view of
// the input when nothing needs decoding, else d.scratch (valid until the
// next call).
func (d *decoder) stringBytes() ([]byte, error) {
	start, escaped, err := d.scanString()
	if err != nil {
		return nil, err
	}
	s := d.data[start : d.pos-1]
	if !escaped {
		return s, nil
	}
	d.scratch = unescape(d.scratch[:0], s)
	return d.scratch, nil
}

// unescape appends the decoded form of s, the validated contents of a JSON
// string, to dst, exactly as encoding/json decodes strings: escapes
// resolved, surrogate pairs combined, and every unpaired surrogate escape
// and every byte of invalid UTF-8 replaced by U+FFFD.
func unescape(dst, s []byte) []byte {
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch s[r+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := getu4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, s[r+1])
			}
			r += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			dst = utf8.AppendRune(dst, rr)
		}
	}
	return dst
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// skipValue consumes and validates any JSON value.
func (d *decoder) skipValue() error {
	var stackBuf [32]byte
	stack := stackBuf[:0] // the open containers' closing bytes
	for {
		// A value starts at d.pos.
		switch c := d.peek(); c {
		case '{', '[':
			if err := d.enter(); err != nil {
				return err
			}
			closing := byte(']')
			if c == '{' {
				closing = '}'
			}
			if d.peek() == closing {
				d.pos++
				d.depth--
				break
			}
			stack = append(stack, closing)
			if c == '{' {
				if _, err := d.objectKey(); err != nil {
					return err
				}
			}
			continue
		case '"':
			if _, _, err := d.scanString(); err != nil {
				return err
			}
		case 't':
			if err := d.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := d.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
		default:
			if c != '-' && (c < '0' || c > '9') {
				return d.syntaxError("looking for beginning of value")
			}
			if _, err := d.number(); err != nil {
				return err
			}
		}
		// A value ended: close containers until one has another element.
		for {
			if len(stack) == 0 {
				return nil
			}
			closing := stack[len(stack)-1]
			done, err := d.next(closing)
			if err != nil {
				return err
			}
			if !done {
				if closing == '}' {
					if _, err := d.objectKey(); err != nil {
						return err
					}
				}
				break
			}
			stack = stack[:len(stack)-1]
		}
	}
}
