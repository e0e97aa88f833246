package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// TestProgressOnTerminalOnly runs a backup under a pseudo-terminal (util-
// linux script) and through a pipe: the status line appears only on the
// terminal.
func TestProgressOnTerminalOnly(t *testing.T) {
	scriptBin := testutil.RequireTool(t, "script")
	cairnEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	os.MkdirAll(src, 0o755)
	big := make([]byte, 48<<20)
	for i := range big {
		big[i] = byte(uint32(i) * 2654435761 >> 13) // bits 13-20 of i*2654435761, as uint32 for 32-bit ints
	}
	os.WriteFile(filepath.Join(src, "big"), big, 0o644)
	repoDir := filepath.Join(tmp, "repo")
	mustCairn(t, "-r", repoDir, "init")
	// slow the upload down so at least one status line is drawn
	env := []string{"CAIRN_FAILPOINTS=backup.before-pack-upload=sleep(300ms)"}
	cmd := cairnProcess(t, env, "-r", repoDir, "backup", src)
	var quoted []string
	for _, a := range append([]string{"env"}, append(env, append([]string{"CAIRN_TEST_AS_CLI=1"}, cmd.Args...)...)...) {
		quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	cmdline := strings.Join(quoted, " ")
	tty := exec.Command(scriptBin, "-qec", cmdline, "/dev/null")
	tty.Env = cmd.Env
	out, err := tty.CombinedOutput()
	if err != nil {
		t.Fatalf("backup on a terminal: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\r[") || !strings.Contains(string(out), "files") {
		t.Fatalf("no status line on a terminal:\n%q", out)
	}
	code, piped := runProcess(t, env, "-r", repoDir, "backup", "--force", src)
	if code != 0 || strings.Contains(piped, "\r") {
		t.Fatalf("status line written to a pipe (exit %d):\n%q", code, piped)
	}
}
