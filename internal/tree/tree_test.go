package tree

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // deterministic zone data for the clamping tests

	"github.com/cairn-backup/cairn/internal/core"
)

// goldenFiles are tree blobs written by restic 0.14.0 (see testdata/README).
func goldenFiles(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/restic014-*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no golden trees in testdata")
	}
	out := make(map[string][]byte)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// TestGoldenRoundTrip decodes trees restic 0.14 wrote and checks that
// re-encoding reproduces them byte for byte (and therefore the same ID).
func TestGoldenRoundTrip(t *testing.T) {
	wantIDs := map[string]string{
		"restic014-ext4.json":     "9111d0af499e7981f0f7b15c45cb8426ed0ba1a776753615a98f2b818710f967",
		"restic014-root.json":     "b8ac6c9c283f8e4ac1ad4565554bc4d97c8aba22e9aad24a418f2232b59797c8",
		"restic014-tmpfs-tz.json": "1bab8745c337322943dcc3701fc327f3e34ec054581fe1d0305c628e08894357",
	}
	for name, blob := range goldenFiles(t) {
		t.Run(name, func(t *testing.T) {
			if want, ok := wantIDs[name]; !ok || core.Hash(blob).String() != want {
				t.Fatalf("golden file %s has ID %v, want %v", name, core.Hash(blob), want)
			}
			tr, err := DecodeTree(blob)
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.Nodes) == 0 {
				t.Fatal("no nodes decoded")
			}
			got, err := EncodeTree(tr.Nodes)
			if err != nil {
				t.Fatal(err)
			}
			// restic wrote a non-UTF-8 link target as "\ufffd"; decoding
			// turns that into a real U+FFFD, which encoding/json (and so
			// restic itself) writes back as raw UTF-8. That one escape is
			// not reproducible by any decoder; everything else must be.
			want := bytes.ReplaceAll(blob, []byte(`\ufffd`), []byte("\uFFFD"))
			if !bytes.Equal(got, want) {
				t.Fatalf("re-encoding differs:\n got %s\nwant %s", got, want)
			}
			// The Builder must agree.
			var b Builder
			for _, n := range tr.Nodes {
				if err := b.AddNode(n); err != nil {
					t.Fatal(err)
				}
			}
			got2, err := b.Finish()
			if err != nil || !bytes.Equal(got2, want) {
				t.Fatalf("builder output differs (err %v):\n got %s", err, got2)
			}
		})
	}
}

func TestGoldenDecodedValues(t *testing.T) {
	blob := goldenFiles(t)["restic014-ext4.json"]
	tr, err := DecodeTree(blob)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, fn func(n *Node) bool) {
		t.Helper()
		n := tr.Find(name)
		if n == nil {
			t.Fatalf("node %q not found", name)
		}
		if !fn(n) {
			t.Errorf("node %q: unexpected values %+v", name, *n)
		}
	}
	check("bad\xffname", func(n *Node) bool { return n.Type == NodeFile && n.Size == 1 })
	check("new\nline", func(n *Node) bool { return n.Type == NodeFile })
	check(`sp ace "q"`, func(n *Node) bool { return n.Type == NodeFile })
	check("ctl_link", func(n *Node) bool { return n.LinkTarget == "tar\bget\x01" && n.Links == 1 })
	check("empty", func(n *Node) bool { return n.Content != nil && len(n.Content) == 0 })
	check("fifo", func(n *Node) bool { return n.Type == NodeFifo && n.Content == nil && n.Links == 0 })
	check("cdev", func(n *Node) bool { return n.Type == NodeCharDev && n.Device == 259 })
	check("a.txt", func(n *Node) bool {
		return n.Mode == os.ModeSetuid|0o755 && n.Links == 2 && len(n.ExtendedAttributes) == 3 &&
			n.ExtendedAttributes[0].Name == "user.b" && string(n.ExtendedAttributes[1].Value) == "1" &&
			n.ExtendedAttributes[2].Value != nil && len(n.ExtendedAttributes[2].Value) == 0
	})
	check("sub", func(n *Node) bool {
		return n.Type == NodeDir && n.Subtree != nil && n.Mode == os.ModeDir|0o755 && n.Validate() == nil
	})
	if tr.Find("nonexistent") != nil || tr.Find("") != nil || tr.Find("zzz") != nil {
		t.Error("Find returned a node for a missing name")
	}
	for _, n := range tr.Nodes {
		if err := n.Validate(); err != nil {
			t.Errorf("Validate(%q): %v", n.Name, err)
		}
	}
}

