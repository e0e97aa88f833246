package tree

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
)

// checkSameAsReference decodes data with DecodeTree and Node.UnmarshalJSON
// and with their encoding/json references, and fails unless both accept or
// both reject it and the results are deeply equal.
func checkSameAsReference(t testing.TB, data []byte) {
	t.Helper()
	got, err := DecodeTree(data)
	want, refErr := refDecodeTree(data)
	if (err != nil) != (refErr != nil) {
		t.Fatalf("DecodeTree(%q):\n err %v\nreference err %v", data, err, refErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeTree(%q) differs from the reference:\n got %s\nwant %s", data, dumpTree(got), dumpTree(want))
	}

	var gotNode, wantNode Node
	err = gotNode.UnmarshalJSON(data)
	refErr = refUnmarshalNode(&wantNode, data)
	if (err != nil) != (refErr != nil) {
		t.Fatalf("Node.UnmarshalJSON(%q):\n err %v\nreference err %v", data, err, refErr)
	}
	if err == nil && !reflect.DeepEqual(gotNode, wantNode) {
		t.Fatalf("Node.UnmarshalJSON(%q) differs from the reference:\n got %s\nwant %s", data, dumpNode(&gotNode), dumpNode(&wantNode))
	}
}

func dumpTree(t *Tree) string {
	if t == nil {
		return "<nil tree>"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d nodes (nil slice: %v)", len(t.Nodes), t.Nodes == nil)
	for _, n := range t.Nodes {
		sb.WriteString("\n  ")
		sb.WriteString(dumpNode(n))
	}
	return sb.String()
}

func dumpNode(n *Node) string {
	if n == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("%#v", *n)
	if n.Subtree != nil {
		s += " subtree=" + n.Subtree.String()
	}
	for _, a := range n.ExtendedAttributes {
		s += fmt.Sprintf(" xattr{%q %q nil=%v}", a.Name, a.Value, a.Value == nil)
	}
	for k, v := range n.GenericAttributes {
		s += fmt.Sprintf(" generic{%q: %q}", k, v)
	}
	s += fmt.Sprintf(" times=%v/%v/%v", n.ModTime, n.AccessTime, n.ChangeTime)
	return s
}

const (
	hexID  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hexID2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

// trickyInputs are documents that exercise the corners of encoding/json's
// behaviour the decoder must reproduce.
var trickyInputs = []string{
	// Documents and top-level values.
	``, ` `, `null`, ` null `, `{}`, `[]`, `"x"`, `1`, `true`, `false`, `nul`, `{`, `}`,
	`{"nodes":[]}`, "{\"nodes\":[]}\n", "\t\r\n {\"nodes\":[]} \t\r\n", `{"nodes":[]}x`, `{"nodes":[]}{}`,
	`{"nodes":null}`, `{"nodes":{}}`, `{"nodes":"x"}`, `{"nodes":1}`, `{"nodes":true}`, `{"nodes":[1]}`,
	`{"nodes":["a"]}`, `{"nodes":[[]]}`, `{"nodes":[null]}`, `{"nodes":[{"name":"a"},null]}`,
	"\xef\xbb\xbf{\"nodes\":[]}", `{"nodes":[],}`, `{"nodes":[,]}`, `{"nodes" []}`, `{nodes:[]}`,
	`{'nodes':[]}`, `{"nodes":[{"name":"a"},]}`, `{"nodes":[{"name":"a",}]}`, `{"nodes":[{"name":"a"}`,

	// Key matching: case-insensitive, with Unicode folding; last one wins.
	`{"NODES":[{"NAME":"a","TYPE":"file","CONTENT":[]}]}`,
	`{"Nodes":[{"Name":"a","Type":"dir","SubTree":"` + hexID + `"}]}`,
	`{"node\u017f":[{"name":"a"}]}`, "{\"node\xc5\xbf\":[{\"name\":\"a\"}]}",
	`{"nodes":[{"name":"a","lin\u212atarget":"t","\u017fize":5,"u\u017fer":"u"}]}`,
	"{\"nodes\":[{\"name\":\"a\",\"lin\xe2\x84\xaatarget\":\"t\"}]}",
	`{"nodes":[{"n\u0061me":"a","\u0074ype":"file"}]}`,
	`{"nodes":[{"name":"a","name":"b"}]}`, `{"nodes":[{"name":"a","name":null}]}`,
	`{"nodes":[{"name":"a","NAME":"b","Name":"c"}]}`, `{"nodes":[{"name":"a","nam":"b","names":"c"}]}`,
	`{"nodes":[{"name":"a","nodes":[1,2]}],"NoDeS":[{"type":"fifo"}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":"eA==","LINKTARGET_RAW":null}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"NAME":"n","Value":"eA=="}]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"n\u0061me":"n","valu\u0065":"eA=="}]}]}`,

	// Repeated arrays decode into what is there.
	`{"nodes":[{"name":"a"}],"nodes":[{"type":"file"}]}`,
	`{"nodes":[{"name":"a"},{"name":"b"},{"name":"c"}],"nodes":[{"name":"x"}],"nodes":[{},{},{}]}`,
	`{"nodes":[{"name":"a"},{"name":"b"},{"name":"c"}],"nodes":[],"nodes":[{},{},{}]}`,
	`{"nodes":[{"name":"a"},{"name":"b"},{"name":"c"}],"nodes":null,"nodes":[{"name":"x"},{}]}`,
	`{"nodes":[{"name":"a"},{"name":"b"}],"nodes":[null],"nodes":[{},{}]}`,
	`{"nodes":[{"name":"a"},{"name":"b"}],"nodes":[null],"nodes":[{"name":"a"},{}]}`,
	`{"nodes":[{"name":"a","subtree":"` + hexID + `"}],"nodes":[{"subtree":null}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID + `"]}],"nodes":[{"content":[]}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID + `"]}],"nodes":[{"content":null}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"name":"x","value":"eA=="},{"name":"y"}],` +
		`"extended_attributes":[{"value":null}],"extended_attributes":[{},{}]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"name":"x"},{"name":"y"}],` +
		`"extended_attributes":[],"extended_attributes":[{},{}]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"name":"x"},{"name":"y"}],` +
		`"extended_attributes":null,"extended_attributes":[{},{}]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"name":"x"},null,{"name":"z"}],"extended_attributes":[null,null]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"name":"x","name":null,"value":[1,2],"value":[3]}]}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":[65,66,67],"linktarget_raw":[68]}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":[65,66,67],"linktarget_raw":[68],"linktarget_raw":[null,null,null]}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":"QUJDREVGR0g=","linktarget_raw":[1,null,null,null,null,null,null,null,null]}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":"QUJDREVGR0hJSktM","linktarget_raw":[1],"linktarget_raw":[null,null,null,null,null,null,null,null,null,null,null,null,null]}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":"QQ==","linktarget_raw":[null,null,null]}]}`,
	`{"nodes":[{"name":"a","generic_attributes":{"a":1},"generic_attributes":{"b":2}}]}`,
	`{"nodes":[{"name":"a","generic_attributes":{"a":1},"generic_attributes":null,"generic_attributes":{"b":2}}]}`,
	`{"nodes":[{"name":"a","generic_attributes":{"a":1,"a":[ 1 , 2 ]}}]}`,
	`{"nodes":[{"name":"a","generic_attributes":{}}]}`, `{"nodes":[{"name":"a","generic_attributes":[]}]}`,
	`{"nodes":[{"name":"a","generic_attributes":{"\u0061\ud800":null,"b":{ "x" : "\u003c" },"c":"s","d":true,"e":-1.5e3}}]}`,
	"{\"nodes\":[{\"name\":\"a\",\"generic_attributes\":{\"k\xff\":\"v\xff\"}}]}",

	// Strings.
	`{"nodes":[{"name":"a\u0000"}]}`, `{"nodes":[{"name":"\\x00"}]}`, `{"nodes":[{"name":"a\/b"}]}`,
	`{"nodes":[{"name":"\ud83d\ude00"}]}`, `{"nodes":[{"name":"\ud83d"}]}`, `{"nodes":[{"name":"\ude00"}]}`,
	`{"nodes":[{"name":"\ud83d\u0041"}]}`, `{"nodes":[{"name":"\ud83d\ud83d\ude00"}]}`, `{"nodes":[{"name":"\ud83dx"}]}`,
	`{"nodes":[{"name":"\uD83D\uDE00"}]}`, `{"nodes":[{"name":"\u00e9\u2028"}]}`, `{"nodes":[{"name":"\u12"}]}`,
	`{"nodes":[{"name":"\u12G4"}]}`, `{"nodes":[{"name":"\x41"}]}`, `{"nodes":[{"name":"\'"}]}`, `{"nodes":[{"name":"\a"}]}`,
	"{\"nodes\":[{\"name\":\"a\xffb\"}]}", "{\"nodes\":[{\"name\":\"\xed\xa0\x80\"}]}", "{\"nodes\":[{\"name\":\"\xc3\"}]}",
	"{\"nodes\":[{\"name\":\"\xf4\x90\x80\x80\"}]}", "{\"nodes\":[{\"name\":\"\xc0\xaf\"}]}",
	"{\"nodes\":[{\"name\":\"a\tb\"}]}", "{\"nodes\":[{\"name\":\"a\x7fb\"}]}", "{\"nodes\":[{\"name\":\"a\x00b\"}]}",
	`{"nodes":[{"name":"a\\\"b"}]}`, `{"nodes":[{"name":"a\"b"}]}`, `{"nodes":[{"name":"a\\nb\\t\\u00e9\\xff"}]}`,
	`{"nodes":[{"name":"a\\u00"}]}`, `{"nodes":[{"name":"\\"}]}`, `{"nodes":[{"name":"."}]}`, `{"nodes":[{"name":"\\x2e\\x2e"}]}`,
	`{"nodes":[{"name":"a","user":"u\ud800","group":"g\\","error":"e\"","linktarget":"\b\f\n\r\t"}]}`,
	"{\"nodes\":[{\"name\":\"a\",\"user\":\"\xff\",\"group\":\"\xfe\"},{\"name\":\"b\",\"user\":\"\xff\",\"group\":\"x\"}]}",
	`{"nodes":[{"name":"a","type":"weird"},{"name":"b","type":""},{"name":"c","type":"fi\u006ce"},{"name":"d","type":null}]}`,
	`{"nodes":[{"name":"a","type":1}]}`, `{"nodes":[{"name":1}]}`, `{"nodes":[{"name":true}]}`, `{"nodes":[{"name":{}}]}`,
	`{"nodes":[{"name":"a","user":[]}]}`, `{"nodes":[{"name":"a","error":false}]}`,

	// Numbers.
	`{"nodes":[{"name":"a","mode":4294967295,"uid":4294967295,"gid":0}]}`,
	`{"nodes":[{"name":"a","mode":4294967296}]}`, `{"nodes":[{"name":"a","uid":4294967296}]}`,
	`{"nodes":[{"name":"a","size":18446744073709551615,"inode":0,"links":1,"device":2,"device_id":3}]}`,
	`{"nodes":[{"name":"a","size":18446744073709551616}]}`, `{"nodes":[{"name":"a","size":99999999999999999999}]}`,
	`{"nodes":[{"name":"a","size":-0}]}`, `{"nodes":[{"name":"a","size":-1}]}`, `{"nodes":[{"name":"a","size":1.0}]}`,
	`{"nodes":[{"name":"a","size":1e2}]}`, `{"nodes":[{"name":"a","size":1E+2}]}`, `{"nodes":[{"name":"a","size":01}]}`,
	`{"nodes":[{"name":"a","size":0.}]}`, `{"nodes":[{"name":"a","size":1e}]}`, `{"nodes":[{"name":"a","size":-}]}`,
	`{"nodes":[{"name":"a","size":+1}]}`, `{"nodes":[{"name":"a","size":.5}]}`, `{"nodes":[{"name":"a","size":"1"}]}`,
	`{"nodes":[{"name":"a","size":true}]}`, `{"nodes":[{"name":"a","size":null}]}`, `{"nodes":[{"name":"a","size":5,"size":null}]}`,
	`{"nodes":[{"name":"a","size":[]}]}`, `{"nodes":[{"name":"a","size":{}}]}`, `{"nodes":[{"name":"a","size":0x10}]}`,
	`{"nodes":[{"name":"a","size":1_000}]}`, `{"nodes":[{"name":"a","mode":2147484141}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":[255,0]}]}`, `{"nodes":[{"name":"a","linktarget_raw":[256]}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":[-1]}]}`, `{"nodes":[{"name":"a","linktarget_raw":[1.5]}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":["a"]}]}`, `{"nodes":[{"name":"a","linktarget_raw":[[]]}]}`,

	// Times.
	`{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00Z","atime":"2020-01-01T00:00:00.123456789+05:30","ctime":null}]}`,
	`{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00Z","mtime":null}]}`,
	`{"nodes":[{"name":"a","mtime":"0001-01-01T00:00:00Z"}]}`, `{"nodes":[{"name":"a","mtime":"9999-12-31T23:59:59.999999999-23:59"}]}`,
	`{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00+24:00"}]}`, `{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00+00:60"}]}`,
	`{"nodes":[{"name":"a","mtime":"2020-01-01T0:00:00Z"}]}`, `{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00,5Z"}]}`,
	`{"nodes":[{"name":"a","mtime":"2020-01-01t00:00:00z"}]}`, `{"nodes":[{"name":"a","mtime":"2020-01-01 00:00:00Z"}]}`,
	`{"nodes":[{"name":"a","mtime":"2020-02-30T00:00:00Z"}]}`, `{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:60Z"}]}`,
	`{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00.Z"}]}`, `{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00.1234567891Z"}]}`,
	`{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00\u005a"}]}`, `{"nodes":[{"name":"a","mtime":""}]}`,
	`{"nodes":[{"name":"a","mtime":"yesterday"}]}`, `{"nodes":[{"name":"a","mtime":0}]}`, `{"nodes":[{"name":"a","mtime":{}}]}`,
	`{"nodes":[{"name":"a","mtime":[]}]}`, `{"nodes":[{"name":"a","mtime":true}]}`, `{"nodes":[{"name":"a","mtime":"-0001-01-01T00:00:00Z"}]}`,
	`{"nodes":[{"name":"a","mtime":"+2020-01-01T00:00:00Z"}]}`, `{"nodes":[{"name":"a","mtime":"12020-01-01T00:00:00Z"}]}`,
	`{"nodes":[{"name":"a","mtime":"2020-01-01T00:00:00+01:00"},{"name":"b","mtime":"2020-07-01T00:00:00+02:00"}]}`,

	// IDs.
	`{"nodes":[{"name":"a","content":[]},{"name":"b","content":null},{"name":"c"}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID + `","` + strings.ToUpper(hexID) + `"]}]}`,
	`{"nodes":[{"name":"a","content":[ "` + hexID + `" , "` + hexID2 + `" ]}]}`,
	`{"nodes":[{"name":"a","content":["\u0030` + hexID[1:] + `"]}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID + `","\u0030` + hexID[1:] + `"]}]}`,
	`{"nodes":[{"name":"a","content":["\u0030` + hexID[1:] + `",1]}]}`,
	`{"nodes":[{"name":"a","content":["\u0030` + hexID[1:] + `",null]}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID + `",null]}]}`, `{"nodes":[{"name":"a","content":[null]}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID[1:] + `"]}]}`, `{"nodes":[{"name":"a","content":["` + hexID + `0"]}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID[1:] + `g"]}]}`, `{"nodes":[{"name":"a","content":["` + hexID[2:] + `\u00e9"]}]}`,
	"{\"nodes\":[{\"name\":\"a\",\"content\":[\"" + hexID[1:] + "\xff\"]}]}",
	`{"nodes":[{"name":"a","content":"` + hexID + `"}]}`, `{"nodes":[{"name":"a","content":{}}]}`,
	`{"nodes":[{"name":"a","content":1}]}`, `{"nodes":[{"name":"a","content":true}]}`, `{"nodes":[{"name":"a","content":[[]]}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID + `"],"content":["` + hexID2 + `"]}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID + `" "` + hexID2 + `"]}]}`, `{"nodes":[{"name":"a","content":["` + hexID + `",]}]}`,
	`{"nodes":[{"name":"a","content":["` + hexID + `"`, `{"nodes":[{"name":"a","content":["` + hexID,
	`{"nodes":[{"name":"a","subtree":"` + hexID + `"},{"name":"b","subtree":null},{"name":"c","subtree":"` + strings.ToUpper(hexID) + `"}]}`,
	`{"nodes":[{"name":"a","subtree":"\u0030` + hexID[1:] + `"}]}`, `{"nodes":[{"name":"a","subtree":"` + hexID[1:] + `"}]}`,
	`{"nodes":[{"name":"a","subtree":1}]}`, `{"nodes":[{"name":"a","subtree":[]}]}`, `{"nodes":[{"name":"a","subtree":{}}]}`,
	`{"nodes":[{"name":"a","subtree":true}]}`, `{"nodes":[{"name":"a","subtree":"` + hexID + `","subtree":"` + hexID2 + `"}]}`,
	`{"nodes":[{"name":"a","subtree":"` + hexID + `","subtree":null}]}`, `{"nodes":[{"name":"a","subtree":""}]}`,

	// Bytes and base64.
	`{"nodes":[{"name":"a","linktarget":"x","linktarget_raw":""}]}`, `{"nodes":[{"name":"a","linktarget":"x","linktarget_raw":[]}]}`,
	`{"nodes":[{"name":"a","linktarget":"x","linktarget_raw":null}]}`, `{"nodes":[{"name":"a","linktarget_raw":"/w=="}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":"/w"}]}`, `{"nodes":[{"name":"a","linktarget_raw":"/w=\n="}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":"/w\r\n=="}]}`, `{"nodes":[{"name":"a","linktarget_raw":"-_=="}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":"\u002fw=="}]}`, `{"nodes":[{"name":"a","linktarget_raw":"!"}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":"QUJD\u00e9"}]}`, `{"nodes":[{"name":"a","linktarget_raw":1}]}`,
	`{"nodes":[{"name":"a","linktarget_raw":{}}]}`, `{"nodes":[{"name":"a","linktarget_raw":true}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"name":"n","value":null},{"name":"m","value":""},{"value":"eA=="}]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[]}]}`, `{"nodes":[{"name":"a","extended_attributes":null}]}`,
	`{"nodes":[{"name":"a","extended_attributes":{}}]}`, `{"nodes":[{"name":"a","extended_attributes":[1]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":["x"]}]}`, `{"nodes":[{"name":"a","extended_attributes":[[]]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"name":1}]}]}`, `{"nodes":[{"name":"a","extended_attributes":[{"value":1}]}]}`,
	`{"nodes":[{"name":"a","extended_attributes":[{"value":"!"}]}]}`, `{"nodes":[{"name":"a","extended_attributes":[{"other":[{}]}]}]}`,

	// Unknown keys and values, syntax inside them.
	`{"x":1,"nodes":[{"name":"a","u":{"deep":[null,true,false,-1.5e-3,"s\u00e9",{}]}}],"y":[[],[[]]]}`,
	`{"x":tru,"nodes":[]}`, `{"x":[1,],"nodes":[]}`, `{"x":{"a"},"nodes":[]}`, `{"x":{"a":},"nodes":[]}`,
	`{"x":{1:2},"nodes":[]}`, `{"x":"\q","nodes":[]}`, "{\"x\":\"\x01\",\"nodes\":[]}", `{"x":[}],"nodes":[]}`,
	`{"x":{]},"nodes":[]}`, `{"x":00,"nodes":[]}`, `{"x":-01,"nodes":[]}`, `{"x":1.e5,"nodes":[]}`, `{"x":NaN,"nodes":[]}`,
	`{"nodes":[{"name":"a","x":[{"y":"z"},[1,{"a":[]}]]}],"x":{"k":{"k":{"k":null}}}}`,
	`{"nodes":[{"name":"b"},{"name":"a"}]}`, `{"nodes":[{"name":"a"},{"name":"a"}]}`, `{"nodes":[{"name":"a"},{"name":"\\x61"}]}`,
	`{"nodes":[{"name":"a"},{"name":"B"}]}`, `{"nodes":[{}]}`, `{"nodes":[{"name":""}]}`, `{"nodes":[{"name":"a/b"}]}`,
}

func TestDecodeTreeMatchesReference(t *testing.T) {
	for _, in := range trickyInputs {
		checkSameAsReference(t, []byte(in))
	}
	for name, b := range goldenFiles(t) {
		t.Run(name, func(t *testing.T) {
			checkSameAsReference(t, b)
			// Prefixes and single-byte deletions (a sample of them, to keep
			// the test fast under -race; the fuzzer covers the rest).
			for i := 0; i < len(b); i += max(1, len(b)/600) {
				checkSameAsReference(t, b[:i])
				checkSameAsReference(t, append(b[:i:i], b[i+1:]...))
			}
		})
	}
}

// TestDecodeNestingLimit checks encoding/json's depth limit of 10000, in
// ignored values and in the ones that are decoded.
func TestDecodeNestingLimit(t *testing.T) {
	for _, depth := range []int{9998, 9999, 10000} {
		// The top-level object is level 1.
		unknown := `{"nodes":[],"x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
		checkSameAsReference(t, []byte(unknown))
		_, err := DecodeTree([]byte(unknown))
		if wantOK := depth < 10000; (err == nil) != wantOK {
			t.Errorf("depth %d: err %v", depth+1, err)
		}
		// Level 3 is the node; objects nest in an unknown key.
		nested := `{"nodes":[{"name":"a","x":` + strings.Repeat(`{"a":`, depth-3) + `1` + strings.Repeat("}", depth-3) + `}]}`
		checkSameAsReference(t, []byte(nested))
	}
	// Arrays of bytes inside extended attributes sit at level 6.
	checkSameAsReference(t, []byte(`{"nodes":[{"name":"a","extended_attributes":[{"value":[1,2]}]}]}`))
}

// TestDecodeNoAliasing checks that decoded values do not share memory with
// the input or with each other in a way a caller could notice.
func TestDecodeNoAliasing(t *testing.T) {
	nodes := benchNodes()
	nodes[0].LinkTarget = "tgt\xff"
	nodes[0].ExtendedAttributes = []ExtendedAttribute{{Name: "user.x", Value: []byte("v")}}
	nodes[1].Type, nodes[1].Content = NodeDir, nil
	id := core.NewRandomID()
	nodes[1].Subtree = &id
	buf, err := EncodeTree(nodes)
	if err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(buf)
	tr, err := DecodeTree(buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'X'
	}
	// Growing one node's content must not touch the next node's.
	c0 := tr.Nodes[0].Content
	next := tr.Nodes[2].Content[0]
	tr.Nodes[0].Content = append(tr.Nodes[0].Content, core.ID{})
	if tr.Nodes[2].Content[0] != next || &c0[0] == &tr.Nodes[0].Content[0] {
		t.Error("appending to one node's content affects another node")
	}
	tr.Nodes[0].Content = c0
	back, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, orig) {
		t.Fatalf("decoded tree changed with its input buffer:\n%s\n%s", back, orig)
	}
}

// TestDecodeMergeSemantics spot-checks merged values, independently
// of the reference, so that a change in encoding/json would be noticed.
func TestDecodeMergeSemantics(t *testing.T) {
	in := `{"nodes":[{"name":"a","size":1,"extended_attributes":[{"name":"x","value":"eA=="},{"name":"y"}]},{"name":"b"}],` +
		`"nodes":[{"type":"file","extended_attributes":[{"value":null}],"extended_attributes":[{},{}]}],` +
		`"nodes":[{"size":null},{}]}`
	tr, err := DecodeTree([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	a, b := tr.Nodes[0], tr.Nodes[1]
	if a.Name != "a" || a.Type != NodeFile || a.Size != 1 || len(a.ExtendedAttributes) != 2 ||
		a.ExtendedAttributes[0].Name != "x" || a.ExtendedAttributes[0].Value != nil || a.ExtendedAttributes[1].Name != "y" {
		t.Errorf("node a: %s", dumpNode(a))
	}
	if b.Name != "b" {
		t.Errorf("node b: %s", dumpNode(b))
	}
	checkSameAsReference(t, []byte(in))
}

// genDoc builds a random document from pieces chosen to hit the decoder's
// special cases: near-miss keys, repeated keys, every kind of value for
// every field.
type genDoc struct {
	r  *rand.Rand
	sb strings.Builder
}

var (
	genNodeKeys = []string{"name", "type", "mode", "mtime", "atime", "ctime", "uid", "gid", "user", "group",
		"inode", "device_id", "size", "links", "linktarget", "linktarget_raw", "extended_attributes",
		"generic_attributes", "device", "content", "subtree", "error",
		"NAME", "Content", "SubTree", "lin\\u212atarget", "\\u017fize", "nam", "x", "nodes", "n\\u0061me", "value"}
	genStrings = []string{`"a"`, `"b"`, `"c"`, `"a\\x62"`, `"\\x00"`, `"é"`, `"\u00e9"`, `"\ud800"`, `"\ud83d\ude00"`,
		"\"\xff\"", `"file"`, `"dir"`, `""`, `"."`, `"a/b"`, `"eA=="`, `"/w=="`, `"!"`, `"QUJDREVGR0g="`,
		`"` + hexID + `"`, `"` + strings.ToUpper(hexID2) + `"`, `"\u0030` + hexID[1:] + `"`, `"` + hexID[1:] + `"`,
		`"2020-01-01T00:00:00Z"`, `"2020-01-01T00:00:00.5+05:30"`, `"2020-13-01T00:00:00Z"`, `"\\"`, `"a\"b"`}
	genNumbers = []string{"0", "1", "7", "255", "256", "4294967295", "4294967296", "18446744073709551615",
		"18446744073709551616", "-1", "-0", "1.5", "1e3", "0.0"}
)

func (g *genDoc) pick(list []string) { g.sb.WriteString(list[g.r.IntN(len(list))]) }

func (g *genDoc) space() {
	if g.r.IntN(8) == 0 {
		g.sb.WriteString([]string{" ", "\n", "\t ", "\r\n"}[g.r.IntN(4)])
	}
}

// value writes a random value; depth limits nesting.
func (g *genDoc) value(depth int) {
	g.space()
	switch k := g.r.IntN(10); {
	case k < 3:
		g.pick(genStrings)
	case k < 5:
		g.pick(genNumbers)
	case k == 5:
		g.pick([]string{"null", "null", "true", "false"})
	case k < 8 && depth > 0:
		g.sb.WriteByte('[')
		for i := g.r.IntN(4); i > 0; i-- {
			g.value(depth - 1)
			if i > 1 {
				g.sb.WriteByte(',')
			}
		}
		g.sb.WriteByte(']')
	case depth > 0:
		g.object(depth-1, genNodeKeys)
	default:
		g.sb.WriteString("null")
	}
	g.space()
}

func (g *genDoc) object(depth int, keys []string) {
	g.sb.WriteByte('{')
	for i := g.r.IntN(6); i > 0; i-- {
		g.space()
		g.sb.WriteString(`"` + keys[g.r.IntN(len(keys))] + `"`)
		g.space()
		g.sb.WriteByte(':')
		g.value(depth)
		if i > 1 {
			g.sb.WriteByte(',')
		}
	}
	g.sb.WriteByte('}')
}

func (g *genDoc) tree() []byte {
	g.sb.Reset()
	g.sb.WriteByte('{')
	for i := g.r.IntN(3) + 1; i > 0; i-- {
		g.sb.WriteString([]string{`"nodes"`, `"nodes"`, `"Nodes"`, `"x"`}[g.r.IntN(4)] + ":")
		if g.r.IntN(10) == 0 {
			g.value(2)
		} else {
			g.sb.WriteByte('[')
			for j := g.r.IntN(4); j > 0; j-- {
				if g.r.IntN(8) == 0 {
					g.sb.WriteString("null")
				} else {
					g.object(3, genNodeKeys)
				}
				if j > 1 {
					g.sb.WriteByte(',')
				}
			}
			g.sb.WriteByte(']')
		}
		if i > 1 {
			g.sb.WriteByte(',')
		}
	}
	g.sb.WriteByte('}')
	return []byte(g.sb.String())
}

// TestDecodeRandomDocumentsMatchReference compares the decoders on random
// documents made of tricky pieces, most of them valid JSON.
func TestDecodeRandomDocumentsMatchReference(t *testing.T) {
	g := &genDoc{r: rand.New(rand.NewPCG(7, 8))}
	n := 10000
	if testing.Short() {
		n = 2000
	}
	accepted := 0
	for i := 0; i < n; i++ {
		doc := g.tree()
		checkSameAsReference(t, doc)
		if _, err := DecodeTree(doc); err == nil {
			accepted++
		}
	}
	t.Logf("%d of %d random documents were valid trees", accepted, n)
	// The generator is useless if (almost) everything is rejected.
	if accepted < n/50 {
		t.Errorf("only %d of %d random documents were valid trees", accepted, n)
	}
}

// TestDecodeRandomTreesMatchReference compares the decoders on encoded
// random trees.
func TestDecodeRandomTreesMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 300; i++ {
		buf := encodeRandomTree(t, r)
		checkSameAsReference(t, buf)
		if _, err := DecodeTree(buf); err != nil {
			t.Fatalf("encoded tree does not decode: %v\n%s", err, buf)
		}
	}
}

func encodeRandomTree(t testing.TB, r *rand.Rand) []byte {
	seen := map[string]bool{}
	var nodes []*Node
	for j := r.IntN(12); j >= 0; j-- {
		name := randString(r, 6)
		if seen[name] || ValidName(name) != nil {
			continue
		}
		seen[name] = true
		nodes = append(nodes, randNode(r, name))
	}
	SortNodes(nodes)
	buf, err := EncodeTree(nodes)
	if err != nil {
		t.Fatal(err)
	}
	return buf
}

// FuzzDecodeTreeMatchesReference checks that DecodeTree and
// Node.UnmarshalJSON agree with the encoding/json reference on every input:
// both fail, or both succeed with deeply equal results.
func FuzzDecodeTreeMatchesReference(f *testing.F) {
	for _, b := range goldenFiles(f) {
		f.Add(b)
	}
	for _, in := range trickyInputs {
		f.Add([]byte(in))
	}
	r := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 20; i++ {
		f.Add(encodeRandomTree(f, r))
	}
	g := &genDoc{r: rand.New(rand.NewPCG(13, 14))}
	for i := 0; i < 20; i++ {
		f.Add(g.tree())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSameAsReference(t, data)
	})
}

// Benchmarks.

// largeFileNodes is one file with 10000 content IDs (10 GiB in restic's
// average 1 MiB chunks).
func largeFileNodes() []*Node {
	n := benchNodes()[0]
	n.Content = make(core.IDs, 10000)
	for i := range n.Content {
		n.Content[i] = core.Hash([]byte(strconv.Itoa(i)))
	}
	n.Size = 10 << 30
	return []*Node{n}
}

// varyTimes gives every node its own times, as real directories have:
// ctime equal to mtime, atime later.
func varyTimes(nodes []*Node) []*Node {
	for i, n := range nodes {
		n.ModTime = n.ModTime.Add(time.Duration(i)*time.Hour + time.Duration(i*7919)*time.Microsecond)
		n.ChangeTime = n.ModTime
		n.AccessTime = n.ModTime.Add(time.Duration(i+1) * 24 * time.Hour)
	}
	return nodes
}

// mixedDirNodes is a directory of 100 entries of all kinds, with times in a
// zone 5:30 ahead of UTC and some escaped names.
func mixedDirNodes() []*Node {
	base := time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.FixedZone("", 5*3600+1800))
	var nodes []*Node
	for i := 0; i < 100; i++ {
		n := &Node{
			Name: "entry-" + strconv.Itoa(1000+i), Mode: 0o644, ModTime: base, AccessTime: base, ChangeTime: base,
			UID: 1000, GID: 1000, User: "user", Group: "staff", Inode: uint64(5000 + i), DeviceID: 2049, Links: 1,
		}
		switch i % 5 {
		case 0:
			n.Type, n.Mode = NodeDir, 0o755|1<<31
			id := core.Hash([]byte(n.Name))
			n.Subtree = &id
		case 1:
			n.Type, n.LinkTarget = NodeSymlink, "../target/"+n.Name
		case 2:
			n.Type, n.Content, n.Size = NodeFile, core.IDs{}, 0
			n.Name += " \"quoted\"\n"
		default:
			n.Type, n.Size = NodeFile, 4096
			n.Content = core.IDs{core.Hash([]byte(n.Name))}
			n.ExtendedAttributes = []ExtendedAttribute{{Name: "user.tag", Value: []byte("blue")}}
		}
		nodes = append(nodes, n)
	}
	SortNodes(nodes)
	return nodes
}

func BenchmarkDecodeTree(b *testing.B) {
	inputs := []struct {
		name  string
		nodes []*Node
	}{
		{"dir100", varyTimes(benchNodes())},
		{"mixed100", varyTimes(mixedDirNodes())},
		{"largefile", largeFileNodes()},
	}
	decoders := []struct {
		name   string
		decode func([]byte) (*Tree, error)
	}{
		{"new", DecodeTree},
		{"reference", refDecodeTree},
	}
	for _, in := range inputs {
		buf, err := EncodeTree(in.nodes)
		if err != nil {
			b.Fatal(err)
		}
		for _, dec := range decoders {
			b.Run(in.name+"/"+dec.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(buf)))
				for b.Loop() {
					if _, err := dec.decode(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestDecodeTreeAllocs pins the allocation count for the 100-file
// directory: one per name, plus a handful for the tree, far from the
// reference's 619.
func TestDecodeTreeAllocs(t *testing.T) {
	buf, err := EncodeTree(benchNodes())
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := DecodeTree(buf); err != nil {
			t.Fatal(err)
		}
	})
	// (sync.Pool drops buffers at random under -race: allow for that.)
	if allocs > 100+30 {
		t.Errorf("DecodeTree of 100 nodes made %v allocations", allocs)
	}
}

// TestDecodeTimesMatchReference compares time decoding, in particular the
// fixed-zone shortcut, under several local zones (time.Local is switched
// for the duration of the test; the package's tests do not run in parallel).
func TestDecodeTimesMatchReference(t *testing.T) {
	saved := time.Local
	defer func() { time.Local = saved }()
	r := rand.New(rand.NewPCG(15, 16))
	var times []string
	for _, s := range []string{
		"2020-01-01T00:00:00+05:30", "2020-01-01T00:00:00.5+05:30", "2020-01-01T00:00:00.+05:30",
		"2020-01-01T00:00:00.1234567891234+05:45", "2020-02-29T23:59:59-03:30", "2021-02-29T00:00:00+05:30",
		"2000-02-29T00:00:00+09:30", "1900-02-29T00:00:00+09:30", "2020-04-31T00:00:00+05:30",
		"2020-00-10T00:00:00+05:30", "2020-13-10T00:00:00+05:30", "2020-01-00T00:00:00+05:30",
		"2020-01-01T24:00:00+05:30", "2020-01-01T00:60:00+05:30", "2020-01-01T00:00:60+05:30",
		"2020-01-01T00:00:00+23:59", "2020-01-01T00:00:00+24:30", "2020-01-01T00:00:00+05:60",
		"2020-01-01T00:00:00+05:3x", "2020-01-01T00:00:00 05:30", "2020-01-01T00:00:00+0530",
		"2020-01-01T00:00:00,5+05:30", "2020-01-01t00:00:00+05:30", "2020/01/01T00:00:00+05:30",
		"0000-01-01T00:00:00-00:30", "9999-12-31T23:59:59.999999999+00:01", "2020-01-01T00:00:00+00:30",
		"2020-01-01T00:00:00-00:30", "2020-01-01T00:00:00+05:00", "2020-01-01T00:00:00Z",
		"2020-03-08T05:30:00-02:30", "2020-11-01T03:30:00-03:30", "1950-06-01T00:00:00+05:53",
		"2020-01-01T00:00:00+5:30", "20-01-01T00:00:00+05:30", "2020-01-01T00:00:00.5.5+05:30",
	} {
		times = append(times, s)
	}
	for i := 0; i < 300; i++ {
		tm := time.Unix(r.Int64N(5e9)-1e9, r.Int64N(1e9)*int64(r.IntN(2)))
		for _, off := range []int{19800, -12600, -9000, 20700, 34200, 1800, -1800, 3600} {
			times = append(times, tm.In(time.FixedZone("", off)).Format(time.RFC3339Nano))
		}
	}
	for _, zone := range []string{"UTC", "Asia/Kolkata", "America/St_Johns", "Australia/Adelaide", "Asia/Kathmandu"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		time.Local = loc
		for _, s := range times {
			checkSameAsReference(t, []byte(`{"nodes":[{"name":"a","mtime":"`+s+`","atime":"`+s+`"}]}`))
			// Equal offsets must not break the comparison of the local
			// zone's own times.
			local := time.Unix(r.Int64N(4e9), 0).In(loc).Format(time.RFC3339Nano)
			checkSameAsReference(t, []byte(`{"nodes":[{"name":"a","mtime":"`+local+`"}]}`))
		}
	}
}
