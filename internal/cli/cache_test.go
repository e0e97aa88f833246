package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/cache"
	"github.com/cairn-backup/cairn/internal/testutil"
)

// cacheFiles lists the cache entries (relative paths) below dir/<repo>/.
func cacheFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out[filepath.ToSlash(rel)] = p
		}
		return nil
	})
	return out
}

func countPrefix(files map[string]string, repoID, typ string) int {
	n := 0
	for rel := range files {
		if strings.HasPrefix(rel, repoID+"/"+typ+"/") {
			n++
		}
	}
	return n
}

// writeSmallTree writes a few directories of small files (many trees, little
// data) below dir; variant changes one file's content.
func writeSmallTree(t *testing.T, dir string, variant int) {
	t.Helper()
	if err := makeSmallTree(dir, variant); err != nil {
		t.Fatal(err)
	}
}

func makeSmallTree(dir string, variant int) error {
	for d := 0; d < 4; d++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", d), "sub")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		for f := 0; f < 3; f++ {
			content := fmt.Sprintf("file %d in %d of %s\n", f, d, filepath.Base(dir))
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", f)), []byte(content), 0o644); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, "changing"), []byte(fmt.Sprintf("variant %d\n", variant)), 0o644)
}

// runChild runs cairn as a child process; unlike runProcess it may be
// called from any goroutine.
func runChild(t *testing.T, env []string, args ...string) (int, string) {
	out, err := cairnProcess(t, env, args...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		return -1, fmt.Sprintf("run: %v\n%s", err, out)
	}
	return 0, string(out)
}

func repoIDOf(t *testing.T, repoDir string) string {
	t.Helper()
	var cfg struct {
		ID string `json:"id"`
	}
	out := mustCairn(t, "-r", repoDir, "--no-cache", "cat", "config")
	if err := json.Unmarshal([]byte(out), &cfg); err != nil || !cache.IsRepoDirName(cfg.ID) {
		t.Fatalf("cat config: %v %q", err, out)
	}
	return cfg.ID
}