// TestClampYear reproduces what restic 0.14 stored for files with mtimes in
// the years 14645 and -249 (UTC), in two zones with odd historical offsets.
func TestClampYear(t *testing.T) {
	cases := []struct {
		zone string
		sec  int64
		want string
	}{
		{"America/St_Johns", 400000000000, `"9999-06-30T12:36:40-02:30"`},
		{"America/St_Johns", -70000000000, `"0000-10-15T16:02:28-03:30"`},
		{"Asia/Kolkata", 400000000000, `"9999-06-30T20:36:40+05:30"`},
		{"Asia/Kolkata", -70000000000, `"0000-10-16T01:26:48+05:53"`},
		{"UTC", 1708344000, `"2024-02-19T12:00:00Z"`},
	}
	for _, c := range cases {
		loc, err := time.LoadLocation(c.zone)
		if err != nil {
			t.Fatal(err)
		}
		got := string(appendTime(nil, time.Unix(c.sec, 0).In(loc)))
		if got != c.want {
			t.Errorf("%s %d: got %s, want %s", c.zone, c.sec, got, c.want)
		}
	}
	// Leap day moved into a non-leap year is normalised by AddDate.
	tm := time.Date(10400, 2, 29, 1, 2, 3, 4, time.UTC)
	if got := string(appendTime(nil, tm)); got != `"9999-03-01T01:02:03.000000004Z"` {
		t.Errorf("leap day: got %s", got)
	}
}

// refNode is restic's node struct shape, encoded with encoding/json, used
// as the reference for AppendJSON.
type refNode struct {
	Name               string                     `json:"name"`
	Type               string                     `json:"type"`
	Mode               os.FileMode                `json:"mode,omitempty"`
	ModTime            time.Time                  `json:"mtime,omitempty"`
	AccessTime         time.Time                  `json:"atime,omitempty"`
	ChangeTime         time.Time                  `json:"ctime,omitempty"`
	UID                uint32                     `json:"uid"`
	GID                uint32                     `json:"gid"`
	User               string                     `json:"user,omitempty"`
	Group              string                     `json:"group,omitempty"`
	Inode              uint64                     `json:"inode,omitempty"`
	DeviceID           uint64                     `json:"device_id,omitempty"`
	Size               uint64                     `json:"size,omitempty"`
	Links              uint64                     `json:"links,omitempty"`
	LinkTarget         string                     `json:"linktarget,omitempty"`
	LinkTargetRaw      []byte                     `json:"linktarget_raw,omitempty"`
	ExtendedAttributes []ExtendedAttribute        `json:"extended_attributes,omitempty"`
	GenericAttributes  map[string]json.RawMessage `json:"generic_attributes,omitempty"`
	Device             uint64                     `json:"device,omitempty"`
	Content            core.IDs                   `json:"content"`
	Subtree            *core.ID                   `json:"subtree,omitempty"`
	Error              string                     `json:"error,omitempty"`
}

