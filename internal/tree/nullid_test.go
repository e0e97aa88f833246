package tree

import (
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/core"
)

// TestEncodeRejectsNullIDs: a tree whose file content or dir subtree is the
// null ID is never written (invariant I15); the error names the node. Both
// encoders (EncodeTree and Builder) refuse it, and the Builder keeps the
// error for Finish.
func TestEncodeRejectsNullIDs(t *testing.T) {
	good := core.Hash([]byte("blob"))
	null := core.ID{}
	cases := []struct {
		name string
		node *Node
	}{
		{"file-only-null", &Node{Name: "f1", Type: NodeFile, Content: []core.ID{null}}},
		{"file-null-after-good", &Node{Name: "f2", Type: NodeFile, Content: []core.ID{good, null}}},
		{"dir-null-subtree", &Node{Name: "d1", Type: NodeDir, Subtree: &null}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok := &Node{Name: "a", Type: NodeFile, Content: []core.ID{good}}
			if _, err := EncodeTree([]*Node{ok, c.node}); err == nil || !strings.Contains(err.Error(), `"`+c.node.Name+`"`) {
				t.Fatalf("EncodeTree: got %v, want an error naming %q", err, c.node.Name)
			}
			b := NewBuilder(0)
			if err := b.AddNode(ok); err != nil {
				t.Fatal(err)
			}
			if err := b.AddNode(c.node); err == nil || !strings.Contains(err.Error(), `"`+c.node.Name+`"`) {
				t.Fatalf("Builder.AddNode: got %v, want an error naming %q", err, c.node.Name)
			}
			if buf, err := b.Finish(); err == nil {
				t.Fatalf("Builder.Finish after a rejected node: %q", buf)
			}
		})
	}
}

// TestEncodeAcceptsNonNullIDs: the check does not reject valid trees (empty
// files, dirs with a real subtree, other node types).
func TestEncodeAcceptsNonNullIDs(t *testing.T) {
	sub := core.Hash([]byte("tree"))
	nodes := []*Node{
		{Name: "d", Type: NodeDir, Subtree: &sub},
		{Name: "empty", Type: NodeFile, Content: []core.ID{}},
		{Name: "f", Type: NodeFile, Content: []core.ID{core.Hash([]byte("x")), core.Hash([]byte("y"))}},
		{Name: "l", Type: NodeSymlink, LinkTarget: "f"},
	}
	if _, err := EncodeTree(nodes); err != nil {
		t.Fatalf("EncodeTree: %v", err)
	}
	b := NewBuilder(0)
	for _, n := range nodes {
		if err := b.AddNode(n); err != nil {
			t.Fatalf("AddNode %q: %v", n.Name, err)
		}
	}
	if _, err := b.Finish(); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}
