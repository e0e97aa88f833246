// Package testutil holds helpers for cairn's tests: finding external tools
// (restic and friends), running restic against a repository, generating a
// file tree with every kind of entry cairn must back up, and comparing two
// trees in full detail.
//
// It is a normal package so that tests in any package can import it; no
// non-test code may import it.
package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI (environment CI=true). There a
// missing external tool fails the test instead of skipping it, so that a
// broken install step cannot turn into silently skipped interop tests.
func InCI() bool { return os.Getenv("CI") == "true" }

// sbinDirs are searched after $PATH, since daemons such as sshd live there
// and a non-root user's PATH often lacks them.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// lookTool finds an executable by name in $PATH or the sbin directories.
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return filepath.Abs(p)
	}
	if !strings.Contains(name, "/") {
		for _, dir := range sbinDirs {
			cand := filepath.Join(dir, name)
			if fi, serr := os.Stat(cand); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return cand, nil
			}
		}
	}
	return "", fmt.Errorf("look up tool %q: %w", name, err)
}

// RequireTool returns the absolute path of the executable name. If it is not
// installed, the test is skipped, or failed when running in CI (see InCI).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		msg := fmt.Sprintf("required tool %q is not installed (scripts/install-deps.sh installs it): %v", name, err)
		if InCI() {
			t.Fatal(msg)
		} else {
			t.Skip(msg)
		}
		return ""
	}
	return p
}

// ResticEnvBinary names the environment variable that overrides which restic
// binary the tests use (for trying another restic version).
const ResticEnvBinary = "CAIRN_TEST_RESTIC"

// RequireRestic returns the path of the restic binary: $CAIRN_TEST_RESTIC if
// set (which then must exist), else restic from $PATH. When restic is missing
// the test is skipped, or failed in CI.
func RequireRestic(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(ResticEnvBinary); p != "" {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s=%q is not a usable restic binary: %v", ResticEnvBinary, p, err)
			return ""
		}
		return p
	}
	return RequireTool(t, "restic")
}

// ResticVersion returns the version of the restic binary the tests use,
// e.g. [0 14 0]. The test fails if the version cannot be determined.
func ResticVersion(t testing.TB) [3]int {
	t.Helper()
	bin := RequireRestic(t)
	if bin == "" {
		return [3]int{}
	}
	v, err := resticVersionOf(t.Context(), bin)
	if err != nil {
		t.Fatalf("restic version: %v", err)
	}
	return v
}

// versionCache maps a restic binary path to its parsed version.
var versionCache struct {
	mu sync.Mutex // guards m
	m  map[string][3]int
}

var resticVersionRE = regexp.MustCompile(`^restic (\d+)\.(\d+)\.(\d+)`)

func resticVersionOf(ctx context.Context, bin string) ([3]int, error) {
	versionCache.mu.Lock()
	v, ok := versionCache.m[bin]
	versionCache.mu.Unlock()
	if ok {
		return v, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return v, fmt.Errorf("run %s version: %w", bin, err)
	}
	m := resticVersionRE.FindSubmatch(bytes.TrimSpace(out))
	if m == nil {
		return v, fmt.Errorf("parse restic version from %q", out)
	}
	for i := range 3 {
		n, err := strconv.Atoi(string(m[i+1]))
		if err != nil {
			return v, fmt.Errorf("parse restic version from %q: %w", out, err)
		}
		v[i] = n
	}
	versionCache.mu.Lock()
	if versionCache.m == nil {
		versionCache.m = make(map[string][3]int)
	}
	versionCache.m[bin] = v
	versionCache.mu.Unlock()
	return v, nil
}

// ResticTimeout bounds a single restic invocation started by this package, so
// that a hung restic fails its test with a useful message instead of running
// into go test's global timeout.
var ResticTimeout = 10 * time.Minute

