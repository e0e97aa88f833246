package testutil

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// GenOptions controls GenerateTree.
type GenOptions struct {
	// Seed selects the pseudo-random content, names' sizes and times. The same
	// Seed, Scale and Skip* options always produce the same tree.
	Seed int64
	// Scale is the tree's size: 0 is small (about 130 entries and 4.5 MiB of
	// data, plus two 4 MiB sparse files; for unit tests); 1 adds a file
	// larger than 8 MiB, grows the other large files and adds 300 small files
	// (about 440 entries and 37 MiB of data, plus two 64 MiB sparse files);
	// every further step adds 300 small files and 16 directory levels.
	Scale int

	// The Skip options leave out parts of the tree, for a peer known not to
	// represent them (a test using one should say why).
	SkipSpecial            bool // FIFO, character and block devices
	SkipOwnership          bool // chown to non-root uids/gids (only done as root anyway)
	SkipXattrs             bool // user.* extended attributes
	SkipOddNames           bool // names with spaces, quotes, control characters, unicode, ...
	SkipNonUTF8Names       bool // names that are not valid UTF-8
	SkipNonUTF8LinkTargets bool // symlink targets that are not valid UTF-8 (restic < 0.16 mangles them)
	SkipHardLinks          bool
	SkipSparse             bool
	SkipExtremeTimes       bool // mtimes before 1970 and after 2038
}

// GenReport tells what GenerateTree created.
type GenReport struct {
	Files     int   // regular files (inodes; every hard-link group counts once)
	Dirs      int   // directories, not counting the root
	Symlinks  int   // symbolic links
	HardLinks int   // extra names of regular files beyond their first
	FIFOs     int   // named pipes
	Devices   int   // character and block devices
	Bytes     int64 // sum of the regular files' logical sizes
	Ownership bool  // some entries are owned by uid 1234 / gid 5678 etc.
	Xattrs    bool  // extended attributes were set
	Sparse    bool  // sparse files were created and the filesystem kept their holes
	// Skipped lists parts that were asked for but could not be created here,
	// with the reason (e.g. "devices: operation not permitted").
	Skipped []string
}

type genKind int

const (
	gDir genKind = iota
	gFile
	gSymlink
	gHardlink
	gFIFO
	gCharDev
	gBlockDev
)

type xattrKV struct {
	name  string
	value []byte
}

// genEntry is one planned entry. Hard links carry no metadata of their own:
// the first name (target) does.
type genEntry struct {
	rel    string // slash-separated path below the root; "." is the root
	kind   genKind
	perm   uint32 // permission and setuid/setgid/sticky bits
	size   int64  // regular files: logical size
	write  func(f *os.File) error
	sparse bool   // the file is meant to have holes
	target string // symlink target; for hard links the rel of the first name
	dev    uint64 // device number for devices
	uid    int    // -1: leave as created
	gid    int
	xattrs []xattrKV
	mtime  time.Time
	atime  time.Time
}

type planner struct {
	seed    int64
	opts    GenOptions
	entries []*genEntry
	byRel   map[string]*genEntry
}

// rng returns a deterministic random stream for key, independent of every
// other key, so that leaving out one part of the tree changes no other part.
func (p *planner) rng(key string) *rand.ChaCha8 {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(p.seed))
	h.Write(b[:])
	h.Write([]byte(key))
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return rand.NewChaCha8(s)
}

// randBytes returns n deterministic random bytes for key.
func (p *planner) randBytes(key string, n int) []byte {
	b := make([]byte, n)
	_, _ = p.rng(key).Read(b) // ChaCha8.Read never fails
	return b
}

// pastTime returns a deterministic time in 2001..2021 with a non-zero
// nanosecond part.
func pastTime(r *rand.ChaCha8) time.Time {
	const base = 978307200 // 2001-01-01T00:00:00Z
	sec := base + int64(r.Uint64()%(20*365*86400))
	nsec := 1 + int64(r.Uint64()%999_999_999)
	return time.Unix(sec, nsec)
}

