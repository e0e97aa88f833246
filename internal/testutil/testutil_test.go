//go:build linux

// These tests expect Linux semantics (user.* xattrs, O_NOATIME, mknod's device numbers).

package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// genPair generates two trees with the same options below a fresh temp dir.
func genPair(t *testing.T, opts GenOptions) (want, got string, rep *GenReport) {
	t.Helper()
	base := t.TempDir()
	want, got = filepath.Join(base, "want"), filepath.Join(base, "got")
	rep = GenerateTree(t, want, opts)
	GenerateTree(t, got, opts)
	return want, got, rep
}

func lstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// copyTimes gives got/rel the atime and mtime of want/rel (not following
// symlinks), undoing the time side effect of a mutation.
func copyTimes(t *testing.T, want, got string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		st := lstat(t, filepath.Join(want, rel))
		ts := []unix.Timespec{st.Atim, st.Mtim}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(got, rel), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

func diffKeys(diffs []Diff) []string {
	keys := make([]string, len(diffs))
	for i, d := range diffs {
		keys[i] = d.Path + "|" + d.Kind
	}
	slices.Sort(keys)
	return keys
}

func mustDiff(t *testing.T, want, got string, opts CompareOptions) []Diff {
	t.Helper()
	diffs, err := DiffTrees(want, got, opts)
	if err != nil {
		t.Fatal(err)
	}
	return diffs
}

func TestGenerateSameSeedEqual(t *testing.T) {
	want, got, rep := genPair(t, GenOptions{Seed: 42})
	t.Logf("report: %+v", *rep)
	diffs := mustDiff(t, want, got, CompareOptions{CheckAtime: true, CheckSparse: true})
	if len(diffs) != 0 {
		t.Fatalf("same seed gave different trees:\n%s", FormatDiffs(diffs, 50))
	}
	wm, gm := TreeManifest(t, want), TreeManifest(t, got)
	if !maps.Equal(wm, gm) {
		t.Fatal("manifests of equal trees differ")
	}
	if len(wm) < 100 {
		t.Fatalf("manifest has only %d entries", len(wm))
	}
	// The passing comparison above really ran CompareTrees' code path.
	CompareTrees(t, want, got, CompareOptions{CheckSparse: true})
}

func TestGenerateDifferentSeed(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	GenerateTree(t, a, GenOptions{Seed: 1})
	GenerateTree(t, b, GenOptions{Seed: 2})
	keys := diffKeys(mustDiff(t, a, b, CompareOptions{}))
	for _, k := range []string{"medium.bin|content", "medium.bin|mtime", "dir|mtime", "tiny.txt|size"} {
		if !slices.Contains(keys, k) {
			t.Errorf("seed 1 vs 2: %s not reported", k)
		}
	}
}

func TestGenerateRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := generateTree(dir, GenOptions{}); err == nil {
		t.Fatal("generateTree into a non-empty dir succeeded")
	}
}

