//go:build linux

package fsnode

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/tree"
)

// features records which optional filesystem features work in dir.
type features struct {
	mknod, chown, xattr bool
}

func probeFeatures(t *testing.T, dir string) features {
	t.Helper()
	var f features
	probe := filepath.Join(dir, ".probe")
	if err := unix.Mknod(probe, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err == nil {
		f.mknod = true
		os.Remove(probe)
	} else {
		t.Logf("skipping device nodes: mknod: %v", err)
	}
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(probe, 54321, 54322); err == nil {
		f.chown = true
	} else {
		t.Logf("skipping foreign ownership: chown: %v", err)
	}
	if err := unix.Setxattr(probe, "user.probe", []byte("x"), 0); err == nil {
		f.xattr = true
	} else {
		t.Logf("skipping xattrs: setxattr: %v", err)
	}
	os.Remove(probe)
	return f
}

// TestRoundTrip reads every kind of entry with NodeFromPath, passes the
// nodes through a tree blob, recreates them elsewhere with CreateSpecial /
// RestoreMetadata (and HardlinkIndex for the hard link), and compares the
// metadata of the copies with the originals.
func TestRoundTrip(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	feat := probeFeatures(t, src)
	p := func(name string) string { return filepath.Join(src, name) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	contents := map[string]string{
		"file":          "some content\n",
		"empty":         "",
		"setuid":        "#!/bin/sh\n",
		"nomode":        "x",
		"owned":         "o",
		"dir/inner":     "inner",
		"weird\n\xff\"": "w",
	}
	must(os.Mkdir(p("dir"), 0o755))
	for name, c := range contents {
		must(os.WriteFile(p(name), []byte(c), 0o644))
	}
	must(os.Chmod(p("setuid"), os.ModeSetuid|0o755))
	must(os.Chmod(p("nomode"), 0))
	must(os.Chmod(p("dir"), os.ModeSetgid|os.ModeSticky|0o751))
	must(os.Link(p("file"), p("hardlink")))
	must(os.Symlink("file", p("symlink")))
	must(os.Symlink("raw\xfe\x01target", p("rawlink")))
	must(unix.Mkfifo(p("fifo"), 0o604))
	if feat.mknod {
		must(unix.Mknod(p("chardev"), unix.S_IFCHR|0o620, int(unix.Mkdev(1, 7))))
		must(unix.Mknod(p("blockdev"), unix.S_IFBLK|0o640, int(unix.Mkdev(259, 65537))))
	}
	if feat.chown {
		must(os.Lchown(p("owned"), 54321, 54322))
		must(os.Lchown(p("symlink"), 54323, 54324))
	}
	if feat.xattr {
		must(unix.Setxattr(p("file"), "user.b", []byte("2"), 0))
		must(unix.Setxattr(p("file"), "user.a", []byte{0, 1, 2, 0xff}, 0))
		must(unix.Setxattr(p("file"), "user.empty", nil, 0))
		must(unix.Setxattr(p("dir"), "user.d", []byte("dir attr"), 0))
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p("socket"), Net: "unix"})
	must(err)
	l.SetUnlinkOnClose(false)
	must(l.Close())
	old := time.Date(1950, 6, 7, 8, 9, 10, 111, time.UTC)
	must(os.Chtimes(p("empty"), old.Add(-time.Hour), old))
	must(os.Chtimes(p("dir/inner"), time.Unix(1600000000, 1), time.Unix(1500000000, 2)))
	must(os.Chtimes(p("dir"), time.Unix(1400000000, 3), time.Unix(1300000000, 4)))
	must(unix.Lutimes(p("symlink"), []unix.Timeval{{Sec: 1100000000, Usec: 5}, {Sec: 1200000000, Usec: 6}}))

	opts := Options{WithAtime: true}
	// Read and encode the source: the top level and dir/.
	readDir := func(dir string) []*tree.Node {
		t.Helper()
		entries, err := os.ReadDir(dir)
		must(err)
		var nodes []*tree.Node
		for _, e := range entries {
			fi, err := os.Lstat(filepath.Join(dir, e.Name()))
			must(err)
			n, err := NodeFromPath(filepath.Join(dir, e.Name()), fi, opts)
			must(err)
			nodes = append(nodes, n)
		}
		return nodes
	}
	// Directory atimes change when they are listed, so read dir's own node
	// before listing it.
	topNodes := readDir(src)
	innerNodes := readDir(p("dir"))
	innerBlob, err := tree.EncodeTree(innerNodes)
	must(err)
	innerID := core.Hash(innerBlob)
	for _, n := range topNodes {
		if n.Type == tree.NodeDir {
			n.Subtree = &innerID
		}
	}
	topBlob, err := tree.EncodeTree(topNodes)
	must(err)
	top, err := tree.DecodeTree(topBlob)
	must(err)
	inner, err := tree.DecodeTree(innerBlob)
	must(err)

	// Restore into dst.
	links := NewHardlinkIndex()
	ropts := RestoreOptions{}
	var restoreDir func(dir string, nodes []*tree.Node)
	restoreDir = func(dir string, nodes []*tree.Node) {
		for _, n := range nodes {
			target := filepath.Join(dir, n.Name)
			srcPath := filepath.Join(src, strings.TrimPrefix(target, dst))
			switch n.Type {
			case tree.NodeFile:
				if n.Links > 1 {
					if first, loaded := links.LoadOrStore(n.DeviceID, n.Inode, target); loaded {
						must(os.Link(first, target))
						continue
					}
				}
				// Stands in for the archiver's content: copy the source.
				b, err := os.ReadFile(srcPath)
				must(err)
				must(os.WriteFile(target, b, 0o600))
			case tree.NodeDir:
				must(os.Mkdir(target, 0o700))
				restoreDir(target, inner.Nodes)
			default:
				err := CreateSpecial(target, n)
				if n.Type == tree.NodeSocket {
					if !errors.Is(err, ErrNotRestorable) {
						t.Errorf("CreateSpecial(socket) = %v, want ErrNotRestorable", err)
					}
					continue
				}
				must(err)
			}
			must(RestoreMetadata(target, n, ropts))
		}
	}
	restoreDir(dst, top.Nodes)

	// Compare.
	restoredTop := readDir(dst)
	restoredInner := readDir(filepath.Join(dst, "dir"))
	compareNodes(t, top.Nodes, restoredTop)
	compareNodes(t, inner.Nodes, restoredInner)
	for _, n := range restoredTop {
		if n.Name == "file" || n.Name == "hardlink" {
			if n.Links != 2 {
				t.Errorf("%s: %d links after restore, want 2", n.Name, n.Links)
			}
		}
	}
}

func compareNodes(t *testing.T, want, got []*tree.Node) {
	t.Helper()
	var wantNames, gotNames []string
	for _, n := range want {
		if n.Type != tree.NodeSocket {
			wantNames = append(wantNames, n.Name)
		}
	}
	for _, n := range got {
		gotNames = append(gotNames, n.Name)
	}
	if !slices.Equal(wantNames, gotNames) {
		t.Fatalf("restored names %q, want %q", gotNames, wantNames)
	}
	for i, w := range slices.DeleteFunc(slices.Clone(want), func(n *tree.Node) bool { return n.Type == tree.NodeSocket }) {
		g := got[i]
		check := func(field string, ok bool, wantV, gotV any) {
			if !ok {
				t.Errorf("%q: %s = %v, want %v", w.Name, field, gotV, wantV)
			}
		}
		check("type", w.Type == g.Type, w.Type, g.Type)
		check("mode", w.Mode == g.Mode, w.Mode, g.Mode)
		check("mtime", w.ModTime.Equal(g.ModTime), w.ModTime, g.ModTime)
		check("atime", w.AccessTime.Equal(g.AccessTime), w.AccessTime, g.AccessTime)
		check("uid", w.UID == g.UID, w.UID, g.UID)
		check("gid", w.GID == g.GID, w.GID, g.GID)
		check("user", w.User == g.User, w.User, g.User)
		check("group", w.Group == g.Group, w.Group, g.Group)
		check("size", w.Size == g.Size, w.Size, g.Size)
		check("linktarget", w.LinkTarget == g.LinkTarget, w.LinkTarget, g.LinkTarget)
		check("device", w.Device == g.Device, w.Device, g.Device)
		sortAttrs := func(a []tree.ExtendedAttribute) []string {
			var out []string
			for _, x := range a {
				out = append(out, x.Name+"="+string(x.Value))
			}
			slices.Sort(out)
			return out
		}
		wa, ga := sortAttrs(w.ExtendedAttributes), sortAttrs(g.ExtendedAttributes)
		check("xattrs", slices.Equal(wa, ga), wa, ga)
	}
}

func TestNodeFromPathFields(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("12345"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, time.Unix(1000, 1), time.Unix(2000, 2)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	var sys unix.Stat_t
	if err := unix.Lstat(p, &sys); err != nil {
		t.Fatal(err)
	}
	n, err := NodeFromPath(p, fi, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "f" || n.Type != tree.NodeFile || n.Mode != 0o640 || n.Size != 5 || n.Links != 1 ||
		n.Inode != sys.Ino || n.DeviceID != sys.Dev || n.Content == nil || len(n.Content) != 0 ||
		n.UID != sys.Uid || n.GID != sys.Gid || n.Subtree != nil {
		t.Errorf("unexpected node %+v", n)
	}
	if !n.ModTime.Equal(time.Unix(2000, 2)) || !n.AccessTime.Equal(n.ModTime) ||
		!n.ChangeTime.Equal(time.Unix(sys.Ctim.Unix())) || n.ModTime.Location() != time.Local {
		t.Errorf("times: m %v a %v c %v", n.ModTime, n.AccessTime, n.ChangeTime)
	}
	n, err = NodeFromPath(p, fi, Options{WithAtime: true})
	if err != nil || !n.AccessTime.Equal(time.Unix(1000, 1)) {
		t.Errorf("WithAtime: %v %v", n.AccessTime, err)
	}
	// Directories have neither size nor links; content stays null.
	fi, err = os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err = NodeFromPath(dir, fi, Options{})
	if err != nil || n.Type != tree.NodeDir || n.Size != 0 || n.Links != 0 || n.Content != nil ||
		n.Mode&os.ModeDir == 0 {
		t.Errorf("dir node %+v, %v", n, err)
	}
	// A FileInfo without stat data is rejected.
	if _, err := NodeFromPath(p, fakeInfo{fi}, Options{}); err == nil {
		t.Error("FileInfo without Sys accepted")
	}
	// A symlink whose target cannot be read (it is gone) fails.
	l := filepath.Join(dir, "l")
	if err := os.Symlink("x", l); err != nil {
		t.Fatal(err)
	}
	lfi, err := os.Lstat(l)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(l)
	if _, err := NodeFromPath(l, lfi, Options{}); err == nil {
		t.Error("readlink of a removed symlink succeeded")
	}
}

type fakeInfo struct{ os.FileInfo }

func (fakeInfo) Sys() any { return nil }

func TestLookupNames(t *testing.T) {
	if got := lookupUser(0); got != "root" {
		t.Skipf("uid 0 is %q here, not root", got)
	}
	if got := lookupGroup(0); got != "root" {
		t.Errorf("gid 0 = %q", got)
	}
	const unknown = 3999999999
	if got := lookupUser(unknown); got != "" {
		t.Errorf("unknown uid = %q", got)
	}
	// Cached, including the miss.
	nameCache.mu.RLock()
	_, ok := nameCache.users[unknown]
	nameCache.mu.RUnlock()
	if !ok {
		t.Error("miss not cached")
	}
	done := make(chan bool)
	for i := 0; i < 4; i++ {
		go func() { done <- lookupUser(0) == "root" && lookupGroup(uint32(i)) != "x" }()
	}
	for i := 0; i < 4; i++ {
		if !<-done {
			t.Error("concurrent lookup failed")
		}
	}
}

func TestCreateSpecialErrors(t *testing.T) {
	dir := t.TempDir()
	for _, typ := range []tree.NodeType{tree.NodeFile, tree.NodeDir, "bogus"} {
		if err := CreateSpecial(filepath.Join(dir, "x"), &tree.Node{Type: typ}); err == nil {
			t.Errorf("CreateSpecial(%s) succeeded", typ)
		}
	}
	if err := CreateSpecial(filepath.Join(dir, "i"), &tree.Node{Type: tree.NodeIrregular}); !errors.Is(err, ErrNotRestorable) {
		t.Errorf("irregular: %v", err)
	}
	n := &tree.Node{Type: tree.NodeFifo}
	if err := CreateSpecial(filepath.Join(dir, "f"), n); err != nil {
		t.Fatal(err)
	}
	if err := CreateSpecial(filepath.Join(dir, "f"), n); !errors.Is(err, os.ErrExist) {
		t.Errorf("second create: %v, want EEXIST", err)
	}
}

func TestRestoreMetadataErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	err := RestoreMetadata(missing, &tree.Node{Type: tree.NodeFile, Mode: 0o644, ModTime: time.Now()}, RestoreOptions{IgnoreOwnership: true})
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, unix.ENOENT) ||
		!strings.Contains(err.Error(), "chmod") || !strings.Contains(err.Error(), "set times") {
		t.Errorf("error %v should name the path and every failed step", err)
	}
	// Times far outside UnixNano's range survive.
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	far := time.Date(2500, 1, 2, 3, 4, 5, 6, time.UTC)
	n := &tree.Node{Type: tree.NodeFile, Mode: 0o600, ModTime: far, AccessTime: far}
	if err := RestoreMetadata(f, n, RestoreOptions{IgnoreOwnership: true}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(far) {
		// Filesystems may clamp far-future times (ext4 stops at 2446).
		t.Logf("mtime %v, want %v (filesystem clamps?)", fi.ModTime(), far)
		if fi.ModTime().Year() < 2262 {
			t.Errorf("mtime %v: far-future time was mangled", fi.ModTime())
		}
	}
}

// TestXattrBuffers exercises the retry path for attribute lists and values
// larger than the initial buffers, and keeps listxattr order.
func TestXattrBuffers(t *testing.T) {
	dir := t.TempDir()
	if !probeFeatures(t, dir).xattr {
		t.Skip("user xattrs not supported on this filesystem")
	}
	many, big := filepath.Join(dir, "many"), filepath.Join(dir, "big")
	for _, p := range []string{many, big} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("user.attribute-number-%02d", 29-i)
		names = append(names, name)
		if err := unix.Setxattr(many, name, []byte{byte(i)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	value := bytes.Repeat([]byte("0123456789"), 300)
	if err := unix.Setxattr(big, "user.big", value, 0); err != nil {
		t.Fatal(err)
	}
	attrs, err := readXattrs(many, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(attrs) != len(names) {
		t.Fatalf("%d attributes, want %d", len(attrs), len(names))
	}
	var got []string
	for _, a := range attrs {
		got = append(got, a.Name)
	}
	var listed [4096]byte
	n, err := unix.Llistxattr(many, listed[:])
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSuffix(string(listed[:n]), "\x00"), "\x00")
	if !slices.Equal(got, want) {
		t.Errorf("order %q, want listxattr order %q", got, want)
	}
	attrs, err = readXattrs(big, false)
	if err != nil || len(attrs) != 1 || !bytes.Equal(attrs[0].Value, value) {
		t.Fatalf("big value: %v, %d attrs", err, len(attrs))
	}
}