func refEncode(t *testing.T, n *Node) []byte {
	t.Helper()
	q := strconv.Quote(n.Name)
	r := refNode{
		Name: q[1 : len(q)-1], Type: string(n.Type), Mode: n.Mode,
		ModTime: clampYear(n.ModTime), AccessTime: clampYear(n.AccessTime), ChangeTime: clampYear(n.ChangeTime),
		UID: n.UID, GID: n.GID, User: n.User, Group: n.Group, Inode: n.Inode, DeviceID: n.DeviceID,
		Size: n.Size, Links: n.Links, LinkTarget: n.LinkTarget, ExtendedAttributes: n.ExtendedAttributes,
		GenericAttributes: n.GenericAttributes, Device: n.Device, Content: n.Content, Subtree: n.Subtree, Error: n.Error,
	}
	if !validUTF8(n.LinkTarget) {
		r.LinkTargetRaw = []byte(n.LinkTarget)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// randString returns a string mixing ASCII, HTML-special characters,
// control characters (except \b and \f, whose escaping changed in Go 1.22),
// multi-byte runes, U+2028 and invalid bytes.
func randString(r *rand.Rand, maxLen int) string {
	pieces := []string{"a", "Z", "0", " ", "\"", "\\", "<", ">", "&", "\n", "\r", "\t", "\x01", "\x1f", "\x7f",
		"é", "日本", "\u2028", "\u2029", "\U0001F600", "\xff", "\xc3", "\xed\xa0\x80", "/", ".", "'", "%"}
	var sb strings.Builder
	n := r.IntN(maxLen + 1)
	for i := 0; i < n; i++ {
		sb.WriteString(pieces[r.IntN(len(pieces))])
	}
	return sb.String()
}

func randNode(r *rand.Rand, name string) *Node {
	loc := time.FixedZone("", (r.IntN(48)-24)*1800)
	tm := func() time.Time {
		switch r.IntN(6) {
		case 0:
			return time.Unix(r.Int64N(1<<40)-(1<<39), 0).In(loc) // includes years < 0 and > 9999
		case 1:
			return time.Time{}
		default:
			return time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(loc)
		}
	}
	n := &Node{
		Name: name, Type: []NodeType{NodeFile, NodeDir, NodeSymlink, NodeFifo, NodeDev}[r.IntN(5)],
		Mode: os.FileMode(r.Uint32()), ModTime: tm(), AccessTime: tm(), ChangeTime: tm(),
		UID: r.Uint32(), GID: r.Uint32(),
	}
	if r.IntN(2) == 0 {
		n.Mode = 0
	}
	if r.IntN(2) == 0 {
		n.User, n.Group = randString(r, 4), randString(r, 4)
	}
	if r.IntN(2) == 0 {
		n.Inode, n.DeviceID, n.Size, n.Links, n.Device = r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()
	}
	if r.IntN(2) == 0 {
		n.LinkTarget = randString(r, 6)
	}
	if r.IntN(3) == 0 {
		for i := r.IntN(3); i >= 0; i-- {
			a := ExtendedAttribute{Name: randString(r, 5)}
			switch r.IntN(3) {
			case 0:
				a.Value = []byte{}
			case 1:
				a.Value = []byte(randString(r, 8))
			}
			n.ExtendedAttributes = append(n.ExtendedAttributes, a)
		}
	}
	if r.IntN(5) == 0 {
		n.GenericAttributes = map[string]json.RawMessage{
			"windows.b": json.RawMessage(` { "x" : "<&>" } `), "windows.a": json.RawMessage(`12`),
		}
	}
	switch r.IntN(3) {
	case 0:
		n.Content = core.IDs{}
	case 1:
		for i := r.IntN(4); i >= 0; i-- {
			n.Content = append(n.Content, core.NewRandomID())
		}
	}
	if r.IntN(2) == 0 {
		id := core.NewRandomID()
		n.Subtree = &id
	}
	if r.IntN(4) == 0 {
		n.Error = randString(r, 6)
	}
	return n
}

// TestAppendJSONMatchesReference compares the hand-written encoder with
// encoding/json on restic's struct shape for many random nodes.
func TestAppendJSONMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		n := randNode(r, randString(r, 8))
		got, err := n.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		want := refEncode(t, n)
		if !bytes.Equal(got, want) {
			t.Fatalf("node %d differs:\n got %s\nwant %s", i, got, want)
		}
		// Node.MarshalJSON is also what encoding/json uses.
		viaJSON, err := json.Marshal(n)
		if err != nil || !bytes.Equal(viaJSON, want) {
			t.Fatalf("json.Marshal(node) differs (err %v):\n got %s", err, viaJSON)
		}
	}
}

// TestStringEscapingGo119 pins the escapes that differ from current
// encoding/json: restic 0.14 (go1.19) writes \b and \f as \u0008 and \u000c.
func TestStringEscapingGo119(t *testing.T) {
	cases := map[string]string{
		"tar\bget\x01": `"tar\u0008get\u0001"`,
		"\f":           `"\u000c"`,
		"<a&b>\u2028é": `"\u003ca\u0026b\u003e\u2028é"`,
		"raw\xfe":      `"raw\ufffd"`,
		"\x7f\t\r\n":   "\"\x7f\\t\\r\\n\"",
	}
	for in, want := range cases {
		if got := string(appendString(nil, in)); got != want {
			t.Errorf("appendString(%q) = %s, want %s", in, got, want)
		}
	}
	// Names are strconv.Quote'd first.
	names := map[string]string{
		`sp ace "q"`:   `"sp ace \\\"q\\\""`,
		"new\nline":    `"new\\nline"`,
		"bad\xffname":  `"bad\\xffname"`,
		"é\u2028x":     `"é\\u2028x"`,
		"a<b>&c":       `"a\u003cb\u003e\u0026c"`,
		"tab\there\b":  `"tab\\there\\b"`,
		"plain.txt":    `"plain.txt"`,
		"\U0001F600\t": `"` + "\U0001F600" + `\\t"`,
	}
	for in, want := range names {
		if got := string(appendName(nil, in)); got != want {
			t.Errorf("appendName(%q) = %s, want %s", in, got, want)
		}
		back, err := unquoteName(mustUnmarshalString(t, want))
		if err != nil || back != in {
			t.Errorf("unquoteName(%s) = %q, %v; want %q", want, back, err, in)
		}
	}
}

