package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CompareOptions relaxes CompareTrees. The zero value compares everything
// except atimes and sparseness, mtimes to the nanosecond.
type CompareOptions struct {
	MtimeTolerance     time.Duration // accept |got-want| <= this for mtime (and atime)
	IgnoreMtime        bool          // do not compare mtimes at all
	IgnoreDirMtime     bool          // do not compare directories' mtimes
	IgnoreSymlinkMtime bool          // do not compare symlinks' mtimes
	// CheckAtime also compares atimes, except of symlinks (reading a link
	// updates its atime). restic stores atime = mtime by default. CompareTrees
	// itself does not change atimes where O_NOATIME is allowed (as root or
	// owner), but any other reader of the trees may.
	CheckAtime      bool
	IgnoreOwner     bool // do not compare uid/gid
	IgnoreXattrs    bool // do not compare extended attributes
	IgnoreHardLinks bool // do not compare the hard-link structure
	IgnoreRoot      bool // do not compare the metadata of want and got themselves
	// CheckSparse reports files that are sparse in want (fewer bytes
	// allocated than their size) but allocate more than want's allocation
	// plus SparseSlack in got.
	CheckSparse bool
	SparseSlack int64 // default 256 KiB
	// IgnoreXattr reports extended attribute names not to compare. When nil,
	// security.selinux is ignored (the system sets it, not the backup).
	IgnoreXattr func(name string) bool
	// Exclude reports slash-separated paths relative to the roots (no
	// leading "./") to leave out of the comparison in both trees; excluding
	// a directory excludes everything below it.
	Exclude func(rel string) bool
}

// Diff kinds, as in Diff.Kind.
const (
	DiffMissing  = "missing"  // in want, not in got
	DiffExtra    = "extra"    // in got, not in want
	DiffType     = "type"     // file type differs
	DiffMode     = "mode"     // permission or setuid/setgid/sticky bits differ
	DiffSize     = "size"     // regular file size differs
	DiffContent  = "content"  // regular file content differs (same size)
	DiffMtime    = "mtime"    // modification time differs (beyond MtimeTolerance)
	DiffAtime    = "atime"    // access time differs (only with CheckAtime)
	DiffUID      = "uid"      // owner differs
	DiffGID      = "gid"      // group differs
	DiffTarget   = "target"   // symlink target differs
	DiffXattr    = "xattr"    // an extended attribute is missing, extra or different
	DiffDevice   = "device"   // device number differs
	DiffHardLink = "hardlink" // hard-link structure differs
	DiffSparse   = "sparse"   // got allocates much more than sparse want
	DiffError    = "error"    // an entry could not be read
)

// Diff is one difference between two trees.
type Diff struct {
	Path string // slash-separated, relative to the roots; "." for the roots
	Kind string // one of the Diff* constants
	Msg  string // human-readable detail: "want X, got Y"
}

func (d Diff) String() string {
	return fmt.Sprintf("%s: %s: %s", strconv.Quote(d.Path), d.Kind, d.Msg)
}

// maxDiffLines caps the report of CompareTrees.
const maxDiffLines = 50

// CompareTrees compares the tree got against want and fails the test once,
// listing the differences (at most 50 lines), if there are any.
func CompareTrees(t testing.TB, want, got string, opts CompareOptions) {
	t.Helper()
	diffs, err := DiffTrees(want, got, opts)
	if err != nil {
		t.Fatalf("CompareTrees: %v", err)
		return
	}
	if len(diffs) == 0 {
		return
	}
	t.Errorf("trees differ (want %s, got %s):\n%s", want, got, FormatDiffs(diffs, maxDiffLines))
}

