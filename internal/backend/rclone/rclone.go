// Package rclone stores a repository on any rclone remote: it starts
// `rclone serve restic --stdio REMOTE:PATH` as a child process and speaks
// restic's REST protocol (v2) to it over HTTP/2 on the child's standard
// input and output — one connection, many multiplexed requests. The
// protocol is the rest package's client, given a transport over that
// connection (rest.Config.Transport).
//
// rclone's server overwrites existing files unless run with --append-only
// (which also forbids deletions), so Save checks with HEAD that the name
// is free and then uploads; saves of the same name within this process are
// serialised, so of two concurrent writers exactly one wins. Two processes
// racing on one name may both succeed: for content-addressed files they
// wrote the same bytes.
//
// From the rest client: the request body is checked against the reader's
// length before its last byte goes out (hazard H23), every response body
// is drained before it is closed, a watchdog aborts requests that move no
// data for StallTimeout (H30), and a listing error (including rclone's 404
// for a missing repository) is never an empty listing (H24).
package rclone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/rest"
	"github.com/cairn-backup/cairn/internal/backend/retry"
	"github.com/cairn-backup/cairn/internal/core"
)

// DefaultConnections is the default number of parallel requests.
const DefaultConnections = rest.DefaultConnections

// DefaultStallTimeout is used when Config.StallTimeout is zero.
const DefaultStallTimeout = rest.DefaultStallTimeout

// exitTimeout is how long rclone gets to exit after its input closed.
const exitTimeout = 10 * time.Second

// exitGrace is how long a request that failed on a broken connection
// waits for rclone to exit, so that its error can include rclone's exit
// status and message.
const exitGrace = time.Second

// Config configures an rclone backend.
type Config struct {
	// Remote is what rclone serves: "remote:path", ":backend:path" or a
	// local path.
	Remote string
	// Program is the rclone executable (default "rclone").
	Program string
	// Args are extra arguments inserted after "serve restic --stdio"
	// (e.g. "--config", "/path/rclone.conf").
	Args []string
	// Connections is the number of parallel requests (default
	// DefaultConnections).
	Connections uint
	// StallTimeout aborts a request that moves no data for this long
	// (default DefaultStallTimeout; negative disables).
	StallTimeout time.Duration
}

// ParseConfig parses "rclone:REMOTE:PATH" (the "rclone:" prefix is
// optional).
func ParseConfig(s string) (Config, error) {
	remote := strings.TrimPrefix(s, "rclone:")
	if remote == "" {
		return Config{}, errors.New("parse rclone location: no remote given (want rclone:REMOTE:PATH)")
	}
	if strings.HasPrefix(remote, "-") {
		return Config{}, fmt.Errorf("parse rclone location %q: a remote cannot start with '-'", s)
	}
	return Config{Remote: remote, Program: "rclone", Connections: DefaultConnections}, nil
}

// Backend is a repository served by an rclone child process.
type Backend struct {
	rest     *rest.Backend // the REST client, over rclone's stdio
	location string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stderr   *tailBuffer
	exited   chan struct{} // closed when rclone has exited
	waitErr  error         // rclone's exit status, valid once exited is closed
	broken   chan struct{} // closed when a read or write on rclone's stdio failed
	h2       *http.Transport

	namesMu sync.Mutex // guards names
	// names holds a lock per file being saved, so two saves of one name
	// in this process cannot both pass the existence check.
	names map[backend.Handle]*nameLock

	closeOnce sync.Once
	closeErr  error
}

type nameLock struct {
	mu   sync.Mutex // held while the name is being saved
	refs int        // guarded by Backend.namesMu
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Creator = (*Backend)(nil)
)

