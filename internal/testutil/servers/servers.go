// Package servers starts real storage servers for tests: an S3 server
// (versitygw with its POSIX backend) and an SFTP server (OpenSSH's sshd),
// each on a free loopback port with freshly generated credentials, owned by
// the test that started it and stopped when that test ends.
//
// A missing server binary skips the test, or fails it when running in CI
// (CI=true, see testutil.InCI), so a broken install step cannot turn into
// silently skipped interop tests.
//
// No non-test code may import this package.
package servers

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testutil"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 20 * time.Second

// stopTimeout is how long a server gets to exit after SIGTERM before it is
// killed.
const stopTimeout = 5 * time.Second

// findBinary looks for an executable: the path in envVar if set (which then
// must exist), else name in $PATH, the sbin directories, or $GOBIN /
// $GOPATH/bin (where `go install` puts it). When it is missing the test is
// skipped, or failed in CI.
func findBinary(t testing.TB, name, envVar, hint string) string {
	t.Helper()
	if envVar != "" {
		if p := os.Getenv(envVar); p != "" {
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("%s=%q is not a usable %s binary: %v", envVar, p, name, err)
			}
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		for _, d := range filepath.SplitList(gopath) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	} else if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	dirs = append(dirs, "/usr/local/sbin", "/usr/sbin", "/sbin")
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (%s)", name, hint)
	if testutil.InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago. The
// caller must cope with losing a race for it (startWithRetry does).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(buf)
}

// logBuffer collects a server's output for failure messages.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() < 1<<20 {
		l.buf.Write(p)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// process is a started server.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid once done is closed
}

// startProcess starts bin with args and env in its own process group, with
// stdout and stderr collected. On Linux the child gets SIGKILL if the test
// binary dies without stopping it (procAttr).
func startProcess(name, bin string, args, env []string, dir string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	lb := &logBuffer{}
	cmd.Stdout = lb
	cmd.Stderr = lb
	cmd.SysProcAttr = procAttr()
	// Descendants that outlive the server must not keep Wait waiting for
	// the output pipes.
	cmd.WaitDelay = 3 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: lb, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitListening waits until addr accepts TCP connections, the process
// exits, or the start timeout passes.
func (p *process) waitListening(addr string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before listening on %s: %v\noutput:\n%s", p.name, addr, p.err, p.log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %v\noutput:\n%s", p.name, addr, startTimeout, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM to the process group, waits, then kills the group
// and every descendant of the server (sshd's per-connection processes
// start sessions of their own, so they leave the group).
func (p *process) stop() error {
	pid := p.cmd.Process.Pid
	select {
	case <-p.done:
		return nil
	default:
	}
	// Descendants first: they may hold the output pipes, which Wait
	// waits for.
	for _, d := range descendants(pid) {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	var err error
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
		err = fmt.Errorf("%s did not exit within %v of SIGTERM and was killed", p.name, stopTimeout)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return err
}

// descendants returns the process IDs of all descendants of pid, read
// from /proc (Linux).
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name (field 2) is in parentheses and may contain
		// spaces: the parent PID is the second field after the last ")".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], n)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// startWithRetry picks a free port, starts the server via start, and waits
// until it listens. Losing the port to another process is retried.
func startWithRetry(t testing.TB, name string, start func(port int) (*process, error)) (*process, int) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		p, err := start(port)
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := p.waitListening(addr); err != nil {
			_ = p.stop()
			lastErr = err
			if strings.Contains(p.log.String(), "address already in use") {
				continue
			}
			t.Fatal(err)
		}
		t.Cleanup(func() {
			alive := true
			select {
			case <-p.done:
				alive = false
			default:
			}
			if err := p.stop(); err != nil {
				t.Errorf("stop %s: %v", name, err)
			}
			if !alive && !t.Failed() {
				t.Errorf("%s exited while the test was running: %v\noutput:\n%s", name, p.err, p.log.String())
			}
			if t.Failed() {
				t.Logf("%s output:\n%s", name, p.log.String())
			}
		})
		return p, port
	}
	t.Fatalf("start %s: %v", name, lastErr)
	return nil, 0
}

// cleanEnv returns the environment without variables whose names start
// with one of prefixes.
func cleanEnv(prefixes ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		drop := false
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				drop = true
				break
			}
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}
