package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

const otherPassword = "a different password"

func cairnSnapshots(t *testing.T, repoDir string) []snapshotJSON {
	t.Helper()
	var list []snapshotJSON
	if err := json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "snapshots", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

func writePasswordFile(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCopyBetweenCairnRepos copies from a v2 into a v1 repository with
// another password: snapshot filters, skipping copies, original/parent,
// and the restored data.
func TestCopyBetweenCairnRepos(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 21, SkipSparse: true})
	from := filepath.Join(tmp, "from")
	mustCairn(t, "-r", from, "init")
	mustCairn(t, "-r", from, "backup", "-q", "--tag", "first", src)
	mutateSource(t, src)
	mustCairn(t, "-r", from, "backup", "-q", "--tag", "second", src)
	fromSnaps := cairnSnapshots(t, from)
	if len(fromSnaps) != 2 || fromSnaps[1].Parent == nil {
		t.Fatalf("source snapshots: %+v", fromSnaps)
	}
	fromPW := writePasswordFile(t, testPassword)

	to := filepath.Join(tmp, "to")
	t.Setenv("CAIRN_PASSWORD", otherPassword)
	mustCairn(t, "-r", to, "init", "--repository-version", "1")

	// only the snapshot tagged "second"
	out := mustCairn(t, "-r", to, "copy", "--from-repo", from, "--from-password-file", fromPW, "--tag", "second")
	if !strings.Contains(out, "copied 1 of 1 snapshots") {
		t.Fatalf("copy --tag second:\n%s", out)
	}
	toSnaps := cairnSnapshots(t, to)
	if len(toSnaps) != 1 {
		t.Fatalf("destination: %+v", toSnaps)
	}
	c := toSnaps[0]
	if c.Original == nil || c.Original.String() != fromSnaps[1].ID || c.Parent != nil || *c.Tree != *fromSnaps[1].Tree ||
		!c.Time.Equal(fromSnaps[1].Time) || c.HasTags([]string{"first"}) {
		t.Fatalf("copy: %+v\nof: %+v", c, fromSnaps[1])
	}

	// the rest, with the source given by the environment
	t.Setenv("CAIRN_FROM_REPOSITORY", from)
	t.Setenv("CAIRN_FROM_PASSWORD_FILE", fromPW)
	out = mustCairn(t, "-r", to, "copy")
	if !strings.Contains(out, "copied 1 of 2 snapshots") {
		t.Fatalf("second copy:\n%s", out)
	}
	out = mustCairn(t, "-r", to, "copy", "-v")
	if !strings.Contains(out, "copied 0 of 2 snapshots") || strings.Count(out, "was already copied") != 2 {
		t.Fatalf("third copy:\n%s", out)
	}
	if n := len(cairnSnapshots(t, to)); n != 2 {
		t.Fatalf("destination holds %d snapshots", n)
	}

	// the copy is complete and readable with the destination's key alone
	mustCairn(t, "-r", to, "check", "--read-data")
	dst := filepath.Join(tmp, "restored")
	mustCairn(t, "-r", to, "restore", c.ID, "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), testutil.CompareOptions{IgnoreRoot: true})

	// a wrong source password fails cleanly
	t.Setenv("CAIRN_FROM_PASSWORD_FILE", writePasswordFile(t, "wrong"))
	if r := cairn(t, "-r", to, "copy"); r.code != ExitWrongPass {
		t.Fatalf("copy with a wrong source password: exit %d %s", r.code, r.stderr)
	}
	t.Setenv("CAIRN_FROM_REPOSITORY", "")
	if r := cairn(t, "-r", to, "copy"); r.code == 0 || !strings.Contains(r.stderr, "no source repository") {
		t.Fatalf("copy without a source: exit %d %s", r.code, r.stderr)
	}
}

// TestCopyResticInterop copies a restic repository's snapshot into a cairn
// repository and from there into another restic-made repository, which
// restic then checks (reading all data), restores, and recognises as a
// copy of the first.
func TestCopyResticInterop(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 22, SkipSparse: true, SkipNonUTF8LinkTargets: true})
	a := filepath.Join(tmp, "a")
	newResticRepo(t, a)
	testutil.RunRestic(t, a, testPassword, "backup", "--tag", "orig", src)
	aIDs := resticSnapshotIDs(t, a, testPassword)

	// restic -> cairn (another key, another chunker polynomial)
	b := filepath.Join(tmp, "b")
	t.Setenv("CAIRN_PASSWORD", otherPassword)
	mustCairn(t, "-r", b, "init")
	aPW := writePasswordFile(t, testPassword)
	mustCairn(t, "-r", b, "copy", "--from-repo", a, "--from-password-file", aPW)
	if out := testutil.RunRestic(t, b, otherPassword, "check", "--read-data"); !strings.Contains(string(out), "no errors were found") {
		t.Fatalf("restic check of the cairn copy: %s", out)
	}

	// cairn -> restic
	c := filepath.Join(tmp, "c")
	newResticRepo(t, c)
	t.Setenv("CAIRN_PASSWORD", testPassword)
	bPW := writePasswordFile(t, otherPassword)
	mustCairn(t, "-r", c, "copy", "--from-repo", b, "--from-password-file", bPW)
	if out := testutil.RunRestic(t, c, testPassword, "check", "--read-data"); !strings.Contains(string(out), "no errors were found") {
		t.Fatalf("restic check after cairn copy: %s", out)
	}
	cSnaps := cairnSnapshots(t, c)
	if len(cSnaps) != 1 || cSnaps[0].Original == nil || cSnaps[0].Original.String() != aIDs[0] || !cSnaps[0].HasTags([]string{"orig"}) {
		t.Fatalf("copied snapshot: %+v (source %s)", cSnaps, aIDs[0])
	}
	dst := filepath.Join(tmp, "restored")
	testutil.RunRestic(t, c, testPassword, "restore", "latest", "--target", dst)
	testutil.CompareTrees(t, src, filepath.Join(dst, src), resticCompare())

	// restic sees that c already holds a copy of a's snapshot
	cmd := testutil.ResticCommand(t, c, testPassword, "copy", "--from-repo", a)
	cmd.Env = append(cmd.Env, "RESTIC_FROM_PASSWORD="+testPassword)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "skipping source snapshot") {
		t.Fatalf("restic copy a -> c: %v\n%s", err, out)
	}
	if n := len(cairnSnapshots(t, c)); n != 1 {
		t.Fatalf("restic copied again: %d snapshots", n)
	}
}

