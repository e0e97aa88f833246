package tree

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/internal/core"
)

// Tree is the decoded form of a tree blob: the entries of one directory,
// strictly ascending by Name.
type Tree struct {
	Nodes []*Node `json:"nodes"`
}

// Find returns the node called name, or nil. It relies on the nodes being
// sorted, which DecodeTree and EncodeTree guarantee.
func (t *Tree) Find(name string) *Node {
	i, found := slices.BinarySearchFunc(t.Nodes, name, func(n *Node, name string) int {
		return strings.Compare(n.Name, name)
	})
	if !found {
		return nil
	}
	return t.Nodes[i]
}

// Encode returns the tree blob for t (see EncodeTree).
func (t *Tree) Encode() ([]byte, error) { return EncodeTree(t.Nodes) }

// SortNodes sorts nodes by Name in the byte order trees require.
func SortNodes(nodes []*Node) {
	slices.SortFunc(nodes, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
}

// ErrUnsorted is wrapped by the errors EncodeTree, Builder.AddNode and
// DecodeTree return when names are not strictly ascending (which includes
// duplicates).
var ErrUnsorted = errors.New("tree nodes not strictly ascending by name")

const (
	treePrefix = `{"nodes":[`
	treeSuffix = "]}\n"
)

// EncodeTree returns the tree blob holding nodes: exactly
// {"nodes":[ + the comma-separated node encodings (Node.AppendJSON) + ]} and
// a newline, as restic writes it. An empty or nil list gives {"nodes":[]}.
// The nodes must be strictly ascending by Name (byte order) and every name
// must pass ValidName; otherwise an error naming the offending entry is
// returned. The tree ID is core.Hash of the result.
func EncodeTree(nodes []*Node) ([]byte, error) {
	return AppendTree(make([]byte, 0, estimateTreeSize(nodes)), nodes)
}

// AppendTree is EncodeTree appending to dst, so callers can reuse a buffer.
// On error the returned buffer holds a partial encoding and must not be used.
func AppendTree(dst []byte, nodes []*Node) ([]byte, error) {
	dst = append(dst, treePrefix...)
	for i, n := range nodes {
		if n == nil {
			return dst, fmt.Errorf("encode tree: node %d is nil", i)
		}
		if err := ValidName(n.Name); err != nil {
			return dst, fmt.Errorf("encode tree: node %d: %w", i, err)
		}
		if i > 0 {
			if err := checkOrder(nodes[i-1].Name, n.Name); err != nil {
				return dst, fmt.Errorf("encode tree: %w", err)
			}
			dst = append(dst, ',')
		}
		var err error
		if dst, err = n.AppendJSON(dst); err != nil {
			return dst, fmt.Errorf("encode tree: %w", err)
		}
	}
	return append(dst, treeSuffix...), nil
}

func checkOrder(prev, name string) error {
	switch {
	case name == prev:
		return fmt.Errorf("%w: duplicate name %q", ErrUnsorted, name)
	case name < prev:
		return fmt.Errorf("%w: %q after %q", ErrUnsorted, name, prev)
	}
	return nil
}

// estimateTreeSize guesses the encoded size so EncodeTree usually allocates
// once: about 330 bytes of fixed fields per node plus the variable parts.
func estimateTreeSize(nodes []*Node) int {
	size := len(treePrefix) + len(treeSuffix)
	for _, n := range nodes {
		if n == nil {
			continue
		}
		size += 340 + len(n.Name) + len(n.User) + len(n.Group) + len(n.LinkTarget) + len(n.Error) +
			len(n.Content)*(2*core.IDSize+3)
		for _, a := range n.ExtendedAttributes {
			size += 24 + len(a.Name) + (len(a.Value)+2)/3*4
		}
	}
	return size
}

// Builder encodes a tree incrementally, for callers that produce nodes one
// at a time in sorted order. The zero value is ready to use.
type Builder struct {
	buf   []byte
	last  string
	count int
	err   error
}

// NewBuilder returns a Builder whose buffer starts with capacity sizeHint.
func NewBuilder(sizeHint int) *Builder {
	return &Builder{buf: make([]byte, 0, max(sizeHint, 64))}
}

// AddNode appends n. Names must be strictly ascending; a rejected node leaves
// the builder unchanged, but the error is also remembered and returned by
// Finish, so a tree with a missing entry cannot be produced by accident.
func (b *Builder) AddNode(n *Node) error {
	if b.err != nil {
		return b.err
	}
	if n == nil {
		return b.fail(fmt.Errorf("tree builder: node %d is nil", b.count))
	}
	if err := ValidName(n.Name); err != nil {
		return b.fail(fmt.Errorf("tree builder: %w", err))
	}
	if b.count > 0 {
		if err := checkOrder(b.last, n.Name); err != nil {
			return b.fail(fmt.Errorf("tree builder: %w", err))
		}
	}
	if len(b.buf) == 0 {
		b.buf = append(b.buf, treePrefix...)
	}
	mark := len(b.buf)
	if b.count > 0 {
		b.buf = append(b.buf, ',')
	}
	buf, err := n.AppendJSON(b.buf)
	if err != nil {
		b.buf = buf[:mark]
		return b.fail(fmt.Errorf("tree builder: %w", err))
	}
	b.buf = buf
	b.last = n.Name
	b.count++
	return nil
}

func (b *Builder) fail(err error) error {
	b.err = err
	return err
}

// Len returns the number of nodes added so far.
func (b *Builder) Len() int { return b.count }

// Finish returns the complete tree blob and resets the builder (the returned
// slice is owned by the caller). It returns the first AddNode error, if any.
func (b *Builder) Finish() ([]byte, error) {
	if b.err != nil {
		err := b.err
		*b = Builder{}
		return nil, err
	}
	buf := b.buf
	if len(buf) == 0 {
		buf = append(buf, treePrefix...)
	}
	buf = append(buf, treeSuffix...)
	*b = Builder{}
	return buf, nil
}

// DecodeTree parses a tree blob. Unknown top-level keys and unknown node keys
// are ignored (as restic does); a missing or null "nodes" gives an empty tree.
// It fails on malformed JSON, null nodes, names that cannot be unquoted or
// fail ValidName, invalid IDs or times, and names that are not strictly
// ascending. Semantic checks are left to Node.Validate.
func DecodeTree(buf []byte) (*Tree, error) {
	var w struct {
		Nodes []*wireNode `json:"nodes"`
	}
	if err := json.Unmarshal(buf, &w); err != nil {
		return nil, fmt.Errorf("decode tree: %w", err)
	}
	t := &Tree{Nodes: make([]*Node, len(w.Nodes))}
	for i, wn := range w.Nodes {
		if wn == nil {
			return nil, fmt.Errorf("decode tree: node %d is null", i)
		}
		n, err := wn.node()
		if err != nil {
			return nil, fmt.Errorf("decode tree: node %d: %w", i, err)
		}
		if i > 0 {
			if err := checkOrder(t.Nodes[i-1].Name, n.Name); err != nil {
				return nil, fmt.Errorf("decode tree: %w", err)
			}
		}
		t.Nodes[i] = n
	}
	return t, nil
}

// nodeAlias has Node's fields but not its methods, so encoding/json decodes
// it with reflection.
type nodeAlias Node

// wireNode is the decoding shape of a node: Node's fields plus
// linktarget_raw, with a faster decoder for the content list.
type wireNode struct {
	nodeAlias
	Content       wireIDs `json:"content"`
	LinkTargetRaw []byte  `json:"linktarget_raw"`
}

// node converts w in place into a *Node (sharing w's memory).
func (w *wireNode) node() (*Node, error) {
	n := (*Node)(&w.nodeAlias)
	name, err := unquoteName(n.Name)
	if err != nil {
		return nil, fmt.Errorf("name %q: %w", n.Name, err)
	}
	if err := ValidName(name); err != nil {
		return nil, err
	}
	n.Name = name
	if w.LinkTargetRaw != nil {
		n.LinkTarget = string(w.LinkTargetRaw)
		w.LinkTargetRaw = nil
	}
	n.Content = core.IDs(w.Content)
	w.Content = nil
	return n, nil
}

// unquoteName reverses restic's name quoting: strconv.Unquote of the name in
// double quotes, with a fast path for names that need no unescaping (the
// same condition under which strconv.Unquote returns its input unchanged).
func unquoteName(s string) (string, error) {
	if strings.IndexByte(s, '\\') < 0 && strings.IndexByte(s, '"') < 0 &&
		strings.IndexByte(s, '\n') < 0 && utf8.ValidString(s) {
		return s, nil
	}
	name, err := strconv.Unquote(`"` + s + `"`)
	if err != nil {
		return "", fmt.Errorf("unquote: %w", err)
	}
	return name, nil
}

// wireIDs decodes a JSON list of hex IDs without going through
// core.ID.UnmarshalJSON for every element. It keeps null (nil) and []
// (empty, non-nil) apart.
type wireIDs core.IDs

// UnmarshalJSON parses b, which json.Unmarshal has already validated as
// JSON. Anything other than null or an array of 64-hex-digit strings is an
// error.
func (w *wireIDs) UnmarshalJSON(b []byte) error {
	p := skipSpace(b)
	if len(p) >= 4 && string(p[:4]) == "null" {
		*w = nil
		return nil
	}
	if len(p) == 0 || p[0] != '[' {
		return fmt.Errorf("content: expected an array of IDs, got %.20q", b)
	}
	ids := make(core.IDs, 0, len(b)/(2*core.IDSize+3)+1)
	p = skipSpace(p[1:])
	if len(p) > 0 && p[0] == ']' {
		*w = wireIDs(ids)
		return nil
	}
	for {
		if len(p) == 0 || p[0] != '"' {
			return fmt.Errorf("content: element %d is not a string", len(ids))
		}
		end := 1
		for end < len(p) && p[end] != '"' && p[end] != '\\' {
			end++
		}
		if end >= len(p) || p[end] == '\\' {
			// An escaped hex string is valid JSON, just unusual: take the
			// slow, general path.
			var slow core.IDs
			if err := json.Unmarshal(b, &slow); err != nil {
				return fmt.Errorf("content: %w", err)
			}
			*w = wireIDs(slow)
			return nil
		}
		var id core.ID
		if end-1 != 2*core.IDSize {
			return fmt.Errorf("content: element %d: invalid ID %.80q: length %d, want %d hex characters",
				len(ids), p[1:end], end-1, 2*core.IDSize)
		}
		if _, err := hex.Decode(id[:], p[1:end]); err != nil {
			return fmt.Errorf("content: element %d: invalid ID %q: %w", len(ids), p[1:end], err)
		}
		ids = append(ids, id)
		p = skipSpace(p[end+1:])
		if len(p) == 0 {
			return fmt.Errorf("content: truncated array")
		}
		switch p[0] {
		case ',':
			p = skipSpace(p[1:])
		case ']':
			*w = wireIDs(ids)
			return nil
		default:
			return fmt.Errorf("content: unexpected %q after element %d", p[0], len(ids)-1)
		}
	}
}

func skipSpace(p []byte) []byte {
	for len(p) > 0 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\n' || p[0] == '\r') {
		p = p[1:]
	}
	return p
}
