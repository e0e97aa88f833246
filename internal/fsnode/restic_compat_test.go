//go:build linux

package fsnode

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/tree"
)

// compatZone is the time zone the restic comparison runs in: a half-hour
// offset with odd historical offsets shows that times are encoded in the
// local zone exactly like restic's.
const compatZone = "Asia/Kolkata"

// requireRestic returns the path of a restic 0.14 binary. Without one the
// test is skipped, unless CI=true, where it fails.
func requireRestic(t *testing.T) string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	path, err := exec.LookPath("restic")
	if err != nil {
		fail("restic is not installed: %v", err)
		return ""
	}
	out, err := exec.Command(path, "version").Output()
	if err != nil {
		t.Fatalf("restic version: %v", err)
	}
	if !strings.HasPrefix(string(out), "restic 0.14.") {
		fail("the compatibility reference is restic 0.14, found %q", strings.TrimSpace(string(out)))
	}
	return path
}

// TestResticCompatibility backs up a directory holding every kind of entry
// with restic 0.14 and checks that NodeFromPath + tree.EncodeTree produce
// the very same tree blobs, i.e. the same root tree ID. The work happens in
// a child process of the test binary running with TZ=compatZone, so that the
// local zone is not UTC.
func TestResticCompatibility(t *testing.T) {
	restic := requireRestic(t)
	if os.Getenv("CAIRN_FSNODE_COMPAT_CHILD") != "" {
		resticCompatibility(t, restic)
		return
	}
	if _, err := os.Stat(filepath.Join("/usr/share/zoneinfo", compatZone)); err != nil {
		t.Logf("no zoneinfo for %s (%v): comparing in the current zone", compatZone, err)
		resticCompatibility(t, restic)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestResticCompatibility$", "-test.v")
	cmd.Env = append(os.Environ(), "TZ="+compatZone, "CAIRN_FSNODE_COMPAT_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child test output (TZ=%s):\n%s", compatZone, out)
	if err != nil {
		t.Fatalf("child test failed: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestResticCompatibility")) {
		t.Fatal("child test did not pass (skipped?)")
	}
}

func resticCompatibility(t *testing.T, restic string) {
	root := t.TempDir()
	repo := t.TempDir()
	data := filepath.Join(root, "src", "data")
	buildCompatTree(t, data)

	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(restic, append([]string{"--no-cache", "-q", "-r", repo}, args...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "RESTIC_PASSWORD=cairn-test")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("restic %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		if stderr.Len() > 0 {
			t.Logf("restic %s stderr:\n%s", args[0], stderr.String())
		}
		return out
	}
	run("init")
	// A relative path: restic stores "src" and "data" above the contents,
	// each with full metadata, and nothing above them.
	run("backup", "src/data")
	var snaps []struct {
		Tree core.ID `json:"tree"`
	}
	if err := json.Unmarshal(run("snapshots", "--json"), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v (%d snapshots)", err, len(snaps))
	}

	ours := make(map[core.ID][]byte)
	dataID := encodeDir(t, data, ours)
	srcID := encodeAncestor(t, data, dataID, ours)
	rootID := encodeAncestor(t, filepath.Join(root, "src"), srcID, ours)
	if rootID == snaps[0].Tree {
		t.Logf("root tree %v matches restic (%d trees)", rootID, len(ours))
		return
	}
	// Find and show the first differing tree.
	theirs := func(id core.ID) []byte { return run("cat", "blob", id.String()) }
	t.Errorf("root tree differs: ours %v, restic %v", rootID, snaps[0].Tree)
	diffTrees(t, ours, rootID, snaps[0].Tree, theirs, 0)
}

// encodeDir encodes dir the way restic 0.14's archiver does, recursively,
// recording every tree blob in trees, and returns the tree ID. Data blob IDs
// are the SHA-256 of the whole file: the test files are smaller than the
// chunker's minimum chunk size, so each is a single blob.
func encodeDir(t *testing.T, dir string, trees map[core.ID][]byte) core.ID {
	t.Helper()
	entries, err := os.ReadDir(dir) // sorted by name, bytewise
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*tree.Node
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		n, err := NodeFromPath(p, fi, Options{})
		if err != nil {
			t.Fatal(err)
		}
		switch n.Type {
		case tree.NodeSocket:
			continue // restic 0.14's archiver skips sockets
		case tree.NodeFile:
			if n.Size > 0 {
				content, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				n.Content = core.IDs{core.Hash(content)}
			}
		case tree.NodeDir:
			id := encodeDir(t, p, trees)
			n.Subtree = &id
		}
		nodes = append(nodes, n)
	}
	blob, err := tree.EncodeTree(nodes)
	if err != nil {
		t.Fatal(err)
	}
	id := core.Hash(blob)
	trees[id] = blob
	return id
}

