package restorer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/testutil"
)

func compareOpts() testutil.CompareOptions {
	return testutil.CompareOptions{IgnoreRoot: true, CheckSparse: true, IgnoreOwner: os.Geteuid() != 0}
}

func restoreOpts(target string) Options {
	return Options{Target: target, IgnoreOwnership: os.Geteuid() != 0, Progress: &Progress{}}
}

func mustRestore(t *testing.T, r *repo.Repository, root core.ID, opts Options) *Result {
	t.Helper()
	res, err := Restore(context.Background(), r, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("restore errors: %v", res.Errors)
	}
	return res
}

// genTree writes the standard test tree plus two identical directories
// (one tree blob used twice) and files that share blobs.
func genTree(t *testing.T, src string) {
	t.Helper()
	rep := testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 1})
	if len(rep.Skipped) > 0 {
		t.Logf("generator skipped: %v", rep.Skipped)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 3<<20)
	fillText(rnd, big)
	for _, d := range []string{"twin-a", "twin-b"} {
		writeFile(t, filepath.Join(src, d, "same.txt"), big[:100<<10])
		writeFile(t, filepath.Join(src, d, "sub", "x"), []byte("x"))
	}
	// the same large content under three names, and zeros inside data
	writeFile(t, filepath.Join(src, "dup", "one"), big)
	writeFile(t, filepath.Join(src, "dup", "two"), big)
	withZeros := append(append(bytes.Clone(big[:1<<20]), make([]byte, 3<<20)...), big[1<<20:]...)
	writeFile(t, filepath.Join(src, "dup", "zeros-inside"), withZeros)
	writeFile(t, filepath.Join(src, "dup", "zeros-only"), make([]byte, 5<<20+17))
	writeFile(t, filepath.Join(src, "empty"), nil)
	// fix the mtimes of the directories written to above
	for _, d := range []string{"twin-a", "twin-b", "twin-a/sub", "twin-b/sub", "dup"} {
		ts := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
		if err := os.Chtimes(filepath.Join(src, d), ts, ts); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	genTree(t, src)
	tr := backupTestRepo(t, src, 512<<10)
	r := tr.open(t)
	defer r.Close()
	for _, tc := range []struct {
		name     string
		workers  int
		maxOpen  int64
		existing bool // the target directory exists already
	}{
		{name: "default"},
		{name: "one-worker", workers: 1},
		{name: "many-workers-no-kept-handles", workers: 8, maxOpen: 0},
		{name: "one-kept-handle", workers: 3, maxOpen: 1},
		{name: "existing-empty-target", existing: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.maxOpen != 0 || tc.name == "many-workers-no-kept-handles" {
				old := maxOpenFiles
				maxOpenFiles = tc.maxOpen
				defer func() { maxOpenFiles = old }()
			}
			dst := filepath.Join(t.TempDir(), "dst")
			if tc.existing {
				if err := os.Mkdir(dst, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			opts := restoreOpts(dst)
			opts.Workers = tc.workers
			opts.Verify = true
			res := mustRestore(t, r, tr.tree, opts)
			testutil.CompareTrees(t, src, dst, compareOpts())
			p := opts.Progress
			if p.FilesDone.Load() != p.FilesTotal.Load() || p.BytesDone.Load() == 0 {
				t.Errorf("progress: %d/%d files, %d/%d bytes", p.FilesDone.Load(), p.FilesTotal.Load(), p.BytesDone.Load(), p.BytesTotal.Load())
			}
			if res.Verified == 0 {
				t.Error("nothing verified")
			}
		})
	}
}

func TestRestoreTargetIsFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "f"), []byte("f"))
	tr := backupTestRepo(t, src, 0)
	r := tr.open(t)
	defer r.Close()
	dst := filepath.Join(t.TempDir(), "file")
	writeFile(t, dst, []byte("not a directory"))
	if _, err := Restore(context.Background(), r, tr.tree, restoreOpts(dst)); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("restore into a file: %v", err)
	}
}

func TestRestoreDryRun(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	genTree(t, src)
	tr := backupTestRepo(t, src, 0)
	r := tr.open(t)
	defer r.Close()
	dst := filepath.Join(t.TempDir(), "dst")
	opts := restoreOpts(dst)
	opts.DryRun = true
	mustRestore(t, r, tr.tree, opts)
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dry run created the target: %v", err)
	}
	if opts.Progress.FilesTotal.Load() == 0 || opts.Progress.BytesTotal.Load() == 0 {
		t.Fatal("dry run counted nothing")
	}
}

