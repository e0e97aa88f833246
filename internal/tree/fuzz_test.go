package tree

import (
	"bytes"
	"testing"
)

// FuzzDecodeTree feeds arbitrary bytes to DecodeTree. Whatever decodes must
// encode, and the encoding must be a fixed point: decoding it and encoding
// again gives the same bytes and the same names.
func FuzzDecodeTree(f *testing.F) {
	for _, b := range goldenFiles(f) {
		f.Add(b)
	}
	f.Add([]byte("{\"nodes\":[]}\n"))
	f.Add([]byte(`{"x":1,"nodes":[{"name":"a\\x00b"},{"name":"b","type":"symlink","linktarget":"x","linktarget_raw":"/w=="}]}`))
	f.Add([]byte(`{"nodes":[{"name":"d","type":"dir","mtime":"2020-01-01T00:00:00.100+05:53","subtree":"` +
		"AB00000000000000000000000000000000000000000000000000000000000000" + `","content":[],` +
		`"generic_attributes":{"b":[ 1 ],"a":"\u003c"},"extended_attributes":[{"name":"n","value":null}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := DecodeTree(data)
		if err != nil {
			return
		}
		b1, err := tr.Encode()
		if err != nil {
			t.Fatalf("decoded tree does not encode: %v", err)
		}
		tr2, err := DecodeTree(b1)
		if err != nil {
			t.Fatalf("encoded tree does not decode: %v\n%s", err, b1)
		}
		if len(tr2.Nodes) != len(tr.Nodes) {
			t.Fatalf("node count changed: %d -> %d", len(tr.Nodes), len(tr2.Nodes))
		}
		for i := range tr.Nodes {
			if tr.Nodes[i].Name != tr2.Nodes[i].Name {
				t.Fatalf("name %d changed: %q -> %q", i, tr.Nodes[i].Name, tr2.Nodes[i].Name)
			}
			if tr2.Find(tr.Nodes[i].Name) != tr2.Nodes[i] {
				t.Fatalf("Find(%q) failed", tr.Nodes[i].Name)
			}
		}
		b2, err := tr2.Encode()
		if err != nil {
			t.Fatalf("second encode: %v", err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable:\n%s\n%s", b1, b2)
		}
	})
}