// TestGenerateCoversEveryKind checks that the generator really creates what
// it promises, so that a comparison passing on its trees means something.
func TestGenerateCoversEveryKind(t *testing.T) {
	scale := 1
	if testing.Short() {
		scale = 0
	}
	dir := filepath.Join(t.TempDir(), "tree")
	rep := GenerateTree(t, dir, GenOptions{Seed: 7, Scale: scale})
	t.Logf("report: %+v", *rep)
	root := os.Geteuid() == 0

	var (
		types                                          = map[string]int{}
		maxSize                                        int64
		maxLinks                                       uint64
		setuid, setgidDir, sticky, sparse, nonZeroNsec bool
		preEpoch, odd1234, xattr, emptyFile, emptyDir  bool
		newlineName, nonUTF8Name, dangling             bool
	)
	nodes, err := walkTree(dir, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for rel, n := range nodes {
		types[typeName(n.st.Mode)]++
		switch n.typ() {
		case unix.S_IFREG:
			maxSize = max(maxSize, n.st.Size)
			maxLinks = max(maxLinks, uint64(n.st.Nlink)) // uint32 on some GOARCHes
			emptyFile = emptyFile || n.st.Size == 0
			setuid = setuid || n.st.Mode&unix.S_ISUID != 0
			sparse = sparse || n.st.Blocks*512 < n.st.Size
		case unix.S_IFDIR:
			setgidDir = setgidDir || n.st.Mode&unix.S_ISGID != 0
			sticky = sticky || n.st.Mode&unix.S_ISVTX != 0
			if rel != "." {
				ents, err := os.ReadDir(n.path)
				if err != nil {
					t.Fatal(err)
				}
				emptyDir = emptyDir || len(ents) == 0
			}
		case unix.S_IFLNK:
			if _, err := os.Stat(n.path); err != nil {
				dangling = true
			}
		}
		nonZeroNsec = nonZeroNsec || n.st.Mtim.Nsec != 0
		preEpoch = preEpoch || n.st.Mtim.Sec < 0
		odd1234 = odd1234 || n.st.Uid == 1234 && n.st.Gid == 5678
		xattr = xattr || len(n.xattrs) > 0
		newlineName = newlineName || strings.Contains(rel, "\n")
		nonUTF8Name = nonUTF8Name || !isUTF8(rel)
	}
	check := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("generated tree lacks %s", what)
		}
	}
	for _, typ := range []string{"file", "dir", "symlink", "fifo"} {
		check(typ, types[typ] > 0)
	}
	if root && rep.Devices > 0 {
		check("chardev", types["chardev"] == 1)
		check("blockdev", types["blockdev"] == 1)
	} else if root && !slices.ContainsFunc(rep.Skipped, func(s string) bool { return strings.HasPrefix(s, "devices") }) {
		t.Error("running as root, devices neither created nor reported skipped")
	}
	if scale >= 1 {
		check("a file > 8 MiB", maxSize > 8<<20)
	}
	check("a 3-name hard link", maxLinks == 3)
	check("an empty file", emptyFile)
	check("an empty dir", emptyDir)
	check("a setuid file", setuid)
	check("a setgid dir", setgidDir)
	check("a sticky dir", sticky)
	check("a dangling symlink", dangling)
	check("mtimes with nanoseconds", nonZeroNsec)
	check("a pre-1970 mtime", preEpoch)
	check("a name with a newline", newlineName)
	check("a non-UTF-8 name", nonUTF8Name)
	check("sparse files, as reported", sparse == rep.Sparse)
	check("xattrs, as reported", xattr == rep.Xattrs)
	check("uid/gid 1234:5678, as reported", odd1234 == rep.Ownership)
	if root {
		check("ownership as root", rep.Ownership)
	}
	if rep.Files != types["file"]-rep.HardLinks {
		t.Errorf("report says %d files and %d extra links, tree has %d regular file names",
			rep.Files, rep.HardLinks, types["file"])
	}
}

func isUTF8(s string) bool {
	return strings.ToValidUTF8(s, "\uFFFD") == s && !strings.Contains(s, "\uFFFD")
}

func TestGenerateSkipOptions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	rep := GenerateTree(t, dir, GenOptions{
		Seed: 3, SkipSpecial: true, SkipOwnership: true, SkipXattrs: true, SkipOddNames: true,
		SkipNonUTF8Names: true, SkipNonUTF8LinkTargets: true, SkipHardLinks: true, SkipSparse: true,
		SkipExtremeTimes: true,
	})
	if rep.FIFOs+rep.Devices+rep.HardLinks != 0 || rep.Xattrs || rep.Ownership || rep.Sparse {
		t.Fatalf("skip options not honoured: %+v", *rep)
	}
	nodes, err := walkTree(dir, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for rel, n := range nodes {
		if n.typ() == unix.S_IFREG && n.st.Nlink != 1 || len(n.xattrs) > 0 || !isUTF8(rel) ||
			!isUTF8(n.target) || n.st.Mtim.Sec <= 0 || strings.ContainsAny(rel, " \n\"'\\") {
			t.Errorf("%q should have been skipped", rel)
		}
	}
}

// mutation is one deliberate change to a generated tree and the differences
// it must cause.
type mutation struct {
	name    string
	needs   func(rep *GenReport) string // non-empty: why it cannot be applied here
	mutate  func(t *testing.T, want, got string)
	expects []expect
}

// expect is one difference a mutation must cause, and the comparison
// variants (see variants in TestDiffTreesDetects) that hide it or that
// alone show it.
type expect struct {
	key    string   // "path|kind"
	hidden []string // variants in which it must not be reported
	only   []string // if set: the only variants in which it is reported
}

