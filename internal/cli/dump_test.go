package cli

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testutil"
	"github.com/cairn-backup/cairn/internal/tree"
)

// tarEntry is what the dump tests compare of a tar member.
type tarEntry struct {
	hdr tar.Header
	sum [32]byte
}

func readTar(t *testing.T, data []byte) (map[string]tarEntry, []string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	out := map[string]tarEntry{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[h.Name]; dup {
			t.Fatalf("tar has %q twice", h.Name)
		}
		out[h.Name] = tarEntry{hdr: *h, sum: sha256.Sum256(b)}
		order = append(order, h.Name)
	}
	return out, order
}

func xattrRecords(h tar.Header) map[string]string {
	m := map[string]string{}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.") {
			m[k] = v
		}
	}
	return m
}

func checkDumpMatchesRestic(t *testing.T, h history) {
	// single files: the same bytes as restic's dump (and, where unchanged,
	// as the source)
	for _, rel := range []string{"/medium.bin", "/dir/sub/other.bin", "/empty", "/data/repeated.bin"} {
		want := testutil.RunRestic(t, h.repo, testPassword, "--no-lock", "dump", h.ids[0], h.src+rel)
		got := []byte(mustCairn(t, "-r", h.repo, "dump", h.ids[0][:8], h.src+rel))
		if !bytes.Equal(want, got) {
			t.Errorf("dump %s: %d bytes differ from restic's %d", rel, len(got), len(want))
		}
	}
	src, err := os.ReadFile(filepath.Join(h.src, "data", "repeated.bin"))
	if err != nil || !bytes.Equal(src, []byte(mustCairn(t, "-r", h.repo, "dump", h.ids[1], h.src+"/data/repeated.bin"))) {
		t.Errorf("dump of data/repeated.bin differs from the source (%v)", err)
	}

	// a directory as tar: every entry restic writes, with equal metadata
	// and content; cairn adds only the FIFOs and devices restic skips
	want, _ := readTar(t, testutil.RunRestic(t, h.repo, testPassword, "--no-lock", "dump", h.ids[0], h.src))
	got, order := readTar(t, []byte(mustCairn(t, "-r", h.repo, "dump", h.ids[0], h.src)))
	if len(want) < 50 {
		t.Fatalf("restic's tar has only %d entries", len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("tar entry %q missing", name)
			continue
		}
		wh, gh := w.hdr, g.hdr
		if wh.Typeflag != gh.Typeflag || wh.Size != gh.Size || wh.Mode != gh.Mode || wh.Uid != gh.Uid || wh.Gid != gh.Gid ||
			wh.Uname != gh.Uname || wh.Gname != gh.Gname || wh.Linkname != gh.Linkname || w.sum != g.sum {
			t.Errorf("tar entry %q differs:\nrestic: %+v\ncairn:  %+v", name, wh, gh)
		}
		// restic's headers carry whole seconds, cairn's nanoseconds
		if !gh.ModTime.Round(time.Second).Equal(wh.ModTime) && !gh.ModTime.Truncate(time.Second).Equal(wh.ModTime) {
			t.Errorf("tar entry %q: mtime %v, restic %v", name, gh.ModTime, wh.ModTime)
		}
		if wx, gx := xattrRecords(wh), xattrRecords(gh); len(wx) > 0 && strings.Join(sortedKV(wx), "\n") != strings.Join(sortedKV(gx), "\n") {
			t.Errorf("tar entry %q: xattrs %v, restic %v", name, gx, wx)
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			switch g.hdr.Typeflag {
			case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
			default:
				t.Errorf("cairn's tar has an extra entry %q (type %c)", name, g.hdr.Typeflag)
			}
		}
	}
	prefix := strings.TrimPrefix(h.src, "/") + "/"
	for _, name := range order {
		if !strings.HasPrefix(name, prefix) {
			t.Errorf("tar entry %q is not below %q", name, prefix)
		}
	}
}

func sortedKV(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// TestDumpTarExtractsLikeSource dumps a whole cairn snapshot as tar,
// extracts it with GNU tar and compares the result with the source.
func TestDumpTarExtractsLikeSource(t *testing.T) {
	tarBin := testutil.RequireTool(t, "tar")
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 14, SkipSparse: true})
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "-q", src)
	archive := mustCairn(t, "-r", repoDir, "dump", "latest", "/")
	dst := filepath.Join(tmp, "dst")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-x", "-C", dst, "--xattrs", "--xattrs-include=*", "-p", "--numeric-owner"}
	if os.Geteuid() == 0 {
		args = append(args, "--same-owner")
	}
	cmd := exec.Command(tarBin, args...)
	cmd.Stdin = strings.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{
		IgnoreRoot: true, IgnoreHardLinks: true, IgnoreOwner: os.Geteuid() != 0})

	// a subdirectory: names relative to the snapshot root, without the
	// directory itself
	entries, order := readTar(t, []byte(mustCairn(t, "-r", repoDir, "dump", "latest", src+"/dir")))
	p := strings.TrimPrefix(src, "/")
	if _, ok := entries[p+"/dir/sub/"]; !ok || entries[p+"/dir/sub/other.bin"].hdr.Size != 3000 {
		t.Errorf("dump of a directory: %v", order)
	}
	if _, ok := entries[p+"/dir/"]; ok {
		t.Errorf("dump of a directory includes the directory itself: %v", order)
	}

	// a single file, and errors
	want, _ := os.ReadFile(filepath.Join(src, "dir", "sub", "other.bin"))
	if got := mustCairn(t, "-r", repoDir, "dump", "latest", src+"/dir/sub/other.bin"); got != string(want) {
		t.Error("dump of a file differs from the source")
	}
	for _, bad := range []string{"/no/such/path", src + "/dir/file.txt/below", src + "/special/fifo"} {
		if r := cairn(t, "-r", repoDir, "dump", "latest", bad); r.code == 0 {
			t.Errorf("dump %s succeeded", bad)
		}
	}
	if r := cairn(t, "-r", repoDir, "dump", "--archive", "rar", "latest", "/"); r.code == 0 {
		t.Error("dump --archive rar succeeded")
	}
}

