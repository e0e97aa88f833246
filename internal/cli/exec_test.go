package cli

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// When CAIRN_TEST_AS_CLI is set, the test binary behaves as the cairn
// command (arguments after "--"), so tests can run cairn as a separate
// process and kill it.
func init() {
	if os.Getenv("CAIRN_TEST_AS_CLI") == "" {
		return
	}
	args := os.Args[1:]
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(Main(args))
}

// cairnProcess returns a command running cairn as a child process.
func cairnProcess(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(append(os.Environ(), "CAIRN_TEST_AS_CLI=1"), env...)
	return cmd
}

func runProcess(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := cairnProcess(t, env, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("run cairn %v: %v", args, err)
	}
	return 0, strings.TrimSpace(string(out))
}
