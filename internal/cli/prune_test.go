package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// makeHistory creates n snapshots of a changing tree with given times.
func makeHistory(t *testing.T, repoDir, src string, times []time.Time, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 7))
	os.MkdirAll(src, 0o755)
	for i, tm := range times {
		// each snapshot adds one file and rewrites another, so data goes
		// unused when older snapshots are forgotten
		buf := make([]byte, 200<<10+rnd.IntN(600<<10))
		for j := range buf {
			buf[j] = byte(rnd.Uint32())
		}
		os.WriteFile(filepath.Join(src, fmt.Sprintf("new%02d", i)), buf, 0o644)
		os.WriteFile(filepath.Join(src, "changing"), buf[:len(buf)/2], 0o644)
		host := "alpha"
		if i%4 == 3 {
			host = "beta"
		}
		mustCairn(t, "-r", repoDir, "backup", "-q", "--host", host, "--tag", fmt.Sprintf("t%d", i%3), "--time", tm.Format("2006-01-02 15:04:05"), src)
	}
}

func snapshotIDs(t *testing.T, repoDir string) []string {
	var snaps []snapshotJSON
	if err := json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "snapshots", "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	sort.Strings(ids)
	return ids
}

func historyTimes(n int) []time.Time {
	base := time.Date(2024, 1, 1, 10, 0, 0, 0, time.Local)
	var out []time.Time
	for i := 0; i < n; i++ {
		out = append(out, base.Add(time.Duration(i)*37*time.Hour))
	}
	out = append(out, out[len(out)-1]) // two snapshots with equal times
	return out
}

// TestForgetPruneInterop: cairn forget --prune keeps exactly what restic's
// forget keeps, and leaves a repository restic checks clean, with every
// remaining snapshot restorable by both tools.
func TestForgetPruneInterop(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	src := filepath.Join(tmp, "src")
	mustCairn(t, "-r", repoDir, "init")
	makeHistory(t, repoDir, src, historyTimes(12), 1)
	policy := []string{"--keep-last", "2", "--keep-weekly", "2", "--keep-monthly", "1", "--keep-tag", "t2"}
	// what restic would keep
	out := testutil.RunRestic(t, repoDir, testPassword, append([]string{"forget", "--dry-run", "--json"}, policy...)...)
	var groups []struct {
		Keep []struct {
			ID string `json:"id"`
		} `json:"keep"`
	}
	if err := json.Unmarshal(out, &groups); err != nil {
		t.Fatalf("restic forget --json: %v\n%s", err, out)
	}
	var want []string
	for _, g := range groups {
		for _, k := range g.Keep {
			want = append(want, k.ID)
		}
	}
	sort.Strings(want)
	mustCairn(t, append([]string{"-r", repoDir, "forget", "--prune", "--keep-delete", "0", "--max-unused", "0%"}, policy...)...)
	got := snapshotIDs(t, repoDir)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("kept snapshots differ:\nrestic: %v\ncairn:  %v", want, got)
	}
	if out := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data"); !strings.Contains(string(out), "no errors were found") {
		t.Fatalf("restic check: %s", out)
	}
	for _, id := range got {
		dst := filepath.Join(tmp, "r-"+id[:8])
		mustCairn(t, "-r", repoDir, "restore", id, "--target", dst, "--verify")
		testutil.RunRestic(t, repoDir, testPassword, "restore", id, "--target", dst+"-restic")
		testutil.CompareTrees(t, dst, dst+"-restic", testutil.CompareOptions{IgnoreRoot: true})
	}
	// nothing left to free: a second prune deletes nothing
	out2 := mustCairn(t, "-r", repoDir, "prune", "--keep-delete", "0", "--max-unused", "0%", "--json")
	if strings.Contains(out2, `"packs_removed":1`) {
		t.Fatalf("second prune still found work: %s", out2)
	}
}

