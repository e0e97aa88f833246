package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo"
)

type unlockJSON struct {
	Removed []string `json:"removed"`
	Pending []struct {
		ID        string `json:"id"`
		Hostname  string `json:"hostname"`
		Remaining int64  `json:"remaining_seconds"`
	} `json:"pending"`
}

func unlockRun(t *testing.T, args ...string) unlockJSON {
	t.Helper()
	out := mustCairn(t, append([]string{"--json"}, args...)...)
	var u unlockJSON
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &u); err != nil {
		t.Fatalf("unlock --json output %q: %v", out, err)
	}
	return u
}

// TestUnlockOverRESTJudgesBySightings (F1, H03): over REST the backend
// reports no file times and a lock's time stamp comes from its writer's
// clock. A lock that is old by its time stamp is reported, not removed, the
// first time; once this host has seen the same lock file for longer than the
// staleness bound (remembered in the cache directory across runs) the next
// unlock removes it; --wait watches and removes it in one run; with
// --no-cache and no --wait nothing remembers, so it is never removed by age.
func TestUnlockOverRESTJudgesBySightings(t *testing.T) {
	cairnEnv(t)
	t.Setenv("CAIRN_LOCK_STALE_AFTER", "2s")
	dir := t.TempDir()
	srv := startInProcServer(t, dir)
	url := "rest:" + srv.URL + "/r/"
	mustCairn(t, "-r", url, "init")
	local := openTestRepo(t, filepath.Join(dir, "r"))
	ctx := context.Background()
	lock := func() string {
		t.Helper()
		li := repo.LockInfo{Time: time.Now().Add(-time.Hour), Hostname: "elsewhere", Username: "u", PID: 4242}
		id, err := local.SaveJSONUnpacked(ctx, core.LockFile, li)
		if err != nil {
			t.Fatal(err)
		}
		return id.String()
	}

	// 1. first sight: reported, not removed
	id := lock()
	u := unlockRun(t, "-r", url, "unlock")
	if len(u.Removed) != 0 || len(u.Pending) != 1 || u.Pending[0].ID != id || u.Pending[0].Hostname != "elsewhere" {
		t.Fatalf("first unlock: %+v", u)
	}
	text := mustCairn(t, "-r", url, "unlock")
	if !strings.Contains(text, "removed 0 locks") || !strings.Contains(text, "has seen it for") {
		t.Fatalf("text output: %q", text)
	}
	// 2. seen for longer than the bound (2s): a later run removes it
	time.Sleep(2500 * time.Millisecond)
	if u = unlockRun(t, "-r", url, "unlock"); len(u.Removed) != 1 || u.Removed[0] != id || len(u.Pending) != 0 {
		t.Fatalf("unlock after the bound: %+v", u)
	}

	// 3. --no-cache: no memory between runs, never removed by age
	id = lock()
	for range 2 {
		if u = unlockRun(t, "--no-cache", "-r", url, "unlock"); len(u.Removed) != 0 || len(u.Pending) != 1 {
			t.Fatalf("--no-cache unlock: %+v", u)
		}
		time.Sleep(1500 * time.Millisecond)
	}
	// 4. --wait (here without a cache) watches until the lock is stale
	if u = unlockRun(t, "--no-cache", "-r", url, "unlock", "--wait", "1m"); len(u.Removed) != 1 || u.Removed[0] != id || len(u.Pending) != 0 {
		t.Fatalf("unlock --wait: %+v", u)
	}
	// 5. --wait shorter than the time left gives up and reports the lock
	id = lock()
	if u = unlockRun(t, "--no-cache", "-r", url, "unlock", "--wait", "500ms"); len(u.Removed) != 0 || len(u.Pending) != 1 || u.Pending[0].ID != id {
		t.Fatalf("short --wait: %+v", u)
	}
	// 6. --remove-all removes it at once
	if u = unlockRun(t, "-r", url, "unlock", "--remove-all"); len(u.Removed) != 1 || u.Removed[0] != id {
		t.Fatalf("--remove-all: %+v", u)
	}

	// 7. other commands that list locks record sightings too: a lock seen
	// by a backup (non-exclusive, so it runs beside the old shared lock)
	// more than the bound ago is removed by the first unlock
	id = lock()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, "-r", url, "backup", src)
	time.Sleep(2500 * time.Millisecond)
	if u = unlockRun(t, "-r", url, "unlock"); len(u.Removed) != 1 || u.Removed[0] != id || len(u.Pending) != 0 {
		t.Fatalf("unlock after a backup saw the lock: %+v", u)
	}
}

// TestUnlockLocalJudgesByFileTime: on a local repository the lock file's
// modification time is its age, found through the decorators the command
// line puts around the backend (cache, limiter): a lock that is old by its
// time stamp and by its file time is removed by the first unlock, one that
// is old by its time stamp only is left pending.
func TestUnlockLocalJudgesByFileTime(t *testing.T) {
	cairnEnv(t)
	dir := filepath.Join(t.TempDir(), "r")
	mustCairn(t, "-r", dir, "init")
	r := openTestRepo(t, dir)
	ctx := context.Background()
	lock := func(fileAge time.Duration) string {
		t.Helper()
		li := repo.LockInfo{Time: time.Now().Add(-time.Hour), Hostname: "elsewhere", Username: "u", PID: 4242}
		id, err := r.SaveJSONUnpacked(ctx, core.LockFile, li)
		if err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-fileAge)
		if err := os.Chtimes(filepath.Join(dir, "locks", id.String()), mt, mt); err != nil {
			t.Fatal(err)
		}
		return id.String()
	}
	for _, extra := range [][]string{nil, {"--limit-upload", "100000"}} { // with a limiter around the backend
		old, young := lock(time.Hour), lock(time.Minute)
		u := unlockRun(t, append(extra, "-r", dir, "unlock")...)
		if len(u.Removed) != 1 || u.Removed[0] != old {
			t.Fatalf("%v: removed %v, want only %s (old by time stamp and file time)", extra, u.Removed, old)
		}
		if len(u.Pending) != 1 || u.Pending[0].ID != young {
			t.Fatalf("%v: pending %+v, want %s (file one minute old)", extra, u.Pending, young)
		}
		mustCairn(t, "-r", dir, "unlock", "--remove-all")
	}
}