func needRoot(rep *GenReport) string {
	if os.Geteuid() != 0 || !rep.Ownership {
		return "needs root and ownership"
	}
	return ""
}

func needXattrs(rep *GenReport) string {
	if !rep.Xattrs {
		return "filesystem without xattrs"
	}
	return ""
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func addMtime(t *testing.T, path string, delta int64) {
	t.Helper()
	st := lstat(t, path)
	m := unix.NsecToTimespec(st.Mtim.Nano() + delta) // Timespec fields are int32 on 32-bit systems
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{st.Atim, m}, unix.AT_SYMLINK_NOFOLLOW))
}

// replaceWithCopy breaks a hard link: rel becomes a separate file with the
// same content and metadata.
func replaceWithCopy(t *testing.T, want, got, rel string) {
	t.Helper()
	p := filepath.Join(got, rel)
	data := readNoAtime(t, p) // the other names keep their atime
	st := lstat(t, p)
	x, err := readXattrs(p, nil)
	must(t, err)
	must(t, os.Remove(p))
	must(t, os.WriteFile(p, data, 0o600))
	for k, v := range x {
		must(t, unix.Setxattr(p, k, v, 0))
	}
	must(t, os.Lchown(p, int(st.Uid), int(st.Gid)))
	must(t, unix.Chmod(p, st.Mode&0o7777))
	copyTimes(t, want, got, rel, filepath.Dir(rel))
}

func readNoAtime(t *testing.T, path string) []byte {
	t.Helper()
	f, err := openNoAtime(path, 0)
	must(t, err)
	defer f.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(f)
	must(t, err)
	return buf.Bytes()
}