// TestTwoPhasePruneRecoversReusedPack: a pack marked for deletion that a
// new snapshot uses again is recovered, not deleted.
func TestTwoPhasePruneRecoversReusedPack(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	src := filepath.Join(tmp, "src")
	os.MkdirAll(src, 0o755)
	mustCairn(t, "-r", repoDir, "init")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 31 >> 3)
	}
	os.WriteFile(filepath.Join(src, "f"), data, 0o644)
	mustCairn(t, "-r", repoDir, "backup", "-q", src)
	os.Remove(filepath.Join(src, "f"))
	mustCairn(t, "-r", repoDir, "backup", "-q", src)
	ids := snapshotIDs(t, repoDir)
	var first string
	for _, id := range ids {
		out := mustCairn(t, "-r", repoDir, "ls", id)
		if strings.Contains(out, "/f\n") {
			first = id
		}
	}
	mustCairn(t, "-r", repoDir, "forget", first)
	// mark only (the long grace period keeps the sweep from deleting)
	out := mustCairn(t, "-r", repoDir, "prune", "--json", "--max-unused", "0%")
	if first := strings.SplitN(out, "\n", 2)[0]; !strings.Contains(first, `"mode":"mark"`) || strings.Contains(first, `"packs_marked":0`) {
		t.Fatalf("nothing marked: %s", out)
	}
	// the file comes back: the new backup dedups against the marked pack
	os.WriteFile(filepath.Join(src, "f"), data, 0o644)
	mustCairn(t, "-r", repoDir, "backup", "-q", src)
	out = mustCairn(t, "-r", repoDir, "prune", "--json", "--keep-delete", "0", "--max-unused", "0%")
	var mark struct {
		PacksRecovered int `json:"packs_recovered"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &mark); err != nil || mark.PacksRecovered == 0 {
		t.Fatalf("marked pack not recovered: %s", out)
	}
	dst := filepath.Join(tmp, "dst")
	mustCairn(t, "-r", repoDir, "restore", "latest", "--target", dst, "--verify")
	got, _ := os.ReadFile(filepath.Join(dst, src, "f"))
	if len(got) != len(data) {
		t.Fatal("reused data lost")
	}
}

// TestPruneCrashPoints kills prune at every failpoint of the prune path (then
// at seeded ones, with seeded hit counts and phases); afterwards the
// repository is consistent for cairn and restic, every snapshot restores,
// and a second prune completes the job.
func TestPruneCrashPoints(t *testing.T) {
	cairnEnv(t)
	points := []string{
		"prune.after-repack", "prune.index-write", "prune.after-new-index", "prune.before-index-delete",
		"prune.index-delete", "prune.before-orphan-delete", "prune.before-pack-delete", "prune.pack-delete",
		"backup.after-pack-upload", "backup.before-pack-upload", "backup.after-index-upload",
	}
	n := 20
	if os.Getenv("CAIRN_STRESS_LONG") != "" {
		n = 200
	}
	rnd := rand.New(rand.NewPCG(2026, 11))
	hasRestic := testutil.InCI()
	if _, err := os.Stat("/usr/bin/restic"); err == nil {
		hasRestic = true
	}
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base")
	src := filepath.Join(tmp, "src")
	mustCairn(t, "-r", base, "init")
	makeHistory(t, base, src, historyTimes(6), 3)
	for i := 0; i < n; i++ {
		point := points[rnd.IntN(len(points))]
		hit := 1 + rnd.IntN(3)
		if i < len(points) { // every point at its first hit, then seeded picks
			point, hit = points[i], 1
		}
		exclusive := rnd.IntN(2) == 0 || point == "prune.before-orphan-delete" // that one fires only there
		name := fmt.Sprintf("%02d-%s@%d-excl=%v", i, point, hit, exclusive)
		t.Run(name, func(t *testing.T) {
			repoDir := filepath.Join(tmp, fmt.Sprintf("r%02d", i))
			if err := os.CopyFS(repoDir, os.DirFS(base)); err != nil {
				t.Fatal(err)
			}
			before := snapshotIDs(t, repoDir)
			args := []string{"-r", repoDir, "forget", "--keep-last", "2", "--prune", "--keep-delete", "0", "--max-unused", "0%"}
			if exclusive {
				args = append(args, "--exclusive")
			}
			code, out := runProcess(t, []string{"CAIRN_FAILPOINTS=" + point + "=kill@" + fmt.Sprint(hit)}, args...)
			t.Logf("killed run: exit %d: %s", code, out)
			// locks of the killed process are stale (dead PID on this host)
			mustCairn(t, "-r", repoDir, "unlock")
			after := snapshotIDs(t, repoDir)
			if len(after) < 2 || len(after) > len(before) {
				t.Fatalf("snapshots: before %d, after %d", len(before), len(after))
			}
			for _, id := range after {
				mustCairn(t, "-r", repoDir, "restore", id, "--target", filepath.Join(tmp, "x", name, id[:8]), "--verify")
			}
			if hasRestic {
				if out := testutil.RunRestic(t, repoDir, testPassword, "check"); !strings.Contains(string(out), "no errors were found") {
					t.Fatalf("restic check after crash: %s", out)
				}
			}
			// a second prune completes the job
			mustCairn(t, args...)
			for _, id := range snapshotIDs(t, repoDir) {
				mustCairn(t, "-r", repoDir, "restore", id, "--target", filepath.Join(tmp, "y", name, id[:8]), "--verify")
			}
			if hasRestic {
				if out := testutil.RunRestic(t, repoDir, testPassword, "check", "--read-data"); !strings.Contains(string(out), "no errors were found") {
					t.Fatalf("restic check after second prune: %s", out)
				}
			}
			os.RemoveAll(filepath.Join(tmp, "x", name))
			os.RemoveAll(filepath.Join(tmp, "y", name))
		})
	}
}