func TestCacheLayoutAndCommand(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	writeSmallTree(t, src, 0)
	repoDir := filepath.Join(tmp, "repo")
	cacheDir := filepath.Join(tmp, "cache")
	t.Setenv("CAIRN_CACHE_DIR", filepath.Join(tmp, "env-cache"))

	mustCairn(t, "-r", repoDir, "init")
	id := repoIDOf(t, repoDir)
	mustCairn(t, "-r", repoDir, "--no-cache", "backup", src)
	if _, err := os.Stat(filepath.Join(tmp, "env-cache")); !os.IsNotExist(err) {
		t.Fatalf("--no-cache created a cache: %v", err)
	}
	mustCairn(t, "-r", repoDir, "--cache-dir", cacheDir, "backup", src)

	// Saved index and snapshot files are cached; packs are not yet.
	files := cacheFiles(t, cacheDir)
	if _, ok := files["CACHEDIR.TAG"]; !ok {
		t.Fatalf("no CACHEDIR.TAG: %v", files)
	}
	if _, ok := files[id+"/version"]; !ok {
		t.Fatalf("no version file: %v", files)
	}
	if countPrefix(files, id, "snapshots") == 0 || countPrefix(files, id, "index") == 0 {
		t.Fatalf("index and snapshots not cached: %v", files)
	}
	// ls reads trees: their packs get cached, data packs do not.
	mustCairn(t, "-r", repoDir, "--cache-dir", cacheDir, "ls", "latest")
	files = cacheFiles(t, cacheDir)
	nData := countPrefix(files, id, "data")
	if nData == 0 {
		t.Fatalf("tree packs not cached: %v", files)
	}
	repoPacks := cacheFiles(t, filepath.Join(repoDir, "data"))
	if nData >= len(repoPacks) {
		t.Fatalf("%d of %d packs cached: data packs cached too", nData, len(repoPacks))
	}
	for rel, p := range files {
		if !strings.HasPrefix(rel, id+"/data/") && !strings.HasPrefix(rel, id+"/index/") && !strings.HasPrefix(rel, id+"/snapshots/") {
			continue
		}
		parts := strings.Split(rel, "/")
		repoFile := filepath.Join(repoDir, parts[1], parts[3])
		if parts[1] == "data" {
			repoFile = filepath.Join(repoDir, "data", parts[2], parts[3])
		}
		want, err := os.ReadFile(repoFile)
		if err != nil {
			t.Fatalf("cached %s: %v", rel, err)
		}
		got, _ := os.ReadFile(p)
		if string(got) != string(want) || parts[2] != parts[3][:2] {
			t.Fatalf("cached %s is not a byte copy of %s", rel, repoFile)
		}
	}

	// The default directory comes from CAIRN_CACHE_DIR.
	mustCairn(t, "-r", repoDir, "snapshots")
	if _, err := os.Stat(filepath.Join(tmp, "env-cache", id, "version")); err != nil {
		t.Fatal(err)
	}

	// cache lists directories, with sizes
	other := strings.Repeat("0", 64)
	if err := os.MkdirAll(filepath.Join(cacheDir, other, "index"), 0o700); err != nil {
		t.Fatal(err)
	}
	var dirs []cacheDirJSON
	out := mustCairn(t, "--cache-dir", cacheDir, "cache", "--json")
	if err := json.Unmarshal([]byte(out), &dirs); err != nil || len(dirs) != 2 {
		t.Fatalf("cache --json: %v %s", err, out)
	}
	if dirs[1].ID != id || dirs[1].Size == nil || *dirs[1].Size == 0 || dirs[1].Old {
		t.Fatalf("cache --json: %+v", dirs[1])
	}
	out = mustCairn(t, "--cache-dir", cacheDir, "cache", "--json", "--no-size")
	if strings.Contains(out, `"size"`) {
		t.Fatalf("--no-size: %s", out)
	}
	out = mustCairn(t, "--cache-dir", cacheDir, "cache")
	if !strings.Contains(out, id[:10]) || !strings.Contains(out, "2 cache directories") {
		t.Fatalf("cache: %s", out)
	}

	// --cleanup removes old directories only, and is idempotent
	old := time.Now().Add(-31 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(cacheDir, other), old, old); err != nil {
		t.Fatal(err)
	}
	out = mustCairn(t, "--cache-dir", cacheDir, "cache", "--cleanup")
	if !strings.Contains(out, "removed 1 old cache") {
		t.Fatalf("cleanup: %s", out)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, other)); !os.IsNotExist(err) {
		t.Fatalf("old directory kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, id)); err != nil {
		t.Fatalf("current directory removed: %v", err)
	}
	out = mustCairn(t, "--cache-dir", cacheDir, "cache", "--cleanup", "--max-age", "1000")
	if !strings.Contains(out, "removed 0 old cache") {
		t.Fatalf("cleanup: %s", out)
	}
	// max-age 0: everything not in use goes
	mustCairn(t, "--cache-dir", cacheDir, "cache", "--cleanup", "--max-age", "0")
	if _, err := os.Stat(filepath.Join(cacheDir, id)); !os.IsNotExist(err) {
		t.Fatalf("--max-age 0 kept %s: %v", id, err)
	}
	// and the next command rebuilds it
	mustCairn(t, "-r", repoDir, "--cache-dir", cacheDir, "ls", "latest")
	if _, err := os.Stat(filepath.Join(cacheDir, id, "version")); err != nil {
		t.Fatal(err)
	}

	// a cache that cannot be opened is reported, not fatal
	blocked := filepath.Join(tmp, "blocked")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := cairn(t, "-r", repoDir, "--cache-dir", blocked, "snapshots")
	if r.code != 0 || !strings.Contains(r.stderr, "not using a cache") {
		t.Fatalf("blocked cache: exit %d, stderr %q", r.code, r.stderr)
	}
}