// cacheDirs maps a running test to its private restic cache directory, so
// that all restic calls of one test share a cache (as a user's would) but no
// two tests do.
var cacheDirs struct {
	mu sync.Mutex // guards m
	m  map[testing.TB]string
}

// ResticCacheDir returns the restic cache directory private to t, creating it
// under t.TempDir() on first use.
func ResticCacheDir(t testing.TB) string {
	t.Helper()
	cacheDirs.mu.Lock()
	defer cacheDirs.mu.Unlock()
	if d, ok := cacheDirs.m[t]; ok {
		return d
	}
	d := filepath.Join(t.TempDir(), "restic-cache")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatalf("create restic cache dir: %v", err)
	}
	if cacheDirs.m == nil {
		cacheDirs.m = make(map[testing.TB]string)
	}
	cacheDirs.m[t] = d
	t.Cleanup(func() {
		cacheDirs.mu.Lock()
		delete(cacheDirs.m, t)
		cacheDirs.mu.Unlock()
	})
	return d
}

// ResticCommand returns a restic command (not yet started) for repository
// repo with password, the test's private RESTIC_CACHE_DIR, and no other
// RESTIC_* variables inherited from the environment. Callers may set Stdin,
// Dir or append to Env before running it. The command is killed when it runs
// longer than ResticTimeout or when the test ends.
func ResticCommand(t testing.TB, repo, password string, args ...string) *exec.Cmd {
	t.Helper()
	cmd, _ := resticCommand(t, repo, password, args...)
	return cmd
}

// resticCommand is ResticCommand, also returning the command's context.
func resticCommand(t testing.TB, repo, password string, args ...string) (*exec.Cmd, context.Context) {
	t.Helper()
	bin := RequireRestic(t)
	if bin == "" {
		bin = "restic" // only reached with a fake testing.TB whose Skip returns
	}
	ctx, cancel := context.WithTimeout(t.Context(), ResticTimeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RESTIC_") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env,
		"RESTIC_REPOSITORY="+repo,
		"RESTIC_PASSWORD="+password,
		"RESTIC_CACHE_DIR="+ResticCacheDir(t),
	)
	cmd.WaitDelay = 10 * time.Second
	return cmd, ctx
}

// ResticError is the error returned by RunResticErr when restic fails.
type ResticError struct {
	Args     []string
	ExitCode int    // -1 if restic did not exit normally (killed, not started)
	Stderr   []byte // restic's standard error
	Err      error  // the underlying exec error
}

func (e *ResticError) Error() string {
	return fmt.Sprintf("restic %s: exit code %d: %v\nstderr:\n%s",
		strings.Join(e.Args, " "), e.ExitCode, e.Err, tail(e.Stderr, 8<<10))
}

func (e *ResticError) Unwrap() error { return e.Err }

// tail returns the last limit bytes of b, marking a cut.
func tail(b []byte, limit int) string {
	if len(b) <= limit {
		return string(b)
	}
	return "[...]" + string(b[len(b)-limit:])
}

// RunResticErr runs restic with args against repo and returns its standard
// output. A failure (non-zero exit, or restic could not be run) is returned
// as a *ResticError carrying the exit code and standard error.
func RunResticErr(t testing.TB, repo, password string, args ...string) ([]byte, error) {
	t.Helper()
	cmd, ctx := resticCommand(t, repo, password, args...)
	if cmd.Err != nil {
		return nil, &ResticError{Args: args, ExitCode: -1, Err: cmd.Err}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (restic ran longer than %v)", err, ResticTimeout)
		}
		return stdout.Bytes(), &ResticError{Args: args, ExitCode: code, Stderr: stderr.Bytes(), Err: err}
	}
	return stdout.Bytes(), nil
}

// RunRestic runs restic with args against repo and returns its standard
// output, failing the test (with restic's standard error) on any failure.
func RunRestic(t testing.TB, repo, password string, args ...string) []byte {
	t.Helper()
	out, err := RunResticErr(t, repo, password, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