func TestRestoreSelect(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	genTree(t, src)
	tr := backupTestRepo(t, src, 0)
	r := tr.open(t)
	defer r.Close()
	dst := filepath.Join(t.TempDir(), "dst")
	opts := restoreOpts(dst)
	opts.Select = func(item string, isDir bool) (bool, bool) {
		switch {
		case item == "/dup" || strings.HasPrefix(item, "/dup/"):
			return item != "/dup/two", true
		case item == "/twin-b":
			return false, true // only what is selected below it
		case item == "/twin-b/sub" || strings.HasPrefix(item, "/twin-b/sub/"):
			return true, true
		}
		return false, false
	}
	mustRestore(t, r, tr.tree, opts)
	var got []string
	err := filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dst {
			rel, _ := filepath.Rel(dst, p)
			got = append(got, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"dup", "dup/one", "dup/zeros-inside", "dup/zeros-only", "twin-b", "twin-b/sub", "twin-b/sub/x"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored %v, want %v", got, want)
	}
	testutil.CompareTrees(t, filepath.Join(src, "dup"), filepath.Join(dst, "dup"), testutil.CompareOptions{
		IgnoreRoot: true, IgnoreOwner: true, Exclude: func(rel string) bool { return rel == "two" },
	})
}

func TestRestoreOverwrite(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	genTree(t, src)
	tr := backupTestRepo(t, src, 0)
	r := tr.open(t)
	defer r.Close()
	outside := filepath.Join(t.TempDir(), "outside")
	writeFile(t, outside, []byte("must not change"))

	// prepare: a full restore, then local changes
	prepare := func(t *testing.T) string {
		dst := filepath.Join(t.TempDir(), "dst")
		mustRestore(t, r, tr.tree, restoreOpts(dst))
		// changed content, same size and mtime: only "always" replaces it
		one := filepath.Join(dst, "dup", "one")
		fi, _ := os.Stat(one)
		f, err := os.OpenFile(one, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("LOCAL"), 10)
		f.Close()
		os.Chtimes(one, fi.ModTime(), fi.ModTime())
		// newer local file with other content
		writeFile(t, filepath.Join(dst, "dup", "two"), []byte("newer local"))
		// a symlink to a file outside the target where a file belongs
		os.Remove(filepath.Join(dst, "twin-a", "same.txt"))
		if err := os.Symlink(outside, filepath.Join(dst, "twin-a", "same.txt")); err != nil {
			t.Fatal(err)
		}
		// extra file
		writeFile(t, filepath.Join(dst, "twin-a", "extra"), []byte("extra"))
		// a symlink to a directory outside the target where a directory
		// belongs
		if err := os.RemoveAll(filepath.Join(dst, "twin-b", "sub")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Dir(outside), filepath.Join(dst, "twin-b", "sub")); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	read := func(t *testing.T, p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	srcOne := read(t, filepath.Join(src, "dup", "one"))
	srcSame := read(t, filepath.Join(src, "twin-a", "same.txt"))

	for _, tc := range []struct {
		mode                 Overwrite
		delete               bool
		oneRestored          bool
		twoRestored          bool
		sameRestored, extras bool
	}{
		{mode: OverwriteAlways, oneRestored: true, twoRestored: true, sameRestored: true, extras: true},
		{mode: OverwriteAlways, delete: true, oneRestored: true, twoRestored: true, sameRestored: true},
		{mode: OverwriteNever, extras: true},
		{mode: OverwriteIfChanged, twoRestored: true, sameRestored: true, extras: true},
		{mode: OverwriteIfNewer, sameRestored: false, extras: true},
	} {
		t.Run(fmt.Sprintf("mode%d-delete=%v", tc.mode, tc.delete), func(t *testing.T) {
			dst := prepare(t)
			opts := restoreOpts(dst)
			opts.Overwrite, opts.Delete = tc.mode, tc.delete
			res, err := Restore(context.Background(), r, tr.tree, opts)
			if err != nil {
				t.Fatal(err)
			}
			// only "never" leaves the symlinked directory, and says so
			if wantErrs := tc.mode == OverwriteNever; (len(res.Errors) != 0) != wantErrs ||
				wantErrs && (len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), "not a directory")) {
				t.Fatalf("errors: %v", res.Errors)
			}
			if got := read(t, filepath.Join(dst, "dup", "one")) == srcOne; got != tc.oneRestored {
				t.Errorf("dup/one restored: %v, want %v", got, tc.oneRestored)
			}
			if got := read(t, filepath.Join(dst, "dup", "two")) != "newer local"; got != tc.twoRestored {
				t.Errorf("dup/two restored: %v, want %v", got, tc.twoRestored)
			}
			fi, err := os.Lstat(filepath.Join(dst, "twin-a", "same.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().IsRegular() && read(t, filepath.Join(dst, "twin-a", "same.txt")) == srcSame; got != tc.sameRestored {
				t.Errorf("symlink replaced by the file: %v, want %v", got, tc.sameRestored)
			}
			if got := read(t, outside); got != "must not change" {
				t.Fatalf("restore wrote through a symlink: %q", got)
			}
			if ents, _ := os.ReadDir(filepath.Dir(outside)); len(ents) != 1 {
				t.Fatalf("restore wrote through a symlinked directory: %v", ents)
			}
			fi, err = os.Lstat(filepath.Join(dst, "twin-b", "sub"))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.IsDir(); got != (tc.mode != OverwriteNever) {
				t.Errorf("symlink replaced by the directory: %v", got)
			}
			_, err = os.Lstat(filepath.Join(dst, "twin-a", "extra"))
			if got := err == nil; got != tc.extras {
				t.Errorf("extra file kept: %v, want %v", got, tc.extras)
			}
			if want := map[bool]uint64{true: 1}[tc.delete]; res.Deleted != want {
				t.Errorf("%d deleted, want %d", res.Deleted, want)
			}
			if tc.mode == OverwriteAlways {
				excl := func(rel string) bool { return !tc.delete && rel == "twin-a/extra" }
				o := compareOpts()
				o.Exclude = excl
				testutil.CompareTrees(t, src, dst, o)
			} else if res.FilesSkipped == 0 {
				t.Error("no file skipped")
			}
		})
	}
}

// damage overwrites bytes in the middle of the largest data pack and
// returns the pack's ID.
// damageLargestPack overwrites 8 bytes at a third of the largest data pack
// and returns the pack and the offset of the damage.
func damageLargestPack(t *testing.T, tr *testRepo) (core.ID, int64) {
	t.Helper()
	var victim string
	var size int64
	for _, p := range tr.dataPacks(t) {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			victim, size = p, fi.Size()
		}
	}
	os.Chmod(victim, 0o600)
	f, err := os.OpenFile(victim, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage!"), size/3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	id, err := core.ParseID(filepath.Base(victim))
	if err != nil {
		t.Fatal(err)
	}
	return id, size / 3
}

func TestRestoreDamagedPack(t *testing.T) {
	for _, missing := range []bool{false, true} {
		t.Run(fmt.Sprintf("missing=%v", missing), func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			rnd := rand.New(rand.NewPCG(3, 3))
			for _, n := range []string{"a", "b", "c"} {
				buf := make([]byte, 3<<20)
				fillRandom(rnd, buf)
				writeFile(t, filepath.Join(src, n), buf)
			}
			writeFile(t, filepath.Join(src, "small"), []byte("small file"))
			tr := backupTestRepo(t, src, 1<<20)
			id, off := damageLargestPack(t, tr)
			if missing {
				if err := os.Remove(filepath.Join(tr.dir, "data", id.String()[:2], id.String())); err != nil {
					t.Fatal(err)
				}
			}
			r := tr.open(t)
			defer r.Close()
			dst := filepath.Join(t.TempDir(), "dst")
			res, err := Restore(context.Background(), r, tr.tree, restoreOpts(dst))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Errors) == 0 {
				t.Fatal("damaged pack not reported")
			}
			named := 0
			for _, n := range []string{"a", "b", "c"} {
				p := filepath.Join(dst, n)
				if strings.Contains(fmt.Sprint(res.Errors), p+":") {
					named++
					// the damaged file is still there, at its size
					if fi, err := os.Stat(p); err != nil || fi.Size() != 3<<20 {
						t.Errorf("damaged %s: %v", n, err)
					}
					continue
				}
				want, _ := os.ReadFile(filepath.Join(src, n))
				got, err := os.ReadFile(p)
				if err != nil || !bytes.Equal(want, got) {
					t.Errorf("%s neither restored nor reported", n)
				}
			}
			// Blobs go to two packers at random, so the largest pack can
			// hold a blob of every file: then all three are damaged, and
			// every report must name that pack.
			allInPack := named == 3 && strings.Count(fmt.Sprint(res.Errors), id.Str()) >= 3
			if named == 0 || (named == 3 && !allInPack) {
				t.Fatalf("%d of 3 files reported damaged: %v", named, res.Errors)
			}
			if allInPack {
				t.Logf("the damaged pack %v holds blobs of all three files", id.Str())
			}
			// the small file's blob may share the damaged pack (blobs are
			// packed in the order the savers finish): if the pack is gone or
			// the damage hit that blob it must be reported, otherwise (each
			// blob is authenticated on its own) restored
			smallLoc, ok := r.Index().Lookup(core.BlobHandle{ID: core.Hash([]byte("small file")), Type: core.DataBlob})
			if !ok {
				t.Fatal("small file's blob not in the index")
			}
			smallPath := filepath.Join(dst, "small")
			hit := off+8 > int64(smallLoc.Offset) && off < int64(smallLoc.Offset)+int64(smallLoc.Length)
			if smallLoc.Pack == id && (missing || hit) {
				if !strings.Contains(fmt.Sprint(res.Errors), smallPath+":") {
					t.Fatalf("small file in the damaged pack not reported: %v", res.Errors)
				}
			} else if got, _ := os.ReadFile(smallPath); string(got) != "small file" {
				t.Fatal("undamaged file not restored")
			}
		})
	}
}