// TestDiffTreesDetects applies many deliberate changes (each on its own
// path) to a copy of a generated tree and checks that every comparison
// variant reports exactly the expected differences: nothing missed, nothing
// spurious, and each option hides only what it should.
func TestDiffTreesDetects(t *testing.T) {
	variants := map[string]CompareOptions{
		"default":              {},
		"ignore-root":          {IgnoreRoot: true},
		"tolerance":            {MtimeTolerance: 1000},
		"ignore-mtime":         {IgnoreMtime: true},
		"ignore-dir-mtime":     {IgnoreDirMtime: true},
		"ignore-symlink-mtime": {IgnoreSymlinkMtime: true},
		"check-atime":          {CheckAtime: true},
		"ignore-owner":         {IgnoreOwner: true},
		"ignore-xattrs":        {IgnoreXattrs: true},
		"ignore-hardlinks":     {IgnoreHardLinks: true},
		"check-sparse":         {CheckSparse: true},
		"exclude": {Exclude: func(rel string) bool {
			return rel == "medium.bin" || rel == "many/excluded-new" || rel == "modes/private-dir"
		}},
	}
	e := func(key string, hidden ...string) expect { return expect{key: key, hidden: hidden} }
	allMtime := []string{"ignore-mtime"}
	muts := []mutation{
		// Content, size, type and structure.
		{name: "content byte", mutate: func(t *testing.T, want, got string) {
			f, err := os.OpenFile(filepath.Join(got, "medium.bin"), os.O_RDWR, 0)
			must(t, err)
			b := make([]byte, 1)
			_, err = f.ReadAt(b, 50000)
			must(t, err)
			b[0] ^= 0x01
			_, err = f.WriteAt(b, 50000)
			must(t, err)
			must(t, f.Close())
			copyTimes(t, want, got, "medium.bin")
		}, expects: []expect{e("medium.bin|content", "exclude")}},
		{name: "size", mutate: func(t *testing.T, want, got string) {
			f, err := os.OpenFile(filepath.Join(got, "tiny.txt"), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			_, err = f.Write([]byte("x"))
			must(t, err)
			must(t, f.Close())
			copyTimes(t, want, got, "tiny.txt")
		}, expects: []expect{e("tiny.txt|size")}},
		{name: "type", mutate: func(t *testing.T, want, got string) {
			p := filepath.Join(got, "empty")
			must(t, os.Remove(p))
			must(t, os.Mkdir(p, 0o644))
			copyTimes(t, want, got, "empty", ".")
		}, expects: []expect{e("empty|type")}},
		{name: "missing file", mutate: func(t *testing.T, want, got string) {
			must(t, os.Remove(filepath.Join(got, "many/f00003")))
			copyTimes(t, want, got, "many")
		}, expects: []expect{e("many/f00003|missing")}},
		{name: "missing dir", mutate: func(t *testing.T, want, got string) {
			must(t, os.RemoveAll(filepath.Join(got, "empty-dirs/a")))
			must(t, os.RemoveAll(filepath.Join(got, "modes/private-dir")))
			copyTimes(t, want, got, "empty-dirs", "modes")
		}, expects: []expect{e("empty-dirs/a|missing"), e("modes/private-dir|missing", "exclude")}},
		{name: "extra file", mutate: func(t *testing.T, want, got string) {
			must(t, os.WriteFile(filepath.Join(got, "dir/new"), nil, 0o644))
			must(t, os.WriteFile(filepath.Join(got, "many/excluded-new"), nil, 0o644))
			copyTimes(t, want, got, "dir", "many")
		}, expects: []expect{e("dir/new|extra"), e("many/excluded-new|extra", "exclude")}},
		{name: "symlink target", mutate: func(t *testing.T, want, got string) {
			p := filepath.Join(got, "links/rel-file")
			must(t, os.Remove(p))
			must(t, os.Symlink("../dir/file.txt", p))
			copyTimes(t, want, got, "links/rel-file", "links")
		}, expects: []expect{e("links/rel-file|target")}},
		{name: "device number", needs: func(rep *GenReport) string {
			if rep.Devices == 0 {
				return "no devices"
			}
			return ""
		}, mutate: func(t *testing.T, want, got string) {
			p := filepath.Join(got, "special/char-1-3")
			must(t, os.Remove(p))
			must(t, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
			must(t, unix.Chmod(p, 0o666))
			copyTimes(t, want, got, "special/char-1-3", "special")
		}, expects: []expect{e("special/char-1-3|device")}},
		{name: "sparse", needs: func(rep *GenReport) string {
			if !rep.Sparse {
				return "filesystem without holes"
			}
			return ""
		}, mutate: densify, expects: []expect{{key: "sparse/holes.img|sparse", only: []string{"check-sparse"}}}},

		// Hard links.
		{name: "hard link broken", mutate: func(t *testing.T, want, got string) {
			replaceWithCopy(t, want, got, "hardlinks/two-b")
		}, expects: []expect{e("hardlinks/two-b|hardlink", "ignore-hardlinks")}},
		{name: "hard link of three broken", mutate: func(t *testing.T, want, got string) {
			replaceWithCopy(t, want, got, "dir/three-c")
		}, expects: []expect{e("dir/three-c|hardlink", "ignore-hardlinks")}},
		{name: "hard link added", mutate: func(t *testing.T, want, got string) {
			p := filepath.Join(got, "data/dup-2.bin")
			must(t, os.Remove(p))
			must(t, os.Link(filepath.Join(got, "data/dup-1.bin"), p))
			copyTimes(t, want, got, "data")
		}, expects: []expect{
			e("data/dup-2.bin|hardlink", "ignore-hardlinks"),
			e("data/dup-2.bin|mtime", allMtime...),
			{key: "data/dup-2.bin|atime", only: []string{"check-atime"}},
		}},

		// Mode bits.
		{name: "mode", mutate: func(t *testing.T, want, got string) {
			must(t, os.Chmod(filepath.Join(got, "modes/0600"), 0o640))
		}, expects: []expect{e("modes/0600|mode")}},
		{name: "setuid lost", mutate: func(t *testing.T, want, got string) {
			must(t, unix.Chmod(filepath.Join(got, "modes/setuid"), 0o755))
		}, expects: []expect{e("modes/setuid|mode")}},
		{name: "sticky lost", mutate: func(t *testing.T, want, got string) {
			must(t, unix.Chmod(filepath.Join(got, "modes/sticky-dir"), 0o777))
		}, expects: []expect{e("modes/sticky-dir|mode")}},
		{name: "root mode", mutate: func(t *testing.T, want, got string) {
			must(t, unix.Chmod(got, 0o700))
		}, expects: []expect{e(".|mode", "ignore-root")}},

		// Ownership.
		{name: "uid", needs: needRoot, mutate: func(t *testing.T, want, got string) {
			must(t, os.Lchown(filepath.Join(got, "owned/file-1234"), 1235, 5678))
		}, expects: []expect{e("owned/file-1234|uid", "ignore-owner")}},
		{name: "gid", needs: needRoot, mutate: func(t *testing.T, want, got string) {
			must(t, os.Lchown(filepath.Join(got, "owned/group-only"), 0, 42))
		}, expects: []expect{e("owned/group-only|gid", "ignore-owner")}},
		{name: "symlink owner", needs: needRoot, mutate: func(t *testing.T, want, got string) {
			must(t, os.Lchown(filepath.Join(got, "owned/link"), 0, 0))
		}, expects: []expect{e("owned/link|uid", "ignore-owner"), e("owned/link|gid", "ignore-owner")}},

		// Extended attributes.
		{name: "xattr value and removal", needs: needXattrs, mutate: func(t *testing.T, want, got string) {
			p := filepath.Join(got, "xattr/file")
			must(t, unix.Setxattr(p, "user.cairn.text", []byte("beta"), 0))
			must(t, unix.Removexattr(p, "user.cairn.empty"))
		}, expects: []expect{e("xattr/file|xattr", "ignore-xattrs"), e("xattr/file|xattr", "ignore-xattrs")}},
		{name: "xattr added", needs: needXattrs, mutate: func(t *testing.T, want, got string) {
			must(t, unix.Setxattr(filepath.Join(got, "exec.sh"), "user.cairn.new", []byte("n"), 0))
		}, expects: []expect{e("exec.sh|xattr", "ignore-xattrs")}},
		{name: "xattr on dir", needs: needXattrs, mutate: func(t *testing.T, want, got string) {
			must(t, unix.Setxattr(filepath.Join(got, "xattr/dir"), "user.cairn.dir", []byte("other"), 0))
		}, expects: []expect{e("xattr/dir|xattr", "ignore-xattrs")}},

		// Times last, so that no structural change above touches them.
		{name: "mtime 1ns", mutate: func(t *testing.T, want, got string) {
			addMtime(t, filepath.Join(got, "dir/file.txt"), 1)
		}, expects: []expect{e("dir/file.txt|mtime", "ignore-mtime", "tolerance")}},
		{name: "mtime beyond tolerance", mutate: func(t *testing.T, want, got string) {
			addMtime(t, filepath.Join(got, "dir/sub/file.txt"), 1001)
		}, expects: []expect{e("dir/sub/file.txt|mtime", allMtime...)}},
		{name: "mtime years", mutate: func(t *testing.T, want, got string) {
			addMtime(t, filepath.Join(got, "times/pre-epoch"), 100*365*86400*1e9)
		}, expects: []expect{e("times/pre-epoch|mtime", allMtime...)}},
		{name: "dir mtime", mutate: func(t *testing.T, want, got string) {
			addMtime(t, filepath.Join(got, "dir/sub"), 1)
		}, expects: []expect{e("dir/sub|mtime", "ignore-mtime", "ignore-dir-mtime", "tolerance")}},
		{name: "symlink mtime", mutate: func(t *testing.T, want, got string) {
			addMtime(t, filepath.Join(got, "links/dangling"), 2000)
		}, expects: []expect{e("links/dangling|mtime", "ignore-mtime", "ignore-symlink-mtime")}},
		{name: "atime", mutate: func(t *testing.T, want, got string) {
			p := filepath.Join(got, "many/f00001")
			st := lstat(t, p)
			must(t, unix.UtimesNano(p, []unix.Timespec{{Sec: 1, Nsec: 2}, st.Mtim}))
		}, expects: []expect{{key: "many/f00001|atime", only: []string{"check-atime"}}}},
	}

	base := t.TempDir()
	want, got := filepath.Join(base, "want"), filepath.Join(base, "got")
	rep := GenerateTree(t, want, GenOptions{Seed: 11})
	GenerateTree(t, got, GenOptions{Seed: 11})
	// The strictest comparison; every variant only relaxes it or excludes.
	if diffs := mustDiff(t, want, got, CompareOptions{CheckAtime: true, CheckSparse: true}); len(diffs) != 0 {
		t.Fatalf("trees differ before mutation:\n%s", FormatDiffs(diffs, 20))
	}

	var expects []expect
	applied := 0
	for _, m := range muts {
		if m.needs != nil {
			if why := m.needs(rep); why != "" {
				t.Logf("mutation %q not applied: %s", m.name, why)
				continue
			}
		}
		m.mutate(t, want, got)
		expects = append(expects, m.expects...)
		applied++
	}
	if applied < len(muts)/2 {
		t.Fatalf("only %d of %d mutations could be applied", applied, len(muts))
	}
	for name, opts := range variants {
		var exp []string
		for _, x := range expects {
			if slices.Contains(x.hidden, name) || len(x.only) > 0 && !slices.Contains(x.only, name) {
				continue
			}
			exp = append(exp, x.key)
		}
		slices.Sort(exp)
		diffs := mustDiff(t, want, got, opts)
		if keys := diffKeys(diffs); !slices.Equal(keys, exp) {
			t.Errorf("variant %s: want diffs\n  %q\ngot:\n%s", name, exp, FormatDiffs(diffs, 80))
		}
		for _, d := range diffs {
			if d.Msg == "" || !strings.HasPrefix(d.String(), strconv.Quote(d.Path)+": "+d.Kind+": ") {
				t.Errorf("diff not readable: %q", d.String())
			}
		}
	}
}

func needSparse(rep *GenReport) string {
	if !rep.Sparse {
		return "filesystem without holes"
	}
	return ""
}

// densify rewrites sparse/holes.img with the same content but no holes.
func densify(t *testing.T, want, got string) {
	p := filepath.Join(got, "sparse/holes.img")
	data := readNoAtime(t, p)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(data, 0)
	must(t, err)
	must(t, f.Close())
	copyTimes(t, want, got, "sparse/holes.img")
	st := lstat(t, p)
	if st.Blocks*512 < st.Size {
		t.Fatalf("rewriting did not fill the holes (%d of %d bytes allocated)", st.Blocks*512, st.Size)
	}
}

// recordingTB records failures and skips instead of acting on them.
type recordingTB struct {
	testing.TB
	errors, fatals, skips []string
}

func (r *recordingTB) Helper()           {}
func (r *recordingTB) Error(args ...any) { r.errors = append(r.errors, fmt.Sprint(args...)) }
func (r *recordingTB) Errorf(format string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}
func (r *recordingTB) Fatal(args ...any) { r.fatals = append(r.fatals, fmt.Sprint(args...)) }
func (r *recordingTB) Fatalf(format string, a ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, a...))
}
func (r *recordingTB) Skip(args ...any) { r.skips = append(r.skips, fmt.Sprint(args...)) }
func (r *recordingTB) Skipf(format string, a ...any) {
	r.skips = append(r.skips, fmt.Sprintf(format, a...))
}
func (r *recordingTB) Log(args ...any)                 {}
func (r *recordingTB) Logf(format string, args ...any) {}

