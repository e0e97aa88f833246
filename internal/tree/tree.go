package tree

import (
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
// must pass ValidName, and no file content or dir subtree may be the null
// ID; otherwise an error naming the offending entry is returned. The tree
// ID is core.Hash of the result.
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
		if err := checkIDs(n); err != nil {
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
	if err := checkIDs(n); err != nil {
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
