package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testutil"
)

func lsPaths(t *testing.T, out string) []string {
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var n struct {
			Path       string `json:"path"`
			StructType string `json:"struct_type"`
		}
		if json.Unmarshal([]byte(line), &n) == nil && n.StructType == "node" {
			paths = append(paths, n.Path)
		}
	}
	sort.Strings(paths)
	return paths
}

func TestBackupStdinDryRunSkip(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, "-r", repoDir, "backup", "--stdin-from-command", "--stdin-filename", "db/dump.sql", "--", "sh", "-c", "printf 'hello stdin'")
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", repoDir, "restore", "latest", "--target", dst)
	if b, _ := os.ReadFile(filepath.Join(dst, "db", "dump.sql")); string(b) != "hello stdin" {
		t.Fatalf("stdin content: %q", b)
	}
	// a failing command saves no snapshot
	if r := cairn(t, "-r", repoDir, "backup", "--stdin-from-command", "--", "sh", "-c", "echo partial; exit 3"); r.code == 0 {
		t.Fatal("failed command produced a snapshot")
	}
	if n := len(snapshotIDs(t, repoDir)); n != 1 {
		t.Fatalf("%d snapshots, want 1", n)
	}
	// dry run stores nothing
	src := filepath.Join(tmp, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "a"), []byte(strings.Repeat("data", 1000)), 0o644)
	before := dirListing(t, repoDir)
	out := mustCairn(t, "-r", repoDir, "backup", "--dry-run", "--json", src)
	if !strings.Contains(out, `"dry_run":true`) || !strings.Contains(out, `"files_new":1`) {
		t.Fatalf("dry run summary: %s", out)
	}
	if after := dirListing(t, repoDir); after != before {
		t.Fatal("dry run changed the repository")
	}
	// skip-if-unchanged (a relative path, so that the metadata of /tmp,
	// which other tests change all the time, is not part of the snapshot)
	t.Chdir(tmp)
	mustCairn(t, "-r", repoDir, "backup", "src")
	out = mustCairn(t, "-r", repoDir, "backup", "--skip-if-unchanged", "src")
	if !strings.Contains(out, "no new snapshot") {
		t.Fatalf("unchanged backup not skipped: %s", out)
	}
	if n := len(snapshotIDs(t, repoDir)); n != 2 {
		t.Fatalf("%d snapshots, want 2", n)
	}
}

func TestBackupIgnoreFilesAndFilesFrom(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	src := filepath.Join(tmp, "src")
	for _, p := range []string{"keep.txt", "build/out.o", "build/keep.me", "sub/x.log", "sub/y.txt", "sub/deep/z.log"} {
		os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(src, p), []byte(p), 0o644)
	}
	os.WriteFile(filepath.Join(src, ".ignore"), []byte("build/*\n!build/keep.me\n"), 0o644)
	os.WriteFile(filepath.Join(src, "sub", ".ignore"), []byte("*.log\n"), 0o644)
	mustCairn(t, "-r", repoDir, "backup", "--exclude-ignore-file", ".ignore", src)
	got := strings.Join(lsPaths(t, mustCairn(t, "-r", repoDir, "ls", "--json", "--recursive", "latest", src)), "\n")
	for _, want := range []string{"keep.txt", "build/keep.me", "sub/y.txt"} {
		if !strings.Contains(got, want) {
			t.Errorf("%s missing:\n%s", want, got)
		}
	}
	for _, bad := range []string{"out.o", "x.log", "z.log"} {
		if strings.Contains(got, bad) {
			t.Errorf("%s not ignored:\n%s", bad, got)
		}
	}
	// --files-from-verbatim and --files-from-raw
	list := filepath.Join(tmp, "list")
	os.WriteFile(list, []byte(filepath.Join(src, "keep.txt")+"\n"+filepath.Join(src, "sub", "y.txt")+"\n"), 0o644)
	mustCairn(t, "-r", repoDir, "backup", "--files-from-verbatim", list)
	raw := filepath.Join(tmp, "raw")
	os.WriteFile(raw, []byte(filepath.Join(src, "keep.txt")+"\x00"), 0o644)
	mustCairn(t, "-r", repoDir, "backup", "--files-from-raw", raw)
	got = strings.Join(lsPaths(t, mustCairn(t, "-r", repoDir, "ls", "--json", "latest")), "\n")
	if !strings.HasSuffix(got, filepath.Join(src, "keep.txt")) || strings.Contains(got, "y.txt") {
		t.Fatalf("files-from-raw snapshot: %s", got)
	}
}

// TestExcludesMatchRestic: the same exclude flags select the same files in
// cairn and restic.
func TestExcludesMatchRestic(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	testutil.GenerateTree(t, src, testutil.GenOptions{Seed: 5, SkipNonUTF8LinkTargets: true})
	os.WriteFile(filepath.Join(src, "CACHEDIR.TAG"), []byte("Signature: 8a477f597d28d172789f06886806bc55\n"), 0o644)
	excl := filepath.Join(tmp, "excludes")
	os.WriteFile(excl, []byte("# comment\n*.bin\n"), 0o644)
	flags := []string{"--exclude", "*.txt", "--iexclude", "*.DAT", "--exclude-file", excl, "--exclude-larger-than", "1M", "--exclude", "!keep*"}
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	mustCairn(t, append([]string{"-r", repoDir, "backup", "--host", "cairn"}, append(flags, src)...)...)
	testutil.RunRestic(t, repoDir, testPassword, append([]string{"backup", "--host", "restic"}, append(flags, src)...)...)
	var snaps []snapshotJSON
	json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "snapshots", "--json")), &snaps)
	if len(snaps) != 2 {
		t.Fatalf("want 2 snapshots, got %d", len(snaps))
	}
	a := lsPaths(t, mustCairn(t, "-r", repoDir, "ls", "--json", snaps[0].ID))
	b := lsPaths(t, mustCairn(t, "-r", repoDir, "ls", "--json", snaps[1].ID))
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("selected files differ:\n%s: %v\n%s: %v", snaps[0].Hostname, a, snaps[1].Hostname, b)
	}
}

// TestBackupStdinFromCommandStopsOnError: when the backup fails while the
// command still writes (here: the first pack upload fails), the command is
// cut off and cairn exits with the backup's error instead of waiting
// forever for a command that blocks on a full pipe.
func TestBackupStdinFromCommandStopsOnError(t *testing.T) {
	cairnEnv(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "-r", repoDir, "init")
	code, out, hung := runWithDeadline(t, 60*time.Second, []string{"CAIRN_FAILPOINTS=backup.before-pack-upload=error"},
		"-r", repoDir, "backup", "--stdin-from-command", "--", "cat", "/dev/urandom")
	if hung {
		t.Fatalf("backup --stdin-from-command hung after a failed upload: %s", out)
	}
	if code == 0 || !strings.Contains(out, "backup.before-pack-upload") {
		t.Fatalf("want a failed backup naming the failpoint, got exit %d: %s", code, out)
	}
	if n := len(snapshotIDs(t, repoDir)); n != 0 {
		t.Fatalf("%d snapshots after a failed backup", n)
	}
}