func mustUnmarshalString(t *testing.T, s string) string {
	t.Helper()
	var out string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnquoteFastPath checks the fast path against strconv.Unquote.
func TestUnquoteFastPath(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		s := randString(r, 6)
		got, gotErr := unquoteName(s)
		want, wantErr := strconv.Unquote(`"` + s + `"`)
		if (gotErr != nil) != (wantErr != nil) || got != want {
			t.Fatalf("unquoteName(%q) = %q, %v; strconv.Unquote = %q, %v", s, got, gotErr, want, wantErr)
		}
	}
}

func TestEncodeEmptyAndErrors(t *testing.T) {
	for _, nodes := range [][]*Node{nil, {}} {
		b, err := EncodeTree(nodes)
		if err != nil || string(b) != "{\"nodes\":[]}\n" {
			t.Fatalf("empty tree: %q, %v", b, err)
		}
		// Well-known ID of the empty tree, as restic stores it.
		if core.Hash(b).String() != "ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8" {
			t.Fatalf("empty tree ID %v", core.Hash(b))
		}
	}
	var b Builder
	if got, err := b.Finish(); err != nil || string(got) != "{\"nodes\":[]}\n" {
		t.Fatalf("empty builder: %q, %v", got, err)
	}

	mk := func(names ...string) []*Node {
		var out []*Node
		for _, n := range names {
			out = append(out, &Node{Name: n, Type: NodeFifo})
		}
		return out
	}
	bad := map[string][]*Node{
		"duplicate name \"b\"":   mk("a", "b", "b"),
		`"a" after "b"`:          mk("b", "a"),
		"empty":                  mk(""),
		"contains '/'":           mk("a/b"),
		"contains NUL":           mk("a\x00"),
		`invalid node name ".."`: mk(".."),
		"node 1 is nil":          {{Name: "a"}, nil},
	}
	for want, nodes := range bad {
		_, err := EncodeTree(nodes)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("EncodeTree(%s): err %v, want it to mention %q", want, err, want)
		}
		var b Builder
		var addErr error
		for _, n := range nodes {
			if addErr = b.AddNode(n); addErr != nil {
				break
			}
		}
		if _, finErr := b.Finish(); addErr == nil || finErr == nil {
			t.Errorf("Builder accepted %s (AddNode %v, Finish %v)", want, addErr, finErr)
		}
	}
	if _, err := EncodeTree(mk("b", "a")); !errors.Is(err, ErrUnsorted) {
		t.Errorf("unsorted error %v does not wrap ErrUnsorted", err)
	}
	bad2 := &Node{Name: "x", GenericAttributes: map[string]json.RawMessage{"k": json.RawMessage("{nope")}}
	if _, err := EncodeTree([]*Node{bad2}); err == nil {
		t.Error("invalid generic attribute accepted")
	}
}

func TestSortNodesAndFind(t *testing.T) {
	names := []string{"b", "a", "B", "\xff", "é", "a b", "ab", "a\x01"}
	var nodes []*Node
	for _, n := range names {
		nodes = append(nodes, &Node{Name: n, Type: NodeFile, Content: core.IDs{}})
	}
	SortNodes(nodes)
	buf, err := EncodeTree(nodes)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := DecodeTree(buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if f := tr.Find(n); f == nil || f.Name != n {
			t.Errorf("Find(%q) = %v", n, f)
		}
	}
	if tr.Find("c") != nil {
		t.Error("Find(c) found something")
	}
}

