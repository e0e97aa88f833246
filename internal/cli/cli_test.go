package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

const testPassword = "correct horse battery staple"

// cairnEnv prepares the environment for in-process cairn runs: cheap key
// derivation and a password.
func cairnEnv(t *testing.T) {
	t.Setenv("CAIRN_KDF_PARAMS", "1024,1,1")
	t.Setenv("CAIRN_CACHE_DIR", t.TempDir())
	t.Setenv("CAIRN_PASSWORD", testPassword)
	t.Setenv("CAIRN_REPOSITORY", "")
	t.Setenv("RESTIC_PASSWORD", "")
	t.Setenv("RESTIC_REPOSITORY", "")
}

type result struct {
	code   int
	stdout string
	stderr string
}

// cairn runs the command line in-process.
func cairn(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func mustCairn(t *testing.T, args ...string) string {
	t.Helper()
	r := cairn(t, args...)
	if r.code != 0 {
		t.Fatalf("cairn %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func restoreCompare() testutil.CompareOptions {
	return testutil.CompareOptions{IgnoreRoot: true, CheckSparse: true}
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 1})
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	out := mustCairn(t, "-r", repoDir, "backup", "--json", src)
	var summary backupSummaryJSON
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &summary); err != nil || summary.MessageType != "summary" {
		t.Fatalf("no JSON summary: %v\n%s", err, out)
	}
	if summary.FilesNew == 0 || summary.SnapshotID == "" {
		t.Fatalf("summary: %+v", summary)
	}
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", repoDir, "restore", "latest", "--target", dst, "--verify")
	testutil.CompareTrees(t, src, filepath.Join(dst, src), restoreCompare())
	dst2 := filepath.Join(tmp, "dst-direct")
	mustCairn(t, "-r", repoDir, "restore", "latest", "--target", dst2, "--verify", "--direct-io")
	testutil.CompareTrees(t, src, filepath.Join(dst2, src), restoreCompare())
	if r := cairn(t, "-r", repoDir, "restore", "latest", "--target", filepath.Join(tmp, "dst-x"), "--direct-io=maybe"); r.code == 0 || !strings.Contains(r.stderr, "want auto, on or off") {
		t.Fatalf("--direct-io=maybe: exit %d, stderr %q", r.code, r.stderr)
	}

	// an unchanged second backup reads nothing again and adds no data
	out = mustCairn(t, "-r", repoDir, "backup", "--json", src)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	var s2 backupSummaryJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s2); err != nil {
		t.Fatal(err)
	}
	// (the directories above src change: the repository lives beside it)
	if s2.FilesNew != 0 || s2.FilesChanged != 0 || s2.DataBlobs != 0 || s2.FilesUnmodified != summary.FilesNew {
		t.Fatalf("second backup not incremental: %+v", s2)
	}

	// snapshots --json lists both, ls --json lists nodes
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "snapshots", "--json")), &snaps); err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots --json: %v %v", err, snaps)
	}
	ls := mustCairn(t, "-r", repoDir, "ls", "--json", "latest")
	if !strings.Contains(ls, `"struct_type":"snapshot"`) || !strings.Contains(ls, `"struct_type":"node"`) {
		t.Fatalf("ls --json: %s", ls)
	}
}

func TestWrongPassword(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	before := dirListing(t, repoDir)
	t.Setenv("CAIRN_PASSWORD", "wrong")
	r := cairn(t, "-r", repoDir, "backup", tmp)
	if r.code != ExitWrongPass || !strings.Contains(r.stderr, "wrong password") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if after := dirListing(t, repoDir); after != before {
		t.Fatalf("repository changed after a wrong password:\n%s\n---\n%s", before, after)
	}
	r = cairn(t, "-r", filepath.Join(tmp, "nope"), "snapshots")
	if r.code != ExitNoRepository {
		t.Fatalf("missing repository: exit %d %s", r.code, r.stderr)
	}
}

func dirListing(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b.WriteString(p + "\n")
		}
		return nil
	})
	return b.String()
}

func TestDamagedPackRestore(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	os.MkdirAll(src, 0o755)
	// two files in different packs: pack size is at least 4 MiB, so big
	// random files land in their own packs
	for _, n := range []string{"a", "b", "c"} {
		buf := make([]byte, 5<<20)
		for i := range buf {
			buf[i] = byte(i*7+len(n)) ^ byte(i>>13) ^ n[0]
		}
		os.WriteFile(filepath.Join(src, n), buf, 0o644)
	}
	os.WriteFile(filepath.Join(src, "small"), []byte("small file"), 0o644)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init", "--repository-version", "1")
	mustCairn(t, "-r", repoDir, "--pack-size", "4", "backup", src)
	// damage one data pack
	var packs []string
	filepath.Walk(filepath.Join(repoDir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			packs = append(packs, p)
		}
		return nil
	})
	if len(packs) < 3 {
		t.Fatalf("expected several packs, got %d", len(packs))
	}
	var victim string
	for _, p := range packs {
		fi, _ := os.Stat(p)
		if fi.Size() > 1<<20 {
			victim = p
			break
		}
	}
	os.Chmod(victim, 0o600)
	f, _ := os.OpenFile(victim, os.O_RDWR, 0)
	f.WriteAt([]byte("garbage!"), 100)
	f.Close()
	dst := filepath.Join(tmp, "dst")
	r := cairn(t, "-r", repoDir, "restore", "latest", "--target", dst)
	if r.code == 0 {
		t.Fatal("restore of a damaged repository exited 0")
	}
	named := 0
	for _, n := range []string{"a", "b", "c"} {
		p := filepath.Join(dst, src, n)
		if strings.Contains(r.stderr, p) {
			named++
			continue
		}
		want, _ := os.ReadFile(filepath.Join(src, n))
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(want, got) {
			t.Errorf("%s neither restored nor reported", n)
		}
	}
	if named == 0 {
		t.Fatalf("no damaged file named:\n%s", r.stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, src, "small")); string(got) != "small file" {
		t.Fatal("undamaged file not restored")
	}
}

func TestInitCopyChunkerParams(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	mustCairn(t, "-r", a, "init")
	t.Setenv("CAIRN_FROM_PASSWORD", testPassword)
	t.Setenv("CAIRN_PASSWORD", "another password")
	mustCairn(t, "-r", b, "init", "--copy-chunker-params", "--from-repo", a)
	var ca, cb struct {
		Poly string `json:"chunker_polynomial"`
		ID   string `json:"id"`
	}
	t.Setenv("CAIRN_PASSWORD", testPassword)
	json.Unmarshal([]byte(mustCairn(t, "-r", a, "cat", "config")), &ca)
	t.Setenv("CAIRN_PASSWORD", "another password")
	json.Unmarshal([]byte(mustCairn(t, "-r", b, "cat", "config")), &cb)
	if ca.Poly == "" || ca.Poly != cb.Poly || ca.ID == cb.ID {
		t.Fatalf("configs: %+v %+v", ca, cb)
	}
}
