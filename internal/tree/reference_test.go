package tree

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/cairn-backup/cairn/internal/core"
)

// This file keeps the encoding/json-based tree decoder that DecodeTree used
// before the hand-written one (decode.go). It is the reference the
// differential tests and FuzzDecodeTreeMatchesReference compare against:
// both must accept exactly the same inputs and produce deeply equal values.

// refDecodeTree is the old DecodeTree.
func refDecodeTree(buf []byte) (*Tree, error) {
	var w struct {
		Nodes []*refWireNode `json:"nodes"`
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

// refUnmarshalNode is the old Node.UnmarshalJSON.
func refUnmarshalNode(n *Node, data []byte) error {
	var w refWireNode
	if err := json.Unmarshal(data, &w); err != nil {
		return fmt.Errorf("decode node: %w", err)
	}
	node, err := w.node()
	if err != nil {
		return err
	}
	*n = *node
	return nil
}

// nodeAlias has Node's fields but not its methods, so encoding/json decodes
// it with reflection.
type nodeAlias Node

// refWireNode is the decoding shape of a node: Node's fields plus
// linktarget_raw, with a faster decoder for the content list.
type refWireNode struct {
	nodeAlias
	Content       refWireIDs `json:"content"`
	LinkTargetRaw []byte     `json:"linktarget_raw"`
}

// node converts w in place into a *Node (sharing w's memory).
func (w *refWireNode) node() (*Node, error) {
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

// refWireIDs decodes a JSON list of hex IDs without going through
// core.ID.UnmarshalJSON for every element. It keeps null (nil) and []
// (empty, non-nil) apart.
type refWireIDs core.IDs

// UnmarshalJSON parses b, which json.Unmarshal has already validated as
// JSON. Anything other than null or an array of 64-hex-digit strings is an
// error.
func (w *refWireIDs) UnmarshalJSON(b []byte) error {
	p := refSkipSpace(b)
	if len(p) >= 4 && string(p[:4]) == "null" {
		*w = nil
		return nil
	}
	if len(p) == 0 || p[0] != '[' {
		return fmt.Errorf("content: expected an array of IDs, got %.20q", b)
	}
	ids := make(core.IDs, 0, len(b)/(2*core.IDSize+3)+1)
	p = refSkipSpace(p[1:])
	if len(p) > 0 && p[0] == ']' {
		*w = refWireIDs(ids)
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
			*w = refWireIDs(slow)
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
		p = refSkipSpace(p[end+1:])
		if len(p) == 0 {
			return fmt.Errorf("content: truncated array")
		}
		switch p[0] {
		case ',':
			p = refSkipSpace(p[1:])
		case ']':
			*w = refWireIDs(ids)
			return nil
		default:
			return fmt.Errorf("content: unexpected %q after element %d", p[0], len(ids)-1)
		}
	}
}

func refSkipSpace(p []byte) []byte {
	for len(p) > 0 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\n' || p[0] == '\r') {
		p = p[1:]
	}
	return p
}