func (p *planner) add(e *genEntry) *genEntry {
	if _, dup := p.byRel[e.rel]; dup {
		panic("testutil: GenerateTree plans " + e.rel + " twice")
	}
	if e.rel != "." {
		p.ensureDir(parentRel(e.rel))
	}
	r := p.rng("times:" + e.rel)
	e.mtime = pastTime(r)
	// atime after mtime, as on a file read after it was written.
	e.atime = time.Unix(e.mtime.Unix()+1+int64(r.Uint64()%1_000_000), 1+int64(r.Uint64()%999_999_999))
	if e.uid == 0 && e.gid == 0 {
		e.uid, e.gid = -1, -1
	}
	p.entries = append(p.entries, e)
	p.byRel[e.rel] = e
	return e
}

func parentRel(rel string) string {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "."
	}
	return rel[:i]
}

func (p *planner) ensureDir(rel string) {
	if e, ok := p.byRel[rel]; ok {
		if e.kind != gDir {
			panic("testutil: GenerateTree: " + rel + " is planned as a non-directory")
		}
		return
	}
	p.dir(rel, 0o755)
}

func (p *planner) dir(rel string, perm uint32) *genEntry {
	if e, ok := p.byRel[rel]; ok && e.kind == gDir {
		e.perm = perm
		return e
	}
	return p.add(&genEntry{rel: rel, kind: gDir, perm: perm})
}

// file plans a regular file whose content is written by write.
func (p *planner) file(rel string, perm uint32, size int64, write func(f *os.File) error) *genEntry {
	return p.add(&genEntry{rel: rel, kind: gFile, perm: perm, size: size, write: write})
}

