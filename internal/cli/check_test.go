package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/repo/pack"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/testutil"
	"github.com/cairn-backup/cairn/internal/tree"
)

// newCheckRepo makes a cairn repository holding one backup of a few files.
func newCheckRepo(t *testing.T) string {
	t.Helper()
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	for i, name := range []string{"a", "b", "sub/c", "sub/d"} {
		buf := make([]byte, 20000+i*7000)
		for j := range buf {
			buf[j] = byte(rnd.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, name), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", src)
	return repoDir
}

// openTestRepo opens the repository in dir directly (for planting faults).
func openTestRepo(t *testing.T, dir string) *repo.Repository {
	t.Helper()
	ctx := context.Background()
	be, err := openLocal(ctx, nil, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, testPassword, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// repoFiles lists the files of one type in a local repository.
func repoFiles(t *testing.T, dir string, typ core.FileType) []string {
	t.Helper()
	var out []string
	root := filepath.Join(dir, typ.String())
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				return nil // removed or renamed while listed (a concurrent command)
			}
			return err
		}
		// temporary files of an upload in progress are not repository files
		if fi.Mode().IsRegular() && !strings.Contains(fi.Name(), "-tmp-") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("no %v files: %v", typ, err)
	}
	return out
}

// rewrite applies fn to the bytes of file p.
func rewrite(t *testing.T, p string, fn func([]byte) []byte) {
	t.Helper()
	buf, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, fn(buf), 0o600); err != nil {
		t.Fatal(err)
	}
}

func assertClean(t *testing.T, repoDir string, args ...string) {
	t.Helper()
	out := mustCairn(t, append([]string{"-r", repoDir, "check"}, args...)...)
	if !strings.Contains(out, "no errors were found") {
		t.Fatalf("check %v: %s", args, out)
	}
}

// assertErrors runs check, which must fail and mention every string in want
// (in stdout or stderr).
func assertErrors(t *testing.T, repoDir string, args []string, want ...string) result {
	t.Helper()
	r := cairn(t, append([]string{"-r", repoDir, "check"}, args...)...)
	all := r.stdout + r.stderr
	if r.code != ExitError || !strings.Contains(r.stderr, "repository contains errors") {
		t.Fatalf("check %v: exit %d, want %d with \"repository contains errors\"\n%s", args, r.code, ExitError, all)
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("check %v: output lacks %q:\n%s", args, w, all)
		}
	}
	return r
}

func TestCheckClean(t *testing.T) {
	repoDir := newCheckRepo(t)
	assertClean(t, repoDir)
	assertClean(t, repoDir, "--read-data")
	assertClean(t, repoDir, "--no-lock", "--read-data-subset", "1/2")
	assertClean(t, repoDir, "--read-data-subset", "50%")
	assertClean(t, repoDir, "--read-data-subset", "10M")
	out := mustCairn(t, "-r", repoDir, "check", "--json", "--read-data")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var sum checkSummaryJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.MessageType != "summary" {
		t.Fatalf("no JSON summary: %v\n%s", err, out)
	}
	if sum.NumErrors != 0 || sum.Snapshots != 1 || sum.Packs == 0 || sum.PacksRead != sum.Packs || len(lines) != 1 {
		t.Fatalf("summary: %+v\n%s", sum, out)
	}
	if r := cairn(t, "-r", repoDir, "check", "--read-data", "--read-data-subset", "1/2"); r.code == 0 {
		t.Fatal("--read-data with --read-data-subset accepted")
	}
	if r := cairn(t, "-r", repoDir, "check", "--read-data-subset", "0/2"); r.code == 0 {
		t.Fatal("bad subset accepted")
	}
	// check leaves no lock behind
	if locks, _ := os.ReadDir(filepath.Join(repoDir, "locks")); len(locks) != 0 {
		t.Fatalf("%d locks left", len(locks))
	}
}