func TestCompareTreesReport(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	GenerateTree(t, a, GenOptions{Seed: 1})
	GenerateTree(t, b, GenOptions{Seed: 2})

	rec := &recordingTB{TB: t}
	CompareTrees(rec, a, a, CompareOptions{})
	if len(rec.errors)+len(rec.fatals) != 0 {
		t.Fatalf("comparing a tree with itself failed: %q %q", rec.errors, rec.fatals)
	}

	rec = &recordingTB{TB: t}
	CompareTrees(rec, a, b, CompareOptions{})
	if len(rec.errors) != 1 || len(rec.fatals) != 0 {
		t.Fatalf("want exactly one error, got errors %d, fatals %q", len(rec.errors), rec.fatals)
	}
	msg := rec.errors[0]
	lines := strings.Split(strings.TrimRight(msg, "\n"), "\n")
	if len(lines) != 1+maxDiffLines+1 {
		t.Errorf("report has %d lines, want header + %d + 1:\n%s", len(lines), maxDiffLines, msg)
	}
	if !strings.Contains(lines[len(lines)-1], "more differences") {
		t.Errorf("last line does not say how many were left out: %q", lines[len(lines)-1])
	}

	rec = &recordingTB{TB: t}
	CompareTrees(rec, filepath.Join(base, "nonexistent"), b, CompareOptions{})
	if len(rec.fatals) != 1 {
		t.Errorf("comparing with a missing tree: want one fatal, got %q %q", rec.fatals, rec.errors)
	}
}