func TestLinkTargetRaw(t *testing.T) {
	n := &Node{Name: "l", Type: NodeSymlink, LinkTarget: "raw\xfe/ok"}
	b, err := EncodeTree([]*Node{n})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"linktarget":"raw\ufffd/ok","linktarget_raw":"cmF3/i9vaw=="`)) {
		t.Fatalf("unexpected encoding %s", b)
	}
	tr, err := DecodeTree(b)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Nodes[0].LinkTarget != n.LinkTarget {
		t.Fatalf("link target %q, want %q", tr.Nodes[0].LinkTarget, n.LinkTarget)
	}
	// linktarget_raw wins over linktarget, and an empty raw value counts.
	in := `{"nodes":[{"name":"l","type":"symlink","linktarget":"x","linktarget_raw":"","content":null}]}`
	tr, err = DecodeTree([]byte(in))
	if err != nil || tr.Nodes[0].LinkTarget != "" {
		t.Fatalf("empty raw target: %v %q", err, tr.Nodes[0].LinkTarget)
	}
}

func TestDecodeTolerance(t *testing.T) {
	id := strings.Repeat("ab", 32)
	in := `{"before":[1,{"x":2}], "nodes" : [ {"name":"a","type":"file","unknown":{"deep":[null]},` +
		`"content":[ "` + strings.ToUpper(id) + `" , "` + id + `" ]}, {"name":"b","type":"file","content":[]},` +
		`{"name":"c","type":"file","content":["\u0061` + id[1:] + `"]},` +
		`{"name":"d","type":"file","content":null},{"name":"e","type":"fifo"}],"after":"x"}`
	tr, err := DecodeTree([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Nodes) != 5 {
		t.Fatalf("%d nodes", len(tr.Nodes))
	}
	if c := tr.Nodes[0].Content; len(c) != 2 || c[0] != c[1] || c[0].String() != id {
		t.Errorf("content a: %v", c)
	}
	if c := tr.Nodes[1].Content; c == nil || len(c) != 0 {
		t.Errorf("content b: %#v", c)
	}
	if c := tr.Nodes[2].Content; len(c) != 1 || c[0].String() != id {
		t.Errorf("content c (escaped): %v", c)
	}
	if tr.Nodes[3].Content != nil || tr.Nodes[4].Content != nil {
		t.Error("null/missing content decoded as non-nil")
	}
	for _, in := range []string{`{}`, `{"nodes":null}`, `{"other":1}`} {
		tr, err := DecodeTree([]byte(in))
		if err != nil || len(tr.Nodes) != 0 {
			t.Errorf("DecodeTree(%s) = %v, %v", in, tr, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	id := strings.Repeat("0", 64)
	cases := map[string]string{
		`{"nodes":[{"name":"b"},{"name":"a"}]}`:                          `"a" after "b"`,
		`{"nodes":[{"name":"a"},{"name":"a"}]}`:                          "duplicate",
		`{"nodes":[{"name":"a"},null]}`:                                  "node 1 is null",
		`{"nodes":[{"name":"a\"b"}]}`:                                    "unquote",
		`{"nodes":[{"name":"a\\q"}]}`:                                    "unquote",
		`{"nodes":[{"name":"a/b"}]}`:                                     "contains '/'",
		`{"nodes":[{"name":"\\x00"}]}`:                                   "NUL",
		`{"nodes":[{"name":".."}]}`:                                      "invalid node name",
		`{"nodes":[{"name":""}]}`:                                        "empty",
		`{"nodes":[{}]}`:                                                 "empty",
		`{"nodes":[{"name":"a","content":["abc"]}]}`:                     "invalid ID",
		`{"nodes":[{"name":"a","content":["` + id[1:] + `x"]}]}`:         "invalid ID",
		`{"nodes":[{"name":"a","content":[1]}]}`:                         "not a string",
		`{"nodes":[{"name":"a","content":{}}]}`:                          "expected an array",
		`{"nodes":[{"name":"a","subtree":"xyz"}]}`:                       "invalid ID",
		`{"nodes":[{"name":"a","mtime":"yesterday"}]}`:                   "cannot parse",
		`{"nodes":[{"name":"a","uid":-1}]}`:                              "uid",
		`{"nodes":[{"name":"a","extended_attributes":[{"value":"!"}]}]}`: "illegal base64",
		`{"nodes":[{"name":"a"}]`:                                        "unexpected end",
		`{"nodes":{"name":"a"}}`:                                         "cannot unmarshal",
		``:                                                               "unexpected end",
		`{"nodes":[]}x`:                                                  "invalid character",
	}
	for in, want := range cases {
		_, err := DecodeTree([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeTree(%s): err %v, want it to mention %q", in, err, want)
		}
	}
	var n Node
	if err := json.Unmarshal([]byte(`{"name":"ok\\x41","type":"file","content":[]}`), &n); err != nil || n.Name != "okA" {
		t.Errorf("Node.UnmarshalJSON: %v %q", err, n.Name)
	}
	if err := json.Unmarshal([]byte(`{"name":"a/b"}`), &n); err == nil {
		t.Error("Node.UnmarshalJSON accepted a name with a slash")
	}
}

func TestValidate(t *testing.T) {
	id := core.NewRandomID()
	ok := []*Node{
		{Name: "f", Type: NodeFile, Content: core.IDs{}},
		{Name: "f", Type: NodeFile, Content: core.IDs{id}},
		{Name: "d", Type: NodeDir, Subtree: &id},
		{Name: "l", Type: NodeSymlink},
	}
	for _, n := range ok {
		if err := n.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", n, err)
		}
	}
	null := core.ID{}
	bad := []*Node{
		{Name: "f", Type: NodeFile},
		{Name: "f", Type: NodeFile, Content: core.IDs{null}},
		{Name: "d", Type: NodeDir},
		{Name: "d", Type: NodeDir, Subtree: &null},
		{Name: "l", Type: NodeSymlink, Content: core.IDs{id}},
		{Name: "x", Type: "weird"},
		{Name: "", Type: NodeFile, Content: core.IDs{}},
	}
	for _, n := range bad {
		if err := n.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", n)
		}
	}
}

// TestRandomTreesRoundTrip encodes random trees, decodes them and checks
// that re-encoding is identical.
func TestRandomTreesRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 300; i++ {
		seen := map[string]bool{}
		var nodes []*Node
		for j := r.IntN(20); j >= 0; j-- {
			name := randString(r, 6)
			if seen[name] || ValidName(name) != nil {
				continue
			}
			seen[name] = true
			n := randNode(r, name)
			// Invalid UTF-8 in plain strings is replaced by \ufffd on
			// encode, which decodes to a valid U+FFFD: not stable on the
			// first round by design. Names and link targets are exact.
			n.User = strings.ToValidUTF8(n.User, "\uFFFD")
			n.Group = strings.ToValidUTF8(n.Group, "\uFFFD")
			n.Error = strings.ToValidUTF8(n.Error, "\uFFFD")
			for k := range n.ExtendedAttributes {
				n.ExtendedAttributes[k].Name = strings.ToValidUTF8(n.ExtendedAttributes[k].Name, "\uFFFD")
			}
			nodes = append(nodes, n)
		}
		SortNodes(nodes)
		b1, err := EncodeTree(nodes)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := DecodeTree(b1)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, b1)
		}
		b2, err := tr.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("round trip differs:\n%s\n%s", b1, b2)
		}
		for k, n := range tr.Nodes {
			if n.Name != nodes[k].Name || n.LinkTarget != nodes[k].LinkTarget {
				t.Fatalf("name/linktarget changed: %q %q", n.Name, n.LinkTarget)
			}
		}
	}
}

func benchNodes() []*Node {
	var nodes []*Node
	base := time.Unix(1700000000, 123456789)
	for i := 0; i < 100; i++ {
		nodes = append(nodes, &Node{
			Name: "file-" + strconv.Itoa(1000+i) + ".txt", Type: NodeFile, Mode: 0o644,
			ModTime: base, AccessTime: base, ChangeTime: base, UID: 1000, GID: 1000,
			User: "user", Group: "user", Inode: uint64(100000 + i), DeviceID: 65024, Size: 12345, Links: 1,
			Content: core.IDs{core.NewRandomID(), core.NewRandomID()},
		})
	}
	return nodes
}

func TestEncodeTreeAllocs(t *testing.T) {
	nodes := benchNodes()
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := EncodeTree(nodes); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("EncodeTree of 100 nodes made %v allocations, want 1", allocs)
	}
}

func BenchmarkEncodeTree(b *testing.B) {
	nodes := benchNodes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeTree(nodes); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeTreeReference(b *testing.B) {
	nodes := benchNodes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(Tree{Nodes: nodes}); err != nil {
			b.Fatal(err)
		}
	}
}