// Open starts rclone for cfg.Remote. It does not check that a repository
// exists there.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	loc := "rclone:" + cfg.Remote
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	if cfg.Remote == "" {
		return nil, fmt.Errorf("open %s: no remote", loc)
	}
	if cfg.Program == "" {
		cfg.Program = "rclone"
	}
	if cfg.Connections == 0 {
		cfg.Connections = DefaultConnections
	}
	b := &Backend{
		location: loc,
		stderr:   &tailBuffer{max: 4096},
		exited:   make(chan struct{}),
		broken:   make(chan struct{}),
		names:    make(map[backend.Handle]*nameLock),
	}
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	var dialed sync.Once
	var conn net.Conn // set before the first request
	b.h2 = &http.Transport{
		Protocols: protos,
		// rclone serves one connection: once it is gone, so is rclone.
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			var c net.Conn
			dialed.Do(func() { c = conn })
			if c == nil {
				return nil, b.deadError("the connection to rclone was lost")
			}
			return c, nil
		},
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
	}
	rb, err := rest.Open(ctx, rest.Config{
		URL:          &url.URL{Scheme: "http", Host: "rclone", Path: "/"},
		Connections:  cfg.Connections,
		StallTimeout: cfg.StallTimeout,
		Transport:    &transport{b: b},
		Location:     loc,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	b.rest = rb

	args := append([]string{"serve", "restic", "--stdio"}, cfg.Args...)
	args = append(args, cfg.Remote)
	// Not CommandContext: rclone must outlive the ctx of the call that
	// opened the backend; Close ends it.
	cmd := exec.Command(cfg.Program, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	cmd.Stderr = b.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("open %s: start %s: %w", loc, cfg.Program, err)
	}
	b.cmd, b.stdin = cmd, stdin
	var broke sync.Once
	conn = &stdioConn{rd: stdout, wr: stdin, onFail: func() { broke.Do(func() { close(b.broken) }) }}
	go func() {
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()
	return b, nil
}

// Create starts rclone and creates the repository.
func Create(ctx context.Context, cfg Config) (*Backend, error) {
	return backend.OpenCreate(ctx, func(ctx context.Context) (*Backend, error) { return Open(ctx, cfg) })
}

// transport carries the REST client's requests to rclone, failing them
// with rclone's own output once it has exited.
type transport struct{ b *Backend }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-t.b.exited:
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, t.b.deadError("rclone is not running")
	default:
	}
	resp, err := t.b.h2.RoundTrip(req)
	if err != nil {
		// A broken connection means rclone is exiting: give it a moment,
		// so the error can carry its own explanation.
		select {
		case <-t.b.broken:
			timer := time.NewTimer(exitGrace)
			select {
			case <-t.b.exited:
			case <-timer.C:
			case <-req.Context().Done():
			}
			timer.Stop()
		default:
		}
		select {
		case <-t.b.exited:
			return nil, fmt.Errorf("rclone: %w; %w", err, t.b.deadError("rclone failed"))
		default:
			return nil, fmt.Errorf("rclone: %w", err)
		}
	}
	return resp, nil
}

func (t *transport) CloseIdleConnections() { t.b.h2.CloseIdleConnections() }

// deadError describes a failure of the child process, with its output.
func (b *Backend) deadError(msg string) error {
	select {
	case <-b.exited:
		return fmt.Errorf("%s: rclone exited (%v): %s", msg, b.waitErr, strings.TrimSpace(b.stderr.String()))
	default:
		return errors.New(msg)
	}
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.location }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return b.rest.Connections() }

// Close implements backend.Backend: it closes rclone's input, which makes
// it exit, and kills it if it does not.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		_ = b.rest.Close()
		_ = b.stdin.Close()
		select {
		case <-b.exited:
		case <-time.After(exitTimeout):
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.exited
			b.closeErr = fmt.Errorf("close %s: rclone did not exit and was killed", b.location)
		}
	})
	return b.closeErr
}

// Create implements backend.Creator: POST /?create=true, which rclone
// answers by creating what is missing (so it may run on an existing
// repository).
func (b *Backend) Create(ctx context.Context) error { return b.rest.CreateLayout(ctx) }

// lockName serialises saves of h; call the returned func to unlock.
func (b *Backend) lockName(h backend.Handle) func() {
	b.namesMu.Lock()
	l := b.names[h]
	if l == nil {
		l = &nameLock{}
		b.names[h] = l
	}
	l.refs++
	b.namesMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		b.namesMu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(b.names, h)
		}
		b.namesMu.Unlock()
	}
}

// Save implements backend.Backend. rclone's server would overwrite an
// existing file, so Save checks first that the name is free (under a lock
// per name within this process).
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := h.Valid(); err != nil {
		return retry.Permanent(fmt.Errorf("save %v: %w", h, err))
	}
	unlock := b.lockName(h)
	defer unlock()
	if _, err := b.rest.Stat(ctx, h); err == nil {
		return fmt.Errorf("save %v: %w", h, backend.ErrAlreadyExists)
	} else if !errors.Is(err, backend.ErrNotExist) {
		return fmt.Errorf("save %v: check for an existing file: %w", h, err)
	}
	return b.rest.Save(ctx, h, rd)
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	return b.rest.Load(ctx, h, length, offset, fn)
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	return b.rest.Stat(ctx, h)
}

// List implements backend.Backend. rclone answers 404 when the repository
// does not exist: the rest client, which recognises rclone by its Server
// header ("rclone/<version>", sent over stdio too), reports that as an
// error, not as an empty listing.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	return b.rest.List(ctx, t, fn)
}

// Remove implements backend.Backend. A missing file is success.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	return b.rest.Remove(ctx, h)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex // guards buf
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// stdioConn is a net.Conn over rclone's standard output (read) and input
// (write). Deadlines are not supported; the request watchdog bounds
// stalls instead.
type stdioConn struct {
	rd     io.ReadCloser
	wr     io.WriteCloser
	onFail func() // called when a read or write fails
}

func (c *stdioConn) Read(p []byte) (int, error) {
	n, err := c.rd.Read(p)
	if err != nil {
		c.onFail()
	}
	return n, err
}

func (c *stdioConn) Write(p []byte) (int, error) {
	n, err := c.wr.Write(p)
	if err != nil {
		c.onFail()
	}
	return n, err
}
func (c *stdioConn) Close() error {
	werr := c.wr.Close()
	rerr := c.rd.Close()
	if werr != nil && !errors.Is(werr, os.ErrClosed) {
		return werr
	}
	if rerr != nil && !errors.Is(rerr, os.ErrClosed) {
		return rerr
	}
	return nil
}
func (c *stdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "rclone" }