// TestCopyDamagedSourceFails: a source blob that cannot be read fails the
// copy, and no snapshot is written for it.
func TestCopyDamagedSourceFails(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	os.MkdirAll(src, 0o755)
	buf := make([]byte, 2<<20)
	for i := range buf {
		buf[i] = byte(i*31) ^ byte(i>>11)
	}
	os.WriteFile(filepath.Join(src, "big"), buf, 0o644)
	from := filepath.Join(tmp, "from")
	mustCairn(t, "-r", from, "init", "--repository-version", "1")
	mustCairn(t, "-r", from, "backup", "-q", src)
	// damage the largest pack (the data pack)
	var victim string
	var size int64
	filepath.Walk(filepath.Join(from, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && fi.Size() > size {
			victim, size = p, fi.Size()
		}
		return nil
	})
	os.Chmod(victim, 0o600)
	f, err := os.OpenFile(victim, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("damage"), size/2)
	f.Close()
	to := filepath.Join(tmp, "to")
	mustCairn(t, "-r", to, "init")
	t.Setenv("CAIRN_FROM_PASSWORD", testPassword)
	r := cairn(t, "-r", to, "copy", "--from-repo", from)
	if r.code == 0 {
		t.Fatalf("copy of a damaged snapshot succeeded:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "invalid data") {
		t.Fatalf("copy failed for another reason: %s", r.stderr)
	}
	if n := len(cairnSnapshots(t, to)); n != 0 {
		t.Fatalf("destination has %d snapshots after a failed copy", n)
	}
}