// FormatDiffs renders diffs one per line, at most limit lines plus a line
// saying how many were left out.
func FormatDiffs(diffs []Diff, limit int) string {
	var b strings.Builder
	for i, d := range diffs {
		if i == limit {
			fmt.Fprintf(&b, "  ... and %d more differences (%d in all)\n", len(diffs)-limit, len(diffs))
			break
		}
		b.WriteString("  ")
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// node is one entry of a walked tree.
type node struct {
	rel    string
	path   string
	st     unix.Stat_t
	target string            // symlink target
	xattrs map[string][]byte // nil when not read
	err    error             // reading xattrs or the link target failed
}

// typ is the file type bits of the mode (a uint16 on some systems).
func (n *node) typ() uint32 { return uint32(n.st.Mode) & unix.S_IFMT }

// walkTree lists every entry below root (root included as "."), never
// following symlinks.
func walkTree(root string, opts CompareOptions) (map[string]*node, error) {
	nodes := make(map[string]*node)
	var walk func(rel, path string) error
	walk = func(rel, path string) error {
		n := &node{rel: rel, path: path}
		if err := unix.Lstat(path, &n.st); err != nil {
			return fmt.Errorf("lstat %s: %w", path, err)
		}
		nodes[rel] = n
		if n.typ() == unix.S_IFLNK {
			t, err := os.Readlink(path)
			if err != nil {
				n.err = fmt.Errorf("readlink: %w", err)
			}
			n.target = t
		}
		if !opts.IgnoreXattrs {
			x, err := readXattrs(path, opts.IgnoreXattr)
			if err != nil {
				n.err = errors.Join(n.err, err)
			}
			n.xattrs = x
		}
		if n.typ() != unix.S_IFDIR {
			return nil
		}
		f, err := openNoAtime(path, unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("open dir %s: %w", path, err)
		}
		names, err := f.Readdirnames(-1)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("read dir %s: %w", path, err)
		}
		sort.Strings(names)
		for _, name := range names {
			crel := name
			if rel != "." {
				crel = rel + "/" + name
			}
			if opts.Exclude != nil && opts.Exclude(crel) {
				continue
			}
			if err := walk(crel, filepath.Join(path, name)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(".", root); err != nil {
		return nil, err
	}
	if n := nodes["."]; n.typ() != unix.S_IFDIR {
		return nil, fmt.Errorf("%s is not a directory", root)
	}
	return nodes, nil
}

func readXattrs(path string, ignore func(string) bool) (map[string][]byte, error) {
	if ignore == nil {
		ignore = func(name string) bool { return name == "security.selinux" }
	}
	buf := make([]byte, 4096)
	var n int
	var err error
	for {
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		break
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs: %w", err)
	}
	out := make(map[string][]byte)
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || ignore(name) {
			continue
		}
		val := make([]byte, 256)
		for {
			m, err := unix.Lgetxattr(path, name, val)
			if errors.Is(err, unix.ERANGE) {
				val = make([]byte, len(val)*4)
				continue
			}
			if errors.Is(err, errNoXattr) {
				break // removed since listing
			}
			if err != nil {
				return nil, fmt.Errorf("get xattr %s: %w", name, err)
			}
			out[name] = val[:m:m]
			break
		}
	}
	return out, nil
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type %#o", mode&unix.S_IFMT)
}

func fmtTime(ts unix.Timespec) string {
	return time.Unix(ts.Unix()).UTC().Format(time.RFC3339Nano)
}

// timeDiffers reports whether a and b differ by more than tol.
func timeDiffers(a, b unix.Timespec, tol time.Duration) bool {
	as, ans := a.Unix()
	bs, bns := b.Unix()
	ds := as - bs
	if ds > 1<<32 || ds < -(1<<32) {
		return true
	}
	d := time.Duration(ds)*time.Second + time.Duration(ans-bns)
	if d < 0 {
		d = -d
	}
	return d > tol
}

func quoteBytes(b []byte) string {
	const limit = 48
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + fmt.Sprintf("...(%d bytes)", len(b))
	}
	return strconv.Quote(string(b))
}

// DiffTrees compares got against want and returns every difference, sorted
// by path. The error is for trees that cannot be read at all.
func DiffTrees(want, got string, opts CompareOptions) ([]Diff, error) {
	wn, err := walkTree(want, opts)
	if err != nil {
		return nil, fmt.Errorf("walk want: %w", err)
	}
	gn, err := walkTree(got, opts)
	if err != nil {
		return nil, fmt.Errorf("walk got: %w", err)
	}
	if opts.SparseSlack == 0 {
		opts.SparseSlack = 256 << 10
	}

	var diffs []Diff
	add := func(rel, kind, format string, args ...any) {
		diffs = append(diffs, Diff{Path: rel, Kind: kind, Msg: fmt.Sprintf(format, args...)})
	}

	rels := make([]string, 0, len(wn))
	for rel := range wn {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		w := wn[rel]
		g, ok := gn[rel]
		if !ok {
			if !ancestorMissing(rel, gn) {
				add(rel, DiffMissing, "%s in want, missing in got%s", typeName(uint32(w.st.Mode)), below(rel, wn))
			}
			continue
		}
		if rel == "." && opts.IgnoreRoot {
			continue
		}
		compareNode(w, g, opts, add)
	}
	extra := make([]string, 0)
	for rel := range gn {
		if _, ok := wn[rel]; !ok && !ancestorMissing(rel, wn) {
			extra = append(extra, rel)
		}
	}
	sort.Strings(extra)
	for _, rel := range extra {
		add(rel, DiffExtra, "%s in got, not in want%s", typeName(uint32(gn[rel].st.Mode)), below(rel, gn))
	}
	if !opts.IgnoreHardLinks {
		compareLinks(wn, gn, "want", "got", add)
		compareLinks(gn, wn, "got", "want", add)
	}
	sort.SliceStable(diffs, func(i, j int) bool { return diffs[i].Path < diffs[j].Path })
	return diffs, nil
}

// ancestorMissing reports whether a parent directory of rel is absent from
// nodes, in which case only that ancestor is reported.
func ancestorMissing(rel string, nodes map[string]*node) bool {
	for p := parentRel(rel); p != "."; p = parentRel(p) {
		if _, ok := nodes[p]; !ok {
			return true
		}
	}
	return false
}

// below describes how many entries lie below a directory rel.
func below(rel string, nodes map[string]*node) string {
	n := 0
	prefix := rel + "/"
	for r := range nodes {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (with %d entries below)", n)
}

func compareNode(w, g *node, opts CompareOptions, add func(rel, kind, format string, args ...any)) {
	rel := w.rel
	if w.err != nil || g.err != nil {
		add(rel, DiffError, "reading entry: want: %v; got: %v", w.err, g.err)
	}
	if w.typ() != g.typ() {
		add(rel, DiffType, "want %s, got %s", typeName(uint32(w.st.Mode)), typeName(uint32(g.st.Mode)))
		return
	}
	typ := w.typ()
	if wm, gm := w.st.Mode&0o7777, g.st.Mode&0o7777; wm != gm {
		add(rel, DiffMode, "want %04o, got %04o", wm, gm)
	}
	if !opts.IgnoreOwner {
		if w.st.Uid != g.st.Uid {
			add(rel, DiffUID, "want %d, got %d", w.st.Uid, g.st.Uid)
		}
		if w.st.Gid != g.st.Gid {
			add(rel, DiffGID, "want %d, got %d", w.st.Gid, g.st.Gid)
		}
	}
	checkMtime := !opts.IgnoreMtime &&
		!(typ == unix.S_IFDIR && opts.IgnoreDirMtime) &&
		!(typ == unix.S_IFLNK && opts.IgnoreSymlinkMtime)
	if checkMtime && timeDiffers(w.st.Mtim, g.st.Mtim, opts.MtimeTolerance) {
		add(rel, DiffMtime, "want %s, got %s", fmtTime(w.st.Mtim), fmtTime(g.st.Mtim))
	}
	if opts.CheckAtime && typ != unix.S_IFLNK && timeDiffers(w.st.Atim, g.st.Atim, opts.MtimeTolerance) {
		add(rel, DiffAtime, "want %s, got %s", fmtTime(w.st.Atim), fmtTime(g.st.Atim))
	}
	switch typ {
	case unix.S_IFREG:
		if w.st.Size != g.st.Size {
			add(rel, DiffSize, "want %d, got %d", w.st.Size, g.st.Size)
			break
		}
		wh, werr := sha256File(w.path)
		gh, gerr := sha256File(g.path)
		if werr != nil || gerr != nil {
			add(rel, DiffError, "hashing content: want: %v; got: %v", werr, gerr)
			break
		}
		if wh != gh {
			add(rel, DiffContent, "sha256 want %s, got %s", wh[:16], gh[:16])
		}
		if opts.CheckSparse && w.st.Blocks*512 < w.st.Size {
			if limit := w.st.Blocks*512 + opts.SparseSlack; g.st.Blocks*512 > limit {
				add(rel, DiffSparse, "want %d bytes allocated (size %d), got %d (limit %d)",
					w.st.Blocks*512, w.st.Size, g.st.Blocks*512, limit)
			}
		}
	case unix.S_IFLNK:
		if w.target != g.target {
			add(rel, DiffTarget, "want %s, got %s", strconv.Quote(w.target), strconv.Quote(g.target))
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if w.st.Rdev != g.st.Rdev {
			add(rel, DiffDevice, "want %d:%d, got %d:%d",
				unix.Major(uint64(w.st.Rdev)), unix.Minor(uint64(w.st.Rdev)), unix.Major(uint64(g.st.Rdev)), unix.Minor(uint64(g.st.Rdev)))
		}
	}
	if !opts.IgnoreXattrs && w.xattrs != nil && g.xattrs != nil {
		names := make([]string, 0, len(w.xattrs)+len(g.xattrs))
		for k := range w.xattrs {
			names = append(names, k)
		}
		for k := range g.xattrs {
			if _, ok := w.xattrs[k]; !ok {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			wv, wok := w.xattrs[k]
			gv, gok := g.xattrs[k]
			switch {
			case !gok:
				add(rel, DiffXattr, "%s: want %s, got none", k, quoteBytes(wv))
			case !wok:
				add(rel, DiffXattr, "%s: want none, got %s", k, quoteBytes(gv))
			case string(wv) != string(gv):
				add(rel, DiffXattr, "%s: want %s, got %s", k, quoteBytes(wv), quoteBytes(gv))
			}
		}
	}
}

// compareLinks reports names that share an inode in a but not in b.
func compareLinks(a, b map[string]*node, aName, bName string, add func(rel, kind, format string, args ...any)) {
	type inode struct{ dev, ino uint64 }
	groups := make(map[inode][]string)
	for rel, n := range a {
		if n.typ() == unix.S_IFDIR || n.st.Nlink < 2 {
			continue
		}
		k := inode{uint64(n.st.Dev), n.st.Ino}
		groups[k] = append(groups[k], rel)
	}
	for _, names := range groups {
		if len(names) < 2 {
			continue
		}
		sort.Strings(names)
		// Partition the names by their inode in b. The largest part (ties:
		// the one holding the first name) is taken as intact; every name
		// outside it is reported.
		var parts [][]string
		partOf := make(map[inode]int)
		for _, rel := range names {
			bn, ok := b[rel]
			if !ok || bn.typ() == unix.S_IFDIR {
				continue // reported as missing or type change
			}
			k := inode{uint64(bn.st.Dev), bn.st.Ino}
			i, ok := partOf[k]
			if !ok {
				i = len(parts)
				partOf[k] = i
				parts = append(parts, nil)
			}
			parts[i] = append(parts[i], rel)
		}
		if len(parts) < 2 {
			continue
		}
		main := 0
		for i, p := range parts {
			if len(p) > len(parts[main]) {
				main = i
			}
		}
		for i, p := range parts {
			if i == main {
				continue
			}
			for _, rel := range p {
				add(rel, DiffHardLink, "hard link of %s in %s, separate inode in %s",
					strconv.Quote(parts[main][0]), aName, bName)
			}
		}
	}
}

// openNoAtime opens path for reading without updating its atime where the
// kernel allows (Linux's O_NOATIME needs ownership or CAP_FOWNER; other
// systems have no such flag, oNoAtime is 0 there), so that comparing trees
// does not change what a later comparison with CheckAtime sees.
func openNoAtime(path string, flags int) (*os.File, error) {
	flags |= unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	fd, err := unix.Open(path, flags|oNoAtime, 0)
	if oNoAtime != 0 && errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(path, flags, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func sha256File(path string) (string, error) {
	f, err := openNoAtime(path, 0)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Sha256File returns the hex SHA-256 of the file's content, failing the test
// if it cannot be read.
func Sha256File(t testing.TB, path string) string {
	t.Helper()
	s, err := sha256File(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TreeManifest describes every entry below dir (not dir itself), keyed by
// slash-separated relative path, never following symlinks:
//
//	regular file   hex SHA-256 of the content
//	directory      "dir"
//	symlink        "symlink:" + target
//	FIFO           "fifo"
//	socket         "socket"
//	devices        "chardev:MAJOR:MINOR", "blockdev:MAJOR:MINOR"
//
// Two trees with equal manifests have the same names, types, contents and
// link targets (but not necessarily the same metadata; see CompareTrees).
func TreeManifest(t testing.TB, dir string) map[string]string {
	t.Helper()
	m, err := treeManifest(dir)
	if err != nil {
		t.Fatalf("TreeManifest(%s): %v", dir, err)
	}
	return m
}

func treeManifest(dir string) (map[string]string, error) {
	nodes, err := walkTree(dir, CompareOptions{IgnoreXattrs: true})
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(nodes))
	for rel, n := range nodes {
		if rel == "." {
			continue
		}
		switch n.typ() {
		case unix.S_IFREG:
			h, err := sha256File(n.path)
			if err != nil {
				return nil, err
			}
			m[rel] = h
		case unix.S_IFLNK:
			if n.err != nil {
				return nil, fmt.Errorf("%s: %w", rel, n.err)
			}
			m[rel] = "symlink:" + n.target
		case unix.S_IFCHR, unix.S_IFBLK:
			m[rel] = fmt.Sprintf("%s:%d:%d", typeName(uint32(n.st.Mode)), unix.Major(uint64(n.st.Rdev)), unix.Minor(uint64(n.st.Rdev)))
		default:
			m[rel] = typeName(uint32(n.st.Mode))
		}
	}
	return m, nil
}
