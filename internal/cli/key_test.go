package cli

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// admRandFile writes n pseudo-random bytes (seeded) to p.
func admRandFile(t *testing.T, p string, n int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 11))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// admWriteFile writes a small file (a password file, for example).
func admWriteFile(t *testing.T, p, content string) string {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// admFiles lists the names of the files in dir (recursively), sorted.
func admFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			out = append(out, fi.Name())
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func admKeyList(t *testing.T, repoDir string) []keyListJSON {
	t.Helper()
	var keys []keyListJSON
	out := mustCairn(t, "-r", repoDir, "key", "list", "--json")
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("key list --json: %v\n%s", err, out)
	}
	return keys
}

func admCurrentKey(t *testing.T, keys []keyListJSON) string {
	t.Helper()
	cur := ""
	for _, k := range keys {
		if k.Current {
			if cur != "" {
				t.Fatalf("two current keys: %+v", keys)
			}
			cur = k.ID
		}
	}
	if cur == "" {
		t.Fatalf("no current key: %+v", keys)
	}
	return cur
}

func TestKeyAddPasswdRemove(t *testing.T) {
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	keys := admKeyList(t, repoDir)
	if len(keys) != 1 || !keys[0].Current || len(keys[0].ID) != 64 || keys[0].Created == "" {
		t.Fatalf("after init: %+v", keys)
	}
	key1 := keys[0].ID

	// key add: a second password opens the repository too
	pw2 := admWriteFile(t, filepath.Join(tmp, "pw2"), "second password\n")
	var added map[string]string
	out := mustCairn(t, "-r", repoDir, "--json", "key", "add", "--new-password-file", pw2, "--user", "alice", "--host", "box")
	if err := json.Unmarshal([]byte(out), &added); err != nil || len(added["id"]) != 64 {
		t.Fatalf("key add --json: %v %s", err, out)
	}
	key2 := added["id"]
	keys = admKeyList(t, repoDir)
	if len(keys) != 2 || admCurrentKey(t, keys) != key1 {
		t.Fatalf("after add: %+v", keys)
	}
	for _, k := range keys {
		if k.ID == key2 && (k.UserName != "alice" || k.HostName != "box") {
			t.Fatalf("user/host not recorded: %+v", k)
		}
	}
	t.Setenv("CAIRN_PASSWORD", "second password")
	if cur := admCurrentKey(t, admKeyList(t, repoDir)); cur != key2 {
		t.Fatalf("opened with the second password, current key %s, want %s", cur, key2)
	}
	// the key in use cannot be removed
	r := cairn(t, "-r", repoDir, "key", "remove", key2[:10])
	if r.code == 0 || !strings.Contains(r.stderr, "currently used") {
		t.Fatalf("removing the current key: exit %d %s", r.code, r.stderr)
	}
	if n := len(admKeyList(t, repoDir)); n != 2 {
		t.Fatalf("%d keys after a refused remove", n)
	}
	if r := cairn(t, "-r", repoDir, "key", "remove", strings.Repeat("ab", 32)); r.code == 0 {
		t.Fatal("removing a key that does not exist succeeded")
	}

	// key passwd (while using the second password): key2 is replaced
	pw3 := admWriteFile(t, filepath.Join(tmp, "pw3"), "third password")
	mustCairn(t, "-r", repoDir, "key", "passwd", "--new-password-file", pw3)
	r = cairn(t, "-r", repoDir, "snapshots")
	if r.code != ExitWrongPass {
		t.Fatalf("the replaced password still works: exit %d %s", r.code, r.stderr)
	}
	t.Setenv("CAIRN_PASSWORD", "third password")
	keys = admKeyList(t, repoDir)
	key3 := admCurrentKey(t, keys)
	if len(keys) != 2 || key3 == key1 || key3 == key2 {
		t.Fatalf("after passwd: %+v", keys)
	}
	t.Setenv("CAIRN_PASSWORD", testPassword)
	mustCairn(t, "-r", repoDir, "snapshots")

	// key remove the first key (using the third password)
	t.Setenv("CAIRN_PASSWORD", "third password")
	mustCairn(t, "-r", repoDir, "key", "remove", key1[:12])
	keys = admKeyList(t, repoDir)
	if len(keys) != 1 || keys[0].ID != key3 {
		t.Fatalf("after remove: %+v", keys)
	}
	t.Setenv("CAIRN_PASSWORD", testPassword)
	if r := cairn(t, "-r", repoDir, "snapshots"); r.code != ExitWrongPass {
		t.Fatalf("removed password still works: exit %d", r.code)
	}
	for _, pw := range []string{"", "third passwor", "third password "} {
		t.Setenv("CAIRN_PASSWORD", pw)
		if r := cairn(t, "-r", repoDir, "--password-file", admWriteFile(t, filepath.Join(tmp, "pwx"), pw+"x"), "snapshots"); r.code != ExitWrongPass {
			t.Fatalf("wrong password %q: exit %d %s", pw+"x", r.code, r.stderr)
		}
	}

	// text output marks the current key
	t.Setenv("CAIRN_PASSWORD", "third password")
	text := mustCairn(t, "-r", repoDir, "key", "list")
	if !strings.Contains(text, "*"+key3[:8]) {
		t.Fatalf("key list:\n%s", text)
	}
	// an empty new password file is refused and adds nothing
	empty := admWriteFile(t, filepath.Join(tmp, "empty"), "\n")
	if r := cairn(t, "-r", repoDir, "key", "add", "--new-password-file", empty); r.code == 0 {
		t.Fatal("empty new password accepted")
	}
	if n := len(admFiles(t, filepath.Join(repoDir, "keys"))); n != 1 {
		t.Fatalf("%d key files", n)
	}
}

// restic opens the repository with passwords cairn added or changed. (That
// cairn opens restic's key files is covered by the interop tests on
// restic-made repositories.)
func TestKeyInterop(t *testing.T) {
	testutil.RequireRestic(t)
	cairnEnv(t)
	tmp := t.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	pw2 := admWriteFile(t, filepath.Join(tmp, "pw2"), "cairn added this")
	mustCairn(t, "-r", repoDir, "key", "add", "--new-password-file", pw2)
	t.Setenv("CAIRN_PASSWORD", "cairn added this")
	pw3 := admWriteFile(t, filepath.Join(tmp, "pw3"), "cairn changed this")
	mustCairn(t, "-r", repoDir, "key", "passwd", "--new-password-file", pw3)
	out := testutil.RunRestic(t, repoDir, "cairn changed this", "key", "list", "--json")
	var rk []map[string]any
	if err := json.Unmarshal(out, &rk); err != nil || len(rk) != 2 {
		t.Fatalf("restic key list: %v %s", err, out)
	}
	if _, err := testutil.RunResticErr(t, repoDir, "cairn added this", "snapshots"); err == nil {
		t.Fatal("restic opened the repository with the replaced password")
	}
	testutil.RunRestic(t, repoDir, testPassword, "snapshots")
}