// H35: check must read the repository, never the cache. A tree pack is
// damaged in the repository while the cache holds a good copy.
func TestCacheNotTrustedByCheck(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	writeSmallTree(t, src, 0)
	repoDir := filepath.Join(tmp, "repo")
	cacheDir := filepath.Join(tmp, "cache")
	mustCairn(t, "-r", repoDir, "init")
	id := repoIDOf(t, repoDir)
	mustCairn(t, "-r", repoDir, "--cache-dir", cacheDir, "backup", src)
	mustCairn(t, "-r", repoDir, "--cache-dir", cacheDir, "ls", "latest")
	cached := cacheFiles(t, filepath.Join(cacheDir, id, "data"))
	if len(cached) == 0 {
		t.Fatal("no tree pack cached")
	}
	for rel := range cached {
		p := filepath.Join(repoDir, "data", rel)
		buf, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		buf[len(buf)/3] ^= 0x01
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// the cache serves the good copy to readers...
	mustCairn(t, "-r", repoDir, "--cache-dir", cacheDir, "ls", "latest")
	// ...but check sees the damage
	r := cairn(t, "-r", repoDir, "--cache-dir", cacheDir, "check")
	if r.code != ExitError {
		t.Fatalf("check trusted the cache: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = cairn(t, "-r", repoDir, "--cache-dir", cacheDir, "check", "--read-data")
	if r.code != ExitError {
		t.Fatalf("check --read-data trusted the cache: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// Several processes share one cache directory while a prune changes the
// repository and the test deletes and damages cache files, and finally the
// whole cache directory, under them (H32, H33, H34).
func TestCacheSharedByProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs many processes")
	}
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	cacheDir := filepath.Join(tmp, "cache")
	t.Setenv("CAIRN_CACHE_DIR", cacheDir)
	mustCairn(t, "-r", repoDir, "init")
	id := repoIDOf(t, repoDir)
	const workers = 8
	srcs := make([]string, workers)
	for i := range srcs {
		srcs[i] = filepath.Join(tmp, fmt.Sprintf("src%d", i))
		writeSmallTree(t, srcs[i], 0)
	}
	// a few snapshots to forget, so that prune has work
	for i := 0; i < 3; i++ {
		mustCairn(t, "-r", repoDir, "backup", srcs[i])
		writeSmallTree(t, srcs[i], 1)
		mustCairn(t, "-r", repoDir, "backup", srcs[i])
	}
	mustCairn(t, "-r", repoDir, "ls", "latest")

	env := []string{"CAIRN_REPOSITORY=" + repoDir, "CAIRN_CACHE_DIR=" + cacheDir}
	const rounds = 2
	var done atomic.Int32
	halfway := make(chan struct{})
	var halfOnce sync.Once
	finished := func() {
		if done.Add(1) == workers*rounds/2 {
			halfOnce.Do(func() { close(halfway) })
		}
	}
	var failures sync.Map
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			variant := 10
			for k := 0; k < rounds; k++ {
				var args []string
				switch (w + k) % 3 {
				case 0:
					args = []string{"ls", "latest"}
				case 1:
					args = []string{"snapshots"}
				case 2:
					variant++
					if err := makeSmallTree(srcs[w], variant); err != nil {
						failures.Store(fmt.Sprintf("worker %d write", w), err.Error())
					}
					args = []string{"backup", srcs[w]}
				}
				code, out := runChild(t, env, append([]string{"--retry-lock", "2m"}, args...)...)
				if code != 0 {
					failures.Store(fmt.Sprintf("worker %d %v", w, args), fmt.Sprintf("exit %d: %s", code, out))
				}
				finished()
			}
		})
	}
	wg.Go(func() {
		for k := 0; k < 2; k++ {
			code, out := runChild(t, env, "forget", "--keep-last", "1", "--prune", "--keep-delete", "0")
			if code != 0 && code != ExitLocked {
				failures.Store(fmt.Sprintf("forget --prune %d", k), fmt.Sprintf("exit %d: %s", code, out))
			}
		}
	})
	stop := make(chan struct{})
	var vandal sync.WaitGroup
	var removedAll atomic.Bool
	vandal.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		half := halfway
		for {
			select {
			case <-stop:
				return
			case <-half:
				// the whole cache goes while half the commands still run
				// (processes keep writing into it, so RemoveAll may need
				// several passes)
				var err error
				for try := 0; try < 100; try++ {
					if err = os.RemoveAll(cacheDir); err == nil {
						break
					}
				}
				if err != nil {
					t.Errorf("remove cache: %v", err)
				}
				removedAll.Store(true)
				half = nil
			case <-time.After(20 * time.Millisecond):
			}
			files := cacheFiles(t, filepath.Join(cacheDir, id))
			var entries []string
			for rel, p := range files {
				if rel != "version" {
					entries = append(entries, p)
				}
			}
			if len(entries) == 0 {
				continue
			}
			p := entries[rng.IntN(len(entries))]
			switch rng.IntN(3) {
			case 0:
				_ = os.Remove(p)
			case 1:
				_ = os.Truncate(p, int64(rng.IntN(64)))
			case 2: // a bad copy renamed into place
				buf, err := os.ReadFile(p)
				if err == nil && len(buf) > 0 {
					buf[rng.IntN(len(buf))] ^= 0x10
					tmpf := filepath.Join(filepath.Dir(p), ".vandal")
					if os.WriteFile(tmpf, buf, 0o644) == nil {
						_ = os.Rename(tmpf, p)
					}
				}
			}
		}
	})
	wg.Wait()
	close(stop)
	vandal.Wait()
	failures.Range(func(k, v any) bool {
		t.Errorf("%s: %s", k, v)
		return true
	})
	if !removedAll.Load() {
		t.Error("the cache directory was never removed while processes ran")
	}
	if t.Failed() {
		return
	}

	// The repository is intact, and the latest snapshot restores.
	if code, out := runChild(t, env, "--no-cache", "check", "--read-data"); code != 0 {
		t.Fatalf("check --read-data: exit %d\n%s", code, out)
	}
	var snaps []struct {
		Paths []string `json:"paths"`
		Time  time.Time
	}
	if err := json.Unmarshal([]byte(mustCairn(t, "-r", repoDir, "snapshots", "--json", "--latest", "1")), &snaps); err != nil || len(snaps) == 0 {
		t.Fatalf("snapshots: %v", err)
	}
	latest := snaps[0]
	for _, s := range snaps {
		if s.Time.After(latest.Time) {
			latest = s
		}
	}
	dst := filepath.Join(tmp, "restore")
	mustCairn(t, "-r", repoDir, "restore", "latest", "--target", dst, "--verify")
	testutil.CompareTrees(t, latest.Paths[0], filepath.Join(dst, latest.Paths[0]), restoreCompare())
}