func TestTreeManifest(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "abc"), []byte("abc"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "d"), 0o755))
	must(t, os.Symlink("../abc", filepath.Join(dir, "d", "link")))
	must(t, unix.Mkfifo(filepath.Join(dir, "d", "pipe"), 0o600))
	want := map[string]string{
		"abc":    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"d":      "dir",
		"d/link": "symlink:../abc",
		"d/pipe": "fifo",
	}
	if got := TreeManifest(t, dir); !maps.Equal(got, want) {
		t.Fatalf("manifest = %q, want %q", got, want)
	}
	if got := Sha256File(t, filepath.Join(dir, "abc")); got != want["abc"] {
		t.Fatalf("Sha256File = %s", got)
	}
}

func TestRequireTool(t *testing.T) {
	if p := RequireTool(t, "sh"); !filepath.IsAbs(p) {
		t.Fatalf("RequireTool(sh) = %q, want an absolute path", p)
	}
	const missing = "cairn-no-such-tool-x7"
	t.Setenv("CI", "")
	rec := &recordingTB{TB: t}
	if p := RequireTool(rec, missing); p != "" || len(rec.skips) != 1 || len(rec.fatals) != 0 {
		t.Fatalf("outside CI: path %q, skips %q, fatals %q; want one skip", p, rec.skips, rec.fatals)
	}
	t.Setenv("CI", "true")
	rec = &recordingTB{TB: t}
	if p := RequireTool(rec, missing); p != "" || len(rec.fatals) != 1 || len(rec.skips) != 0 {
		t.Fatalf("in CI: path %q, skips %q, fatals %q; want one fatal", p, rec.skips, rec.fatals)
	}
}