// encodeAncestor encodes the tree holding only the node for dir (whose own
// tree is sub), as restic does for the components of the backup path.
func encodeAncestor(t *testing.T, dir string, sub core.ID, trees map[core.ID][]byte) core.ID {
	t.Helper()
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NodeFromPath(dir, fi, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n.Subtree = &sub
	blob, err := tree.EncodeTree([]*tree.Node{n})
	if err != nil {
		t.Fatal(err)
	}
	id := core.Hash(blob)
	trees[id] = blob
	return id
}

// diffTrees reports the nodes that differ between our tree and restic's,
// descending into directories whose only difference may be a subtree.
func diffTrees(t *testing.T, ours map[core.ID][]byte, ourID, theirID core.ID, theirs func(core.ID) []byte, depth int) {
	t.Helper()
	if depth > 8 {
		return
	}
	ourBlob, theirBlob := ours[ourID], theirs(theirID)
	ourTree, err1 := tree.DecodeTree(ourBlob)
	theirTree, err2 := tree.DecodeTree(theirBlob)
	if err1 != nil || err2 != nil {
		t.Errorf("decode: %v / %v\nours:   %s\nrestic: %s", err1, err2, ourBlob, theirBlob)
		return
	}
	names := map[string]bool{}
	for _, n := range ourTree.Nodes {
		names[n.Name] = true
	}
	for _, n := range theirTree.Nodes {
		names[n.Name] = true
	}
	for name := range names {
		o, r := ourTree.Find(name), theirTree.Find(name)
		if o == nil || r == nil {
			t.Errorf("node %q only in one tree (ours %v, restic %v)", name, o != nil, r != nil)
			continue
		}
		ob, _ := o.MarshalJSON()
		rb, _ := r.MarshalJSON()
		if o.Subtree != nil && r.Subtree != nil && *o.Subtree != *r.Subtree {
			diffTrees(t, ours, *o.Subtree, *r.Subtree, theirs, depth+1)
			o2 := *o
			o2.Subtree = r.Subtree
			ob, _ = o2.MarshalJSON()
		}
		if !bytes.Equal(ob, rb) {
			t.Errorf("node %q differs:\nours:   %s\nrestic: %s", name, ob, rb)
		}
	}
	t.Logf("tree bytes:\nours:   %s\nrestic: %s", ourBlob, theirBlob)
}

// buildCompatTree creates every kind of entry restic 0.14 can store, plus a
// socket (which it skips), under dir.
func buildCompatTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	write := func(name, content string, mode os.FileMode) {
		t.Helper()
		must(os.WriteFile(p(name), []byte(content), 0o644))
		must(os.Chmod(p(name), mode)) // also sets setuid etc., unaffected by umask
	}
	must(os.MkdirAll(p("sub/deeper"), 0o755))
	must(os.Mkdir(p("emptydir"), 0o700))
	must(os.Mkdir(p("special-dir"), 0o755))
	must(os.Chmod(p("special-dir"), 0o775|os.ModeSetgid|os.ModeSticky))

	write("a.txt", "hello\n", 0o755|os.ModeSetuid)
	must(os.Link(p("a.txt"), p("hard")))
	write("empty", "", 0o644)
	write("nomode", "zero permissions", 0)
	write(`sp ace "q"`, "x", 0o644)
	write("new\nline", "y", 0o600)
	write("bad\xffname\x01", "z", 0o644)
	write("<&>\t\x7f", "html", 0o644)
	write("é\u2028日本", "unicode", 0o644)
	write("sub/inner.bin", strings.Repeat("\x00\x01", 50000), 0o640)
	write("sub/deeper/leaf", "leaf", 0o444)

	must(os.Symlink("a.txt", p("link")))
	must(os.Symlink("tar\bget\x01\f", p("ctl-link")))
	must(os.Symlink("../ü/<x>", p("uni-link")))
	must(os.Symlink("dangling/nowhere", p("sub/dangling")))
	must(unix.Mkfifo(p("fifo"), 0o640))
	if err := unix.Mknod(p("chardev"), unix.S_IFCHR|0o620, int(unix.Mkdev(1, 3))); err != nil {
		t.Logf("mknod not permitted (%v): no device nodes", err)
	} else {
		must(unix.Mknod(p("blockdev"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p("socket"), Net: "unix"})
	must(err)
	l.SetUnlinkOnClose(false)
	must(l.Close())

	// Owner without a name (needs root).
	write("nobody-owns", "n", 0o644)
	if err := os.Lchown(p("nobody-owns"), 54321, 54322); err != nil {
		t.Logf("chown not permitted (%v)", err)
	}

	// Extended attributes, in an order that is not sorted, plus an empty
	// value and a name that is not valid UTF-8.
	if err := unix.Setxattr(p("a.txt"), "user.zeta", []byte("1"), 0); err != nil {
		if !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			t.Fatal(err)
		}
		t.Logf("user xattrs not supported here (%v): skipping them", err)
	} else {
		must(unix.Setxattr(p("a.txt"), "user.alpha", []byte{0xff, 0, 1}, 0))
		must(unix.Setxattr(p("a.txt"), "user.empty", nil, 0))
		must(unix.Setxattr(p("a.txt"), "user.\xffbad", []byte("v"), 0))
		must(unix.Setxattr(p("special-dir"), "user.dir", []byte("d"), 0))
	}

	// Times with nanoseconds, far in the past (historical zone offsets) and
	// in the future. Directory times last, after their contents exist.
	times := map[string]time.Time{
		"empty":         time.Date(1905, 3, 4, 5, 6, 7, 123456789, time.UTC),
		"nomode":        time.Date(2400, 12, 31, 23, 59, 59, 999999999, time.UTC),
		"sub/inner.bin": time.Unix(1700000000, 100),
		"fifo":          time.Unix(1600000000, 0),
		"sub/deeper":    time.Unix(1500000000, 5),
		"emptydir":      time.Unix(1400000000, 50000),
	}
	for name, tm := range times {
		must(os.Chtimes(p(name), tm.Add(time.Hour), tm))
	}
	must(unix.Lutimes(p("link"), []unix.Timeval{{Sec: 1234567890}, {Sec: 1234567891, Usec: 7}}))
}