// TestCheckHonoursLock: check takes a shared lock, so it runs while others
// hold shared locks (backups, forget, prune marks) and is refused while an
// exclusive lock (a prune sweep, restic's prune) is held.
func TestCheckHonoursLock(t *testing.T) {
	repoDir := newCheckRepo(t)
	r := openTestRepo(t, repoDir)
	shared, _, err := r.Lock(context.Background(), false, repo.LockOptions{Op: "backup"})
	if err != nil {
		t.Fatal(err)
	}
	assertClean(t, repoDir)
	if err := shared.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, _, err := r.Lock(context.Background(), true, repo.LockOptions{Op: "prune-sweep"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(context.Background())
	if res := cairn(t, "-r", repoDir, "check"); res.code != ExitLocked {
		t.Fatalf("check under an exclusive lock: exit %d\n%s", res.code, res.stderr)
	}
	assertClean(t, repoDir, "--no-lock")
}

func TestCheckFlippedBit(t *testing.T) {
	repoDir := newCheckRepo(t)
	// the largest pack holds data blobs: flipping a bit in a tree pack
	// would break the tree check even without --read-data
	var victim string
	var size int64
	for _, p := range repoFiles(t, repoDir, core.PackFile) {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			victim, size = p, fi.Size()
		}
	}
	rewrite(t, victim, func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b })
	assertClean(t, repoDir) // sizes still match: only reading finds it
	id := filepath.Base(victim)
	assertErrors(t, repoDir, []string{"--read-data"}, "pack "+id, "not to its name", "cairn repair packs "+id)

	res := cairn(t, "-r", repoDir, "check", "--read-data", "--json")
	if res.code != ExitError {
		t.Fatalf("exit %d", res.code)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	var p checkProblemJSON
	if err := json.Unmarshal([]byte(lines[0]), &p); err != nil || p.MessageType != "error" || p.Kind != "pack_damaged" || p.Pack != id {
		t.Fatalf("JSON problem: %v %+v\n%s", err, p, res.stdout)
	}
	var sum checkSummaryJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.NumErrors == 0 || len(sum.BrokenPacks) != 1 || sum.BrokenPacks[0] != id {
		t.Fatalf("JSON summary: %v %+v", err, sum)
	}
}

func TestCheckDeletedAndTruncatedPacks(t *testing.T) {
	repoDir := newCheckRepo(t)
	packs := repoFiles(t, repoDir, core.PackFile)
	if len(packs) < 2 {
		t.Fatalf("want at least two packs, got %d", len(packs))
	}
	deleted, truncated := packs[0], packs[1]
	if err := os.Remove(deleted); err != nil {
		t.Fatal(err)
	}
	rewrite(t, truncated, func(b []byte) []byte { return b[:len(b)-100] })
	assertErrors(t, repoDir, nil, "pack "+filepath.Base(deleted)+" does not exist", "pack "+filepath.Base(truncated)+" is truncated")
	assertErrors(t, repoDir, []string{"--read-data"}, "cairn repair packs "+filepath.Base(truncated))
}

func TestCheckDamagedIndex(t *testing.T) {
	// (a corrupted index file is tested in internal/checker)
	repoDir := newCheckRepo(t)
	victim := repoFiles(t, repoDir, core.IndexFile)[0]
	rewrite(t, victim, func(b []byte) []byte { return b[:len(b)/2] })
	assertErrors(t, repoDir, nil, "index file "+filepath.Base(victim)+" is damaged", "repair index")
}

func TestCheckSnapshotMissingTree(t *testing.T) {
	repoDir := newCheckRepo(t)
	r := openTestRepo(t, repoDir)
	bogus := core.Hash([]byte("no such tree"))
	sn, err := snapshot.New([]string{"/x"}, nil, "host", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sn.Tree = &bogus
	sid, err := r.SaveSnapshot(context.Background(), sn)
	if err != nil {
		t.Fatal(err)
	}
	assertErrors(t, repoDir, nil, "tree "+bogus.String()+" not found in index", "snapshot "+sid.Str())
}

func TestCheckTreeWithUnindexedBlob(t *testing.T) {
	repoDir := newCheckRepo(t)
	ctx := context.Background()
	r := openTestRepo(t, repoDir)
	missing := core.Hash([]byte("never stored"))
	buf, err := tree.EncodeTree([]*tree.Node{{Name: "ghost", Type: tree.NodeFile, Content: core.IDs{missing}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.SaveBlob(ctx, core.TreeBlob, buf, core.ID{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sn, _ := snapshot.New([]string{"/x"}, nil, "host", time.Now())
	sn.Tree = &res.ID
	sid, err := r.SaveSnapshot(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	assertErrors(t, repoDir, nil, `file "ghost": data blob 0 (`+missing.String()+`) not found in index`,
		"snapshot "+sid.Str(), "tree "+res.ID.Str(), `path "/ghost"`)
	jr := cairn(t, "-r", repoDir, "check", "--json")
	var p checkProblemJSON
	if err := json.Unmarshal([]byte(strings.Split(jr.stdout, "\n")[0]), &p); err != nil ||
		p.Kind != "blob_missing" || p.Snapshot != sid.String() || p.Tree != res.ID.String() || p.Blob != missing.String() || p.Path != "/ghost" {
		t.Fatalf("JSON problem: %v %+v", err, p)
	}
}

func TestCheckOrphanedPackIsHint(t *testing.T) {
	repoDir := newCheckRepo(t)
	r := openTestRepo(t, repoDir)
	w := pack.NewWriter(r.Key(), nil)
	plain := []byte("orphan")
	if err := w.Add(core.BlobHandle{ID: core.Hash(plain), Type: core.DataBlob}, r.Key().Seal(nil, plain), 0); err != nil {
		t.Fatal(err)
	}
	buf, id, err := w.Finalize()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Backend().Save(context.Background(), backend.Handle{Type: core.PackFile, Name: id.String()}, backend.NewByteReader(buf)); err != nil {
		t.Fatal(err)
	}
	out := mustCairn(t, "-r", repoDir, "check", "--read-data")
	for _, w := range []string{"pack " + id.String() + " is not referenced in any index", "prune", "no errors were found"} {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
	jout := mustCairn(t, "-r", repoDir, "check", "--json")
	var p checkProblemJSON
	if err := json.Unmarshal([]byte(strings.Split(jout, "\n")[0]), &p); err != nil || p.MessageType != "hint" || p.Kind != "orphaned_pack" || p.Pack != id.String() {
		t.Fatalf("JSON hint: %v %+v", err, p)
	}
}

// TestCheckInteropCairnRepo: a repository made by cairn passes both
// restic's and cairn's check --read-data.
func TestCheckInteropCairnRepo(t *testing.T) {
	testutil.RequireRestic(t)
	for _, version := range []string{"1", "2"} {
		t.Run("v"+version, func(t *testing.T) {
			cairnEnv(t)
			tmp := t.TempDir()
			src := filepath.Join(tmp, "src")
			testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 4, SkipNonUTF8LinkTargets: true})
			repoDir := filepath.Join(tmp, "repo")
			mustCairn(t, "-r", repoDir, "init", "--repository-version", version)
			mustCairn(t, "-r", repoDir, "backup", src)
			out := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data")
			if !strings.Contains(string(out), "no errors were found") {
				t.Fatalf("restic check: %s", out)
			}
			assertClean(t, repoDir, "--read-data")
		})
	}
}

// TestCheckInteropResticRepo: a repository made by restic passes cairn's
// check --read-data.
func TestCheckInteropResticRepo(t *testing.T) {
	testutil.RequireRestic(t)
	for _, version := range []string{"1", "2"} {
		t.Run("v"+version, func(t *testing.T) {
			cairnEnv(t)
			tmp := t.TempDir()
			src := filepath.Join(tmp, "src")
			testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 5, SkipNonUTF8LinkTargets: true})
			repoDir := filepath.Join(tmp, "repo")
			testutil.RunRestic(t, repoDir, testPassword, "init", "--repository-version", version)
			testutil.RunRestic(t, repoDir, testPassword, "backup", src)
			assertClean(t, repoDir, "--read-data")
		})
	}
}