// TestResticRoundTrip backs a generated tree up with real restic, restores
// it and compares: this pins down what restic 0.14 preserves and proves the
// generator and comparer agree with a real peer.
func TestResticRoundTrip(t *testing.T) {
	t.Parallel() // mostly restic's key derivation: overlap it with the rest
	v := ResticVersion(t)
	t.Logf("restic %d.%d.%d", v[0], v[1], v[2])
	base := t.TempDir()
	src := filepath.Join(base, "src")
	opts := GenOptions{Seed: 5}
	if v[0] == 0 && v[1] < 16 {
		opts.SkipNonUTF8LinkTargets = true // linktarget_raw arrived in 0.16
	}
	rep := GenerateTree(t, src, opts)
	repo := filepath.Join(base, "repo")
	RunRestic(t, repo, "pw", "init")
	RunRestic(t, repo, "pw", "backup", "--quiet", src)
	target := filepath.Join(base, "restore")
	RunRestic(t, repo, "pw", "restore", "latest", "--target", target)
	CompareTrees(t, src, filepath.Join(target, src), CompareOptions{CheckSparse: false})
	if rep.Files == 0 {
		t.Fatal("nothing generated")
	}

	// Detect a change made behind restic's back: the comparison must fail.
	must(t, os.Chmod(filepath.Join(target, src, "modes/0755"), 0o700))
	keys := diffKeys(mustDiff(t, src, filepath.Join(target, src), CompareOptions{}))
	if !slices.Equal(keys, []string{"modes/0755|mode"}) {
		t.Fatalf("after chmod: diffs %q", keys)
	}
}

func TestRunResticErr(t *testing.T) {
	t.Parallel()
	RequireRestic(t)
	repo := filepath.Join(t.TempDir(), "repo")
	out := RunRestic(t, repo, "right", "init")
	if !bytes.Contains(out, []byte("created restic repository")) {
		t.Errorf("init output: %q", out)
	}
	_, err := RunResticErr(t, repo, "wrong", "snapshots")
	var re *ResticError
	if !errors.As(err, &re) {
		t.Fatalf("wrong password: err = %v, want *ResticError", err)
	}
	if re.ExitCode != 1 || !bytes.Contains(re.Stderr, []byte("wrong password")) {
		t.Fatalf("wrong password: exit %d, stderr %q", re.ExitCode, re.Stderr)
	}
	if !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("error text lacks restic's stderr: %v", err)
	}
	// The cache dir is per test and shared by its calls.
	if ResticCacheDir(t) != ResticCacheDir(t) {
		t.Error("cache dir differs between calls of one test")
	}
	out = RunRestic(t, repo, "right", "snapshots", "--json")
	if strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("snapshots of an empty repo: %q", out)
	}
}