// TestDumpZip reads a zip dump back and checks files, directories and
// symlinks.
func TestDumpZip(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 15, SkipSparse: true})
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "-q", src)
	seen := map[string]bool{}
	files, links, dirs := 0, 0, 0
	var all []*zip.File
	// (a few directories, not all of src: deflate is slow under -race)
	for _, sub := range []string{"dir", "links", "modes", "times", "odd", "hardlinks"} {
		data := mustCairn(t, "-r", repoDir, "dump", "--archive", "zip", "latest", src+"/"+sub)
		zr, err := zip.NewReader(strings.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, zr.File...)
	}
	for _, f := range all {
		seen[f.Name] = true
		local := "/" + strings.TrimSuffix(f.Name, "/")
		fi, err := os.Lstat(local)
		if err != nil {
			t.Errorf("zip entry %q: %v", f.Name, err)
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("zip entry %q: %v", f.Name, err)
		}
		switch {
		case fi.Mode().IsRegular():
			files++
			want, _ := os.ReadFile(local)
			if !bytes.Equal(want, content) || f.Mode() != fi.Mode() {
				t.Errorf("zip file %q: mode %v (want %v) or content differs", f.Name, f.Mode(), fi.Mode())
			}
			if mt := zipTime(fi.ModTime()); f.Modified.Unix() != mt.Unix() {
				t.Errorf("zip file %q: mtime %v, want %v", f.Name, f.Modified, fi.ModTime())
			}
		case fi.Mode()&os.ModeSymlink != 0:
			links++
			target, _ := os.Readlink(local)
			if string(content) != target || f.Mode()&os.ModeSymlink == 0 {
				t.Errorf("zip symlink %q: %q mode %v, want %q", f.Name, content, f.Mode(), target)
			}
		case fi.IsDir():
			dirs++
			if !strings.HasSuffix(f.Name, "/") || !f.Mode().IsDir() {
				t.Errorf("zip dir %q: mode %v", f.Name, f.Mode())
			}
		default:
			t.Errorf("zip entry %q has type %v", f.Name, fi.Mode().Type())
		}
	}
	if files < 15 || links < 4 || dirs < 3 {
		t.Errorf("zip has %d files, %d symlinks, %d dirs", files, links, dirs)
	}
	if !seen[strings.TrimPrefix(src, "/")+"/dir/sub/other.bin"] {
		t.Error("zip lacks dir/sub/other.bin")
	}
}

func TestDecodePosixACL(t *testing.T) {
	entry := func(tag, perm uint16, id uint32) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint16(b, tag)
		binary.LittleEndian.PutUint16(b[2:], perm)
		binary.LittleEndian.PutUint32(b[4:], id)
		return b
	}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	b = append(b, entry(0x01, 6, 0xffffffff)...)
	b = append(b, entry(0x02, 4, 1000)...)
	b = append(b, entry(0x04, 5, 0xffffffff)...)
	b = append(b, entry(0x08, 7, 50)...)
	b = append(b, entry(0x10, 7, 0xffffffff)...)
	b = append(b, entry(0x20, 0, 0xffffffff)...)
	got, err := decodePosixACL(b)
	if want := "user::rw-,user:1000:r--,group::r-x,group:50:rwx,mask::rwx,other::---"; err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	for _, bad := range [][]byte{nil, {2, 0, 0}, append(binary.LittleEndian.AppendUint32(nil, 1), entry(1, 7, 0)...),
		append(binary.LittleEndian.AppendUint32(nil, 2), entry(0x40, 7, 0)...), append(binary.LittleEndian.AppendUint32(nil, 2), 1, 2, 3)} {
		if s, err := decodePosixACL(bad); err == nil {
			t.Errorf("decodePosixACL(%x) = %q, want an error", bad, s)
		}
	}
	// records: ACLs as SCHILY.acl.*, other attributes verbatim
	recs := tarXattrRecords([]tree.ExtendedAttribute{{Name: "system.posix_acl_access", Value: b}, {Name: "user.x", Value: []byte{0, 1}}, {Name: "user.bad=name", Value: []byte("v")}})
	if recs["SCHILY.acl.access"] == "" || recs["SCHILY.xattr.user.x"] != "\x00\x01" || len(recs) != 2 {
		t.Errorf("records: %q", recs)
	}
}

func FuzzDecodePosixACL(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255})
	f.Add([]byte{2, 0, 0, 0, 2, 0, 7, 0, 232, 3, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodePosixACL(b)
		if err != nil {
			return
		}
		if n := (len(b) - 4) / 8; n > 0 && strings.Count(s, ",") != n-1 {
			t.Fatalf("%d entries gave %q", n, s)
		}
	})
}