// bytesFile plans a regular file with the given content.
func (p *planner) bytesFile(rel string, perm uint32, data []byte) *genEntry {
	return p.file(rel, perm, int64(len(data)), func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// randomFile plans a file of size random bytes drawn from the stream key.
func (p *planner) randomFile(rel string, perm uint32, size int64, key string) *genEntry {
	return p.file(rel, perm, size, func(f *os.File) error {
		return writeRandom(f, p.rng(key), size)
	})
}

func writeRandom(w io.Writer, r *rand.ChaCha8, size int64) error {
	buf := make([]byte, min(size, 1<<20))
	for size > 0 {
		n := min(size, int64(len(buf)))
		_, _ = r.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

func (p *planner) symlink(rel, target string) *genEntry {
	return p.add(&genEntry{rel: rel, kind: gSymlink, perm: 0o777, target: target})
}

func (p *planner) hardlink(rel, first string) {
	if e, ok := p.byRel[first]; !ok || e.kind != gFile {
		panic("testutil: GenerateTree: hard link to unplanned file " + first)
	}
	p.ensureDir(parentRel(rel))
	e := &genEntry{rel: rel, kind: gHardlink, target: first, uid: -1, gid: -1}
	p.entries = append(p.entries, e)
	p.byRel[rel] = e
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

// plan lays out the whole tree. Every entry that exists in the plan is
// created; parts that need privileges may be skipped at creation time.
func (p *planner) plan(root bool) {
	o := p.opts
	scale := max(o.Scale, 0)
	p.dir(".", 0o755)

	// Regular files of assorted sizes.
	p.bytesFile("empty", 0o644, nil)
	tiny := p.randBytes("tiny", 1+int(p.rng("tiny-size").Uint64()%63))
	for i := range tiny {
		tiny[i] = 'a' + tiny[i]%26
	}
	p.bytesFile("tiny.txt", 0o644, append(tiny, '\n'))
	p.randomFile("medium.bin", 0o600, 100*kib, "medium")
	p.bytesFile("exec.sh", 0o755, []byte("#!/bin/sh\necho cairn\n"))

	dupSize, blockSize, zeroSize := int64(768*kib), int64(512*kib), int64(256*kib)
	if scale >= 1 {
		dupSize, blockSize, zeroSize = 4*mib, 2*mib, 2*mib
	}
	// Two identical files and a near-copy: dedup must store the content once.
	p.randomFile("data/dup-1.bin", 0o644, dupSize, "dup")
	p.randomFile("data/dup-2.bin", 0o644, dupSize, "dup")
	p.file("data/near-dup.bin", 0o644, dupSize, func(f *os.File) error {
		b := make([]byte, dupSize)
		_, _ = p.rng("dup").Read(b)
		b[dupSize/2] ^= 0xff
		_, err := f.Write(b)
		return err
	})
	// One random block repeated three times within a file.
	p.file("data/repeated.bin", 0o644, 3*blockSize, func(f *os.File) error {
		b := p.randBytes("repeat-block", int(blockSize))
		for range 3 {
			if _, err := f.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
	p.bytesFile("data/zeros.bin", 0o644, make([]byte, zeroSize))
	if scale >= 1 {
		// Larger than restic's maximum chunk size (8 MiB).
		p.randomFile("data/big.bin", 0o644, 8*mib+4097, "big")
	}

	// Nested and empty directories.
	p.bytesFile("dir/file.txt", 0o644, []byte("top\n"))
	p.bytesFile("dir/sub/file.txt", 0o644, []byte("nested file\n"))
	p.randomFile("dir/sub/other.bin", 0o640, 3000, "other")
	p.dir("empty-dir", 0o755)
	p.dir("empty-dirs/a/b/c", 0o750)
	deep := "deep"
	for i := range 8 + 16*scale {
		deep += fmt.Sprintf("/d%02d", i)
	}
	p.bytesFile(deep+"/leaf.txt", 0o644, []byte("leaf\n"))
	nMany := 20 + 300*scale
	for i := range nMany {
		key := fmt.Sprintf("many-%d", i)
		size := int64(p.rng(key+"-size").Uint64() % (8 * kib))
		p.randomFile(fmt.Sprintf("many/f%05d", i), 0o644, size, key)
	}

	// Symbolic links.
	p.symlink("links/rel-file", "../dir/sub/file.txt")
	p.symlink("links/rel-dir", "../dir")
	p.symlink("links/abs", "/")
	p.symlink("links/abs-dangling", "/nonexistent/cairn/absolute-target")
	p.symlink("links/dangling", "missing/nowhere")
	p.symlink("links/loop", "loop")
	p.symlink("links/dot", ".")
	p.symlink("links/long", strings.Repeat("long/", 200)+"end")
	p.symlink("links/unicode", "日本語/🎉")
	if !o.SkipOddNames {
		p.symlink("links/odd-target", "target with space\nand newline")
	}
	if !o.SkipNonUTF8LinkTargets {
		p.symlink("links/non-utf8", "\xff\xfe-latin1-\xe9")
	}

	// Hard links: 2 and 3 names, across directories, and an empty pair.
	if !o.SkipHardLinks {
		two := p.randomFile("hardlinks/two-a", 0o644, 3000, "two")
		p.hardlink("hardlinks/two-b", "hardlinks/two-a")
		p.randomFile("hardlinks/three-a", 0o600, 5000, "three")
		p.hardlink("hardlinks/sub/three-b", "hardlinks/three-a")
		p.hardlink("dir/three-c", "hardlinks/three-a")
		p.bytesFile("hardlinks/empty-a", 0o644, nil)
		p.hardlink("hardlinks/empty-b", "hardlinks/empty-a")
		if !o.SkipXattrs {
			two.xattrs = []xattrKV{{"user.cairn.linked", []byte("shared by both names")}}
		}
		if root && !o.SkipOwnership {
			p.byRel["hardlinks/three-a"].uid, p.byRel["hardlinks/three-a"].gid = 2345, 6789
		}
	}

	// Special files.
	if !o.SkipSpecial {
		p.add(&genEntry{rel: "special/fifo", kind: gFIFO, perm: 0o640})
		p.add(&genEntry{rel: "special/char-1-3", kind: gCharDev, perm: 0o666, dev: unix.Mkdev(1, 3)})
		p.add(&genEntry{rel: "special/block-259-65537", kind: gBlockDev, perm: 0o660, dev: unix.Mkdev(259, 65537)})
	}

	// Odd names.
	if !o.SkipOddNames {
		odd := []string{
			"with space", " leading space", "trailing space ",
			`double"quote`, "single'quote", `back\slash`,
			"tab\tname", "new\nline", "carriage\rreturn", "bell\abyte",
			"unicode-Grüße-日本語-🎉", "combining-e\u0301", "-leading-dash", "--",
			"*?[glob]{x}", "#hash~tilde$dollar&amp", "%41percent%2Fslash", "a:colon",
			".hidden", "..dots", "...", strings.Repeat("n", 255),
		}
		for i, name := range odd {
			p.bytesFile("odd/"+name, 0o644, []byte(fmt.Sprintf("odd name %d\n", i)))
		}
		p.bytesFile("odd/odd dir ☃/inner file", 0o644, []byte("inner\n"))
	}
	if !o.SkipNonUTF8Names {
		for i, name := range []string{"latin1-\xe9t\xe9", "\xff\xfe-bytes", "cut-utf8-\xe6\x97"} {
			p.bytesFile("nonutf8/"+name, 0o644, []byte(fmt.Sprintf("non-utf8 name %d\n", i)))
		}
		p.bytesFile("nonutf8/dir-\xc3\x28/file", 0o644, []byte("in a non-utf8 dir\n"))
	}

	// Mode bits.
	p.bytesFile("modes/0600", 0o600, []byte("0600\n"))
	p.bytesFile("modes/0755", 0o755, []byte("0755\n"))
	p.bytesFile("modes/0444", 0o444, []byte("0444\n"))
	p.bytesFile("modes/setuid", 0o4755, []byte("setuid\n"))
	p.bytesFile("modes/setgid", 0o2755, []byte("setgid\n"))
	p.bytesFile("modes/setuid-setgid", 0o6711, []byte("setuid+setgid\n"))
	if root {
		p.bytesFile("modes/0000", 0o000, []byte("unreadable but for root\n"))
	}
	p.dir("modes/setgid-dir", 0o2775)
	p.dir("modes/setgid-dir/sub", 0o755)
	p.bytesFile("modes/setgid-dir/file", 0o644, []byte("in setgid dir\n"))
	p.dir("modes/setuid-dir", 0o4755)
	p.dir("modes/sticky-dir", 0o1777)
	p.bytesFile("modes/sticky-dir/file", 0o666, []byte("in sticky dir\n"))
	p.dir("modes/private-dir", 0o700)
	p.dir("modes/traverse-only", 0o711)
	p.dir("modes/readonly-dir", 0o555)
	if root {
		// Not for other users: they could not delete the tree's copies.
		p.bytesFile("modes/readonly-dir/file", 0o644, []byte("in read-only dir\n"))
	}

	// Ownership (only meaningful as root).
	if root && !o.SkipOwnership {
		p.bytesFile("owned/file-1234", 0o644, []byte("1234:5678\n")).setOwner(1234, 5678)
		p.bytesFile("owned/group-only", 0o644, []byte("0:5678\n")).setOwner(0, 5678)
		p.dir("owned/dir-1234", 0o755).setOwner(1234, 5678)
		p.bytesFile("owned/dir-1234/inner", 0o600, []byte("4321:8765\n")).setOwner(4321, 8765)
		p.symlink("owned/link", "file-1234").setOwner(1234, 5678)
		p.bytesFile("owned/setuid-1234", 0o6755, []byte("setuid kept after chown\n")).setOwner(1234, 5678)
		if !o.SkipSpecial {
			p.add(&genEntry{rel: "owned/fifo", kind: gFIFO, perm: 0o600}).setOwner(1234, 5678)
		}
	}

	// Extended attributes.
	if !o.SkipXattrs {
		f := p.bytesFile("xattr/file", 0o644, []byte("file with xattrs\n"))
		f.xattrs = []xattrKV{
			{"user.cairn.text", []byte("alpha")},
			{"user.cairn.empty", []byte{}},
			{"user.cairn.binary", append([]byte{0, 1, 2, 0xff, 0}, p.randBytes("xattr-bin", 59)...)},
			{"user.cairn.large", p.randBytes("xattr-large", 1500)},
		}
		d := p.dir("xattr/dir", 0o755)
		d.xattrs = []xattrKV{{"user.cairn.dir", []byte("directory attribute")}}
		p.bytesFile("xattr/dir/plain", 0o644, []byte("no xattrs here\n"))
	}

	// Times: fixed past times with nanoseconds everywhere (see add); some
	// extreme ones here.
	ws := p.bytesFile("times/whole-second", 0o644, []byte("ns = 0\n"))
	ws.mtime = time.Unix(ws.mtime.Unix(), 0)
	if !o.SkipExtremeTimes {
		p.bytesFile("times/pre-epoch", 0o644, []byte("1969\n")).setMtime(time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC))
		p.bytesFile("times/epoch", 0o644, []byte("1970\n")).setMtime(time.Unix(0, 0))
		p.bytesFile("times/y2038", 0o644, []byte("2038\n")).setMtime(time.Date(2038, 1, 19, 3, 14, 8, 1, time.UTC))
		p.bytesFile("times/far-future", 0o644, []byte("2200\n")).setMtime(time.Date(2200, 1, 1, 0, 0, 0, 500_000_000, time.UTC))
	}

	// Sparse files.
	if !o.SkipSparse {
		size := int64(4 * mib)
		if scale >= 1 {
			size = 64 * mib
		}
		p.sparseFile("sparse/holes.img", size, map[int64]int{0: 4 * kib, 1 * mib: 64 * kib})
		p.sparseFile("sparse/tail-data.img", size, map[int64]int{size - 4*kib: 4 * kib})
		p.sparseFile("sparse/all-hole.img", 1*mib, nil)
	}
}

func (e *genEntry) setOwner(uid, gid int) *genEntry {
	e.uid, e.gid = uid, gid
	return e
}

func (e *genEntry) setMtime(t time.Time) *genEntry {
	e.mtime = t
	return e
}

// sparseFile plans a file of the given size with random data only at the
// given offsets (offset -> length) and holes everywhere else.
func (p *planner) sparseFile(rel string, size int64, data map[int64]int) {
	e := p.file(rel, 0o644, size, func(f *os.File) error {
		if err := f.Truncate(size); err != nil {
			return err
		}
		offs := make([]int64, 0, len(data))
		for off := range data {
			offs = append(offs, off)
		}
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		for _, off := range offs {
			b := p.randBytes(fmt.Sprintf("sparse:%s:%d", rel, off), data[off])
			if _, err := f.WriteAt(b, off); err != nil {
				return err
			}
		}
		return nil
	})
	e.sparse = true
}

// GenerateTree creates a deterministic tree below dir (which must be empty or
// not exist) holding every kind of entry a backup must preserve:
//
//   - regular files: empty, tiny, 100 KiB, identical and near-identical
//     multi-MiB files and a file of one block repeated (dedup), zeros, and at
//     Scale >= 1 a file larger than 8 MiB; many small files under many/
//   - sparse files (sparse/): holes in the middle, a leading hole, all hole
//   - nested directories, empty directories, a deep path
//   - symlinks (links/): relative, absolute, dangling, a loop, a long target,
//     unicode and non-UTF-8 targets
//   - hard links (hardlinks/): groups of 2 and 3 names across directories
//   - a FIFO, a character and a block device (special/; devices need root)
//   - odd names (odd/, nonutf8/): spaces, quotes, backslash, control
//     characters, newline, unicode, non-UTF-8 bytes, leading dash, 255 bytes
//   - mode bits (modes/): 0600..0000, setuid, setgid, setgid/setuid/sticky
//     and read-only directories (with content only as root, so that any
//     copy of the tree stays removable by its owner)
//   - fixed past mtimes and atimes with nanoseconds on every entry
//     (directories and symlinks included), and extreme times (times/)
//   - uid/gid 1234:5678 and others when running as root (owned/)
//   - user.* extended attributes on files and a directory (xattr/)
//
// Parts that cannot be created here (devices without privilege, xattrs on a
// filesystem without them, times after 2038 on 32-bit systems) are skipped
// and listed in the report's Skipped.
// Any other failure fails the test.
func GenerateTree(t testing.TB, dir string, opts GenOptions) *GenReport {
	t.Helper()
	rep, err := generateTree(dir, opts)
	if err != nil {
		t.Fatalf("GenerateTree(%s): %v", dir, err)
	}
	return rep
}

func generateTree(root string, opts GenOptions) (*GenReport, error) {
	isRoot := os.Geteuid() == 0
	p := &planner{seed: opts.Seed, opts: opts, byRel: make(map[string]*genEntry)}
	p.plan(isRoot)

	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create root: %w", err)
	}
	if ents, err := os.ReadDir(root); err != nil {
		return nil, fmt.Errorf("read root: %w", err)
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("root %s is not empty", root)
	}

	rep := &GenReport{}
	abs := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	skip := func(what string, err error) { rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: %v", what, err)) }
	created := make([]*genEntry, 0, len(p.entries))
	devSkipped, fifoSkipped := false, false

	// 1. Create everything (directories are planned before their content).
	for _, e := range p.entries {
		path := abs(e.rel)
		var err error
		switch e.kind {
		case gDir:
			if e.rel != "." {
				err = os.Mkdir(path, 0o700)
				rep.Dirs++
			}
		case gFile:
			err = createFile(path, e.write)
			rep.Files++
			rep.Bytes += e.size
		case gHardlink:
			err = os.Link(abs(e.target), path)
			rep.HardLinks++
		case gSymlink:
			err = os.Symlink(e.target, path)
			rep.Symlinks++
		case gFIFO:
			if fifoSkipped {
				continue
			}
			if err = unix.Mkfifo(path, 0o600); isPermission(err) {
				skip("fifo", err)
				fifoSkipped = true
				continue
			}
			rep.FIFOs++
		case gCharDev, gBlockDev:
			if devSkipped {
				continue
			}
			typ := uint32(unix.S_IFCHR)
			if e.kind == gBlockDev {
				typ = unix.S_IFBLK
			}
			if err = mknod(path, typ|0o600, e.dev); isPermission(err) {
				skip("devices", err)
				devSkipped = true
				continue
			}
			rep.Devices++
		}
		if err != nil {
			return nil, fmt.Errorf("create %q: %w", e.rel, err)
		}
		created = append(created, e)
	}

	// 2. Extended attributes (before chmod: non-root needs write access).
	if !opts.SkipXattrs {
		rep.Xattrs = true
	xattrs:
		for _, e := range created {
			for _, x := range e.xattrs {
				err := unix.Lsetxattr(abs(e.rel), x.name, x.value, 0)
				if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || isPermission(err) {
					skip("xattrs", err)
					rep.Xattrs = false
					if err := removeXattrs(abs, created); err != nil {
						return nil, err
					}
					break xattrs
				}
				if err != nil {
					return nil, fmt.Errorf("set xattr %s on %q: %w", x.name, e.rel, err)
				}
			}
		}
	}

	// 3. Ownership (before chmod: chown clears setuid/setgid).
	if isRoot && !opts.SkipOwnership {
		rep.Ownership = true
		for _, e := range created {
			if e.uid < 0 && e.gid < 0 {
				continue
			}
			err := unix.Lchown(abs(e.rel), e.uid, e.gid)
			if isPermission(err) || errors.Is(err, unix.EINVAL) {
				// e.g. a user namespace without these ids mapped.
				skip("ownership", err)
				rep.Ownership = false
				if err := resetOwners(abs, created); err != nil {
					return nil, err
				}
				break
			}
			if err != nil {
				return nil, fmt.Errorf("chown %q: %w", e.rel, err)
			}
		}
	}

	// 4. Modes and times of everything but directories.
	for _, e := range created {
		path := abs(e.rel)
		switch e.kind {
		case gDir, gHardlink:
			continue
		case gSymlink:
		default:
			if err := unix.Chmod(path, e.perm); err != nil {
				return nil, fmt.Errorf("chmod %q: %w", e.rel, err)
			}
		}
		if err := setTimes(path, e); errors.Is(err, errTimeRange) {
			skip("times", fmt.Errorf("%q: %w", e.rel, err))
		} else if err != nil {
			return nil, fmt.Errorf("set times of %q: %w", e.rel, err)
		}
	}

	// 5. Directories, deepest first, so that no later step touches a
	// directory's mtime after it was set.
	var dirs []*genEntry
	for _, e := range created {
		if e.kind == gDir {
			dirs = append(dirs, e)
		}
	}
	sort.SliceStable(dirs, func(i, j int) bool { return depth(dirs[i].rel) > depth(dirs[j].rel) })
	for _, e := range dirs {
		path := abs(e.rel)
		if err := unix.Chmod(path, e.perm); err != nil {
			return nil, fmt.Errorf("chmod %q: %w", e.rel, err)
		}
		if err := setTimes(path, e); errors.Is(err, errTimeRange) {
			skip("times", fmt.Errorf("%q: %w", e.rel, err))
		} else if err != nil {
			return nil, fmt.Errorf("set times of %q: %w", e.rel, err)
		}
	}

	// 6. Did the filesystem keep the holes?
	if !opts.SkipSparse {
		rep.Sparse = true
		for _, e := range created {
			if !e.sparse {
				continue
			}
			var st unix.Stat_t
			if err := unix.Lstat(abs(e.rel), &st); err != nil {
				return nil, fmt.Errorf("stat %q: %w", e.rel, err)
			}
			if st.Blocks*512 >= st.Size {
				rep.Sparse = false
				skip("sparse", fmt.Errorf("filesystem allocated all %d bytes of %q", st.Size, e.rel))
				break
			}
		}
	}
	return rep, nil
}

func depth(rel string) int {
	if rel == "." {
		return -1
	}
	return strings.Count(rel, "/")
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

func createFile(path string, write func(f *os.File) error) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return write(f)
}

// errTimeRange reports a planned time that this platform cannot set
// (32-bit systems cannot represent times after January 2038); the entry
// keeps the time it was created with, and the report lists it as skipped.
var errTimeRange = errors.New("time out of this platform's range")

func setTimes(path string, e *genEntry) error {
	a, err := unix.TimeToTimespec(e.atime)
	if err != nil {
		return fmt.Errorf("atime %v: %w (%w)", e.atime, errTimeRange, err)
	}
	m, err := unix.TimeToTimespec(e.mtime)
	if err != nil {
		return fmt.Errorf("mtime %v: %w (%w)", e.mtime, errTimeRange, err)
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{a, m}, unix.AT_SYMLINK_NOFOLLOW)
}

// removeXattrs undoes a partial xattr step so the tree is the same as one
// generated with SkipXattrs.
func removeXattrs(abs func(string) string, created []*genEntry) error {
	for _, e := range created {
		for _, x := range e.xattrs {
			err := unix.Lremovexattr(abs(e.rel), x.name)
			if err != nil && !errors.Is(err, errNoXattr) && !errors.Is(err, unix.ENOTSUP) &&
				!errors.Is(err, unix.EOPNOTSUPP) && !isPermission(err) {
				return fmt.Errorf("remove xattr %s from %q: %w", x.name, e.rel, err)
			}
		}
	}
	return nil
}

// resetOwners undoes a partial chown step.
func resetOwners(abs func(string) string, created []*genEntry) error {
	uid, gid := os.Geteuid(), os.Getegid()
	for _, e := range created {
		if e.uid < 0 && e.gid < 0 {
			continue
		}
		if err := unix.Lchown(abs(e.rel), uid, gid); err != nil {
			return fmt.Errorf("reset owner of %q: %w", e.rel, err)
		}
	}
	return nil
}