// flakyBackend breaks off the first read of every pack halfway; the
// restorer must cope with Load calling its function again.
type flakyBackend struct {
	backend.Backend
	seen  map[string]bool
	calls atomic.Int32
	// cancel, if set, is called at the third pack load.
	cancel func()
}

var errFlaky = errors.New("connection reset (test)")

func (b *flakyBackend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if h.Type != core.PackFile || length < 1024 {
		return b.Backend.Load(ctx, h, length, offset, fn)
	}
	if b.calls.Add(1) == 3 && b.cancel != nil {
		b.cancel()
	}
	return b.Backend.Load(ctx, h, length, offset, func(rd io.Reader) error {
		// the first attempt reads half, then the "connection" breaks
		err := fn(io.MultiReader(io.LimitReader(rd, int64(length/2)), errReader{}))
		if !errors.Is(err, errFlaky) {
			return fmt.Errorf("first attempt: want the read error, got %v", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// retry from the start with a fresh reader
		return b.Backend.Load(ctx, h, length, offset, fn)
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errFlaky }

func TestRestoreRetriedLoad(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	genTree(t, src)
	tr := backupTestRepo(t, src, 1<<20)
	r := tr.open(t)
	defer r.Close()
	fb := &flakyBackend{}
	r.WrapBackend(func(be backend.Backend) backend.Backend { fb.Backend = be; return fb })
	dst := filepath.Join(t.TempDir(), "dst")
	mustRestore(t, r, tr.tree, restoreOpts(dst))
	testutil.CompareTrees(t, src, dst, compareOpts())
	if fb.calls.Load() == 0 {
		t.Fatal("no pack loaded through the flaky backend")
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func TestRestoreCancel(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	rnd := rand.New(rand.NewPCG(4, 4))
	for i := 0; i < 8; i++ {
		buf := make([]byte, 2<<20)
		fillRandom(rnd, buf)
		writeFile(t, filepath.Join(src, fmt.Sprint(i)), buf)
	}
	tr := backupTestRepo(t, src, 1<<20)
	r := tr.open(t)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fb := &flakyBackend{cancel: cancel}
	r.WrapBackend(func(be backend.Backend) backend.Backend { fb.Backend = be; return fb })
	before := openFDs(t)
	// one worker: the packs before the cancellation leave files partly
	// written, with their handles open
	opts := restoreOpts(filepath.Join(t.TempDir(), "dst"))
	opts.Workers = 1
	_, err := Restore(ctx, r, tr.tree, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if after := openFDs(t); after > before {
		t.Fatalf("%d file descriptors open before, %d after the cancelled restore", before, after)
	}
}

// TestRestoreBlobNotInIndex: a file whose content the index does not know
// is reported, never silently left incomplete.
func TestRestoreBlobNotInIndex(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	rnd := rand.New(rand.NewPCG(5, 5))
	buf := make([]byte, 4<<20)
	fillRandom(rnd, buf)
	writeFile(t, filepath.Join(src, "big"), buf)
	writeFile(t, filepath.Join(src, "small"), []byte("small"))
	tr := backupTestRepo(t, src, 0)
	r := tr.open(t)
	defer r.Close()
	// drop one data blob of "big" from the index
	var bigID core.ID
	m := index.NewMaster()
	dropped := false
	for packID, blobs := range r.Index().PackContents() {
		kept := blobs[:0:0]
		for _, b := range blobs {
			if !dropped && b.Type == core.DataBlob && b.DataLength() > 100 {
				dropped = true
				bigID = b.ID
				continue
			}
			kept = append(kept, b)
		}
		m.AddPack(core.ID{}, packID, kept)
	}
	if !dropped {
		t.Fatal("no data blob to drop")
	}
	r.SetIndex(m)
	dst := filepath.Join(t.TempDir(), "dst")
	res, err := Restore(context.Background(), r, tr.tree, restoreOpts(dst))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), filepath.Join(dst, "big")) ||
		!strings.Contains(res.Errors[0].Error(), bigID.Str()) {
		t.Fatalf("errors: %v", res.Errors)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "small")); string(got) != "small" {
		t.Fatal("small file not restored")
	}
}
