// Package rclone stores a repository on any rclone remote: it starts
// `rclone serve restic --stdio REMOTE:PATH` as a child process and speaks
// restic's REST protocol (v2) to it over HTTP/2 on the child's standard
// input and output — one connection, many multiplexed requests.
//
// rclone's server overwrites existing files unless run with --append-only
// (which also forbids deletions), so Save checks with HEAD that the name
// is free and then uploads; saves of the same name within this process are
// serialised, so of two concurrent writers exactly one wins. Two processes
// racing on one name may both succeed: for content-addressed files they
// wrote the same bytes.
//
// The request body is checked against the reader's length before its last
// byte goes out (hazard H23), every response body is drained before it is
// closed, a watchdog aborts requests that move no data for StallTimeout
// (H30), and a listing error (including rclone's 404 for a missing
// repository) is never an empty listing (H24).
package rclone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// DefaultConnections is the default number of parallel requests.
const DefaultConnections = 5

// DefaultStallTimeout is used when Config.StallTimeout is zero.
const DefaultStallTimeout = 5 * time.Minute

// contentTypeV2 is the REST protocol's v2 media type.
const contentTypeV2 = "application/vnd.x.restic.rest.v2"

// maxDrain is how much of an unread response body is read before closing.
const maxDrain = 1 << 20

// maxListBody bounds a listing response.
const maxListBody = 4 << 30

// exitTimeout is how long rclone gets to exit after its input closed.
const exitTimeout = 10 * time.Second

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
	cfg      Config
	location string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stderr   *tailBuffer
	exited   chan struct{} // closed when rclone has exited
	waitErr  error         // rclone's exit status, valid once exited is closed
	tr       *http.Transport
	client   *http.Client
	sem      chan struct{} // one token per request in flight
	stall    time.Duration

	namesMu sync.Mutex // guards names
	// names holds a lock per file name being saved, so two saves of one
	// name in this process cannot both pass the existence check.
	names map[string]*nameLock

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
	stall := cfg.StallTimeout
	if stall == 0 {
		stall = DefaultStallTimeout
	}
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
	tb := &tailBuffer{max: 4096}
	cmd.Stderr = tb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("open %s: start %s: %w", loc, cfg.Program, err)
	}
	b := &Backend{
		cfg:      cfg,
		location: loc,
		cmd:      cmd,
		stdin:    stdin,
		stderr:   tb,
		exited:   make(chan struct{}),
		sem:      make(chan struct{}, cfg.Connections),
		stall:    stall,
		names:    make(map[string]*nameLock),
	}
	go func() {
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()

	conn := &stdioConn{rd: stdout, wr: stdin}
	var dialed sync.Once
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	b.tr = &http.Transport{
		Protocols: protos,
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
	b.client = &http.Client{
		Transport:     b.tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b, nil
}

// Create starts rclone and creates the repository.
func Create(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := b.Create(ctx); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

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
func (b *Backend) Connections() uint { return b.cfg.Connections }

// Close implements backend.Backend: it closes rclone's input, which makes
// it exit, and kills it if it does not.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.tr.CloseIdleConnections()
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

func objectPath(h backend.Handle) string {
	if h.Type == core.ConfigFile {
		return "/config"
	}
	return "/" + h.Type.String() + "/" + h.Name
}

// response is an open response; release must be called exactly once.
type response struct {
	*http.Response
	release func()
}

// do sends one request under the semaphore and the stall watchdog.
func (b *Backend) do(ctx context.Context, method, p string, body io.Reader, length int64, hdr http.Header) (*response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-b.exited:
		<-b.sem
		return nil, b.deadError("rclone is not running")
	default:
	}
	rctx, cancel := context.WithCancelCause(ctx)
	watch := newWatchdog(b.stall, func() { cancel(errStalled) })
	cleanup := func() {
		watch.stop()
		cancel(nil)
		<-b.sem
	}
	var rbody io.Reader
	var guard *guardedReader
	if length > 0 {
		guard = &guardedReader{rd: &exactBody{rd: body, length: length}, ctx: rctx, onRead: watch.arm}
		rbody = guard
	} else if body != nil {
		rbody = http.NoBody
	}
	req, err := http.NewRequestWithContext(rctx, method, "http://rclone"+p, rbody)
	if err != nil {
		cleanup()
		return nil, err
	}
	if rbody != nil {
		req.ContentLength = length
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", contentTypeV2)
	watch.arm()
	resp, err := b.client.Do(req)
	watch.disarm()
	guard.close()
	if err != nil {
		if errors.Is(context.Cause(rctx), errStalled) {
			err = fmt.Errorf("%w (%v)", errStalled, b.stall)
		}
		cleanup()
		select {
		case <-b.exited:
			return nil, fmt.Errorf("%w; %w", err, b.deadError("rclone failed"))
		default:
		}
		return nil, err
	}
	resp.Body = &responseBody{rc: resp.Body, watch: watch}
	var once sync.Once
	return &response{Response: resp, release: func() {
		once.Do(func() {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
			_ = resp.Body.Close()
			cleanup()
		})
	}}, nil
}

// statusError builds the error for an unexpected status.
func statusError(op string, resp *response) error {
	buf, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	e := &StatusError{Op: op, Method: resp.Request.Method, Path: resp.Request.URL.Path, StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(buf))}
	switch resp.StatusCode {
	case http.StatusNotFound:
		e.kind = backend.ErrNotExist
	case http.StatusInsufficientStorage:
		e.kind = backend.ErrNoSpace
	}
	return e
}

// StatusError is an HTTP response with an unexpected status.
type StatusError struct {
	Op         string
	Method     string
	Path       string
	StatusCode int
	Body       string
	kind       error
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("rclone %s: %s %s: %d %s", e.Op, e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" && e.Body != http.StatusText(e.StatusCode) {
		msg += ": " + e.Body
	}
	return msg
}

// Unwrap returns the backend sentinel the status stands for, if any.
func (e *StatusError) Unwrap() error { return e.kind }

// Permanent reports whether retrying cannot help.
func (e *StatusError) Permanent() bool {
	switch e.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusRequestedRangeNotSatisfiable, http.StatusInsufficientStorage:
		return true
	}
	return false
}

// Create implements backend.Creator: POST /?create=true.
func (b *Backend) Create(ctx context.Context) error {
	resp, err := b.do(ctx, http.MethodPost, "/?create=true", bytes.NewReader(nil), 0, nil)
	if err != nil {
		return fmt.Errorf("create %s: %w", b.location, err)
	}
	defer resp.release()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("create %s: %w", b.location, statusError("create", resp))
	}
	return nil
}

// lockName serialises saves of one name; call the returned func to unlock.
func (b *Backend) lockName(name string) func() {
	b.namesMu.Lock()
	l := b.names[name]
	if l == nil {
		l = &nameLock{}
		b.names[name] = l
	}
	l.refs++
	b.namesMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		b.namesMu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(b.names, name)
		}
		b.namesMu.Unlock()
	}
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := h.Valid(); err != nil {
		return permanent(fmt.Errorf("save %v: %w", h, err))
	}
	length := rd.Length()
	if length < 0 {
		return permanent(fmt.Errorf("save %v: negative length %d", h, length))
	}
	if length == 0 {
		if err := probeEOF(rd); err != nil {
			return fmt.Errorf("save %v: %w", h, err)
		}
	}
	unlock := b.lockName(objectPath(h))
	defer unlock()
	if _, err := b.Stat(ctx, h); err == nil {
		return fmt.Errorf("save %v: %w", h, backend.ErrAlreadyExists)
	} else if !errors.Is(err, backend.ErrNotExist) {
		return fmt.Errorf("save %v: check for an existing file: %w", h, err)
	}
	resp, err := b.do(ctx, http.MethodPost, objectPath(h), rd, length, http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	defer resp.release()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("save %v: %w", h, statusError("save", resp))
	}
	return nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	if err := h.Valid(); err != nil {
		return permanent(fmt.Errorf("load %v: %w", h, err))
	}
	if offset < 0 || length < 0 {
		return permanent(fmt.Errorf("load %v: invalid range offset %d length %d", h, offset, length))
	}
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 {
		rng = fmt.Sprintf("bytes=%d-%d", offset, offset+int64(length)-1)
	}
	resp, err := b.do(ctx, http.MethodGet, objectPath(h), nil, 0, http.Header{"Range": {rng}})
	if err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer resp.release()
	want := int64(-1)
	if length > 0 {
		want = int64(length)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		// The whole file: skip to offset.
		if offset > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("load %v: skip to offset %d: %w", h, offset, err)
			}
		}
		if want < 0 && resp.ContentLength >= 0 {
			want = resp.ContentLength - offset
		}
	case http.StatusPartialContent:
		start, end, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			return fmt.Errorf("load %v: server sent Content-Range %q for offset %d", h, resp.Header.Get("Content-Range"), offset)
		}
		if got := end - start + 1; want < 0 {
			want = got
		} else if got < want {
			return fmt.Errorf("load %v: file has only %d of %d bytes at offset %d: %w", h, got, want, offset, io.ErrUnexpectedEOF)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		serr := statusError("load", resp)
		resp.release()
		fi, err := b.Stat(ctx, h)
		if err != nil {
			return fmt.Errorf("load %v: %w", h, errors.Join(serr, err))
		}
		switch {
		case offset > fi.Size:
			return permanent(fmt.Errorf("load %v: offset %d beyond end of %d-byte file: %w", h, offset, fi.Size, serr))
		case length > 0:
			return fmt.Errorf("load %v: range beyond end of %d-byte file: %w", h, fi.Size, io.ErrUnexpectedEOF)
		}
		if err := fn(bytes.NewReader(nil)); err != nil {
			return fmt.Errorf("load %v: %w", h, err)
		}
		return nil
	default:
		return fmt.Errorf("load %v: %w", h, statusError("load", resp))
	}
	if want < 0 {
		return fmt.Errorf("load %v: server sent no length", h)
	}
	if err := fn(&exactReader{rd: resp.Body, remaining: want}); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	return nil
}

// parseContentRange parses "bytes START-END/TOTAL". rclone describes an
// empty range at the end of a file as "bytes N-(N-1)/N", so END may be
// START-1.
func parseContentRange(s string) (start, end int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, _, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, z, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(z, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start-1 {
		return 0, 0, false
	}
	return start, end, true
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return backend.FileInfo{}, permanent(fmt.Errorf("stat %v: %w", h, err))
	}
	resp, err := b.do(ctx, http.MethodHead, objectPath(h), nil, 0, nil)
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, err)
	}
	defer resp.release()
	if resp.StatusCode != http.StatusOK {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, statusError("stat", resp))
	}
	if resp.ContentLength < 0 {
		return backend.FileInfo{}, fmt.Errorf("stat %v: server sent no Content-Length", h)
	}
	return backend.FileInfo{Name: h.Name, Size: resp.ContentLength}, nil
}

type listEntry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// List implements backend.Backend. rclone answers 404 when the
// repository does not exist: that is an error, not an empty listing.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	if t == core.ConfigFile {
		fi, err := b.Stat(ctx, backend.Handle{Type: core.ConfigFile})
		if backend.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		return fn(fi)
	}
	if !slices.Contains(core.AllFileTypes, t) {
		return permanent(fmt.Errorf("list: invalid file type %v", t))
	}
	entries, err := b.fetchList(ctx, t)
	if err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		if !core.IsValidName(e.Name) {
			continue
		}
		if err := fn(backend.FileInfo{Name: e.Name, Size: e.Size}); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) fetchList(ctx context.Context, t core.FileType) ([]listEntry, error) {
	resp, err := b.do(ctx, http.MethodGet, "/"+t.String()+"/", nil, 0, nil)
	if err != nil {
		return nil, err
	}
	defer resp.release()
	if resp.StatusCode != http.StatusOK {
		e := statusError("list", resp)
		var se *StatusError
		if errors.As(e, &se) {
			se.kind = nil // a missing listing is not a missing file
		}
		return nil, e
	}
	if ct := resp.Header.Get("Content-Type"); ct != contentTypeV2 {
		return nil, fmt.Errorf("listing has content type %q, want %q", ct, contentTypeV2)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody+1))
	if err != nil {
		return nil, fmt.Errorf("read listing: %w", err)
	}
	if int64(len(data)) > maxListBody {
		return nil, fmt.Errorf("listing larger than %d bytes", int64(maxListBody))
	}
	return decodeList(data)
}

// decodeList decodes a v2 listing: exactly one JSON array of entries with
// non-negative sizes.
func decodeList(data []byte) ([]listEntry, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '[' {
		return nil, errors.New("decode listing: not a JSON array")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var entries []listEntry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("decode listing: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode listing: trailing data after the JSON array")
	}
	for _, e := range entries {
		if e.Size < 0 {
			return nil, fmt.Errorf("decode listing: negative size %d for %q", e.Size, e.Name)
		}
	}
	return entries, nil
}

// Remove implements backend.Backend. A missing file is success.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return permanent(fmt.Errorf("remove %v: %w", h, err))
	}
	resp, err := b.do(ctx, http.MethodDelete, objectPath(h), nil, 0, nil)
	if err != nil {
		return fmt.Errorf("remove %v: %w", h, err)
	}
	defer resp.release()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNotFound:
		return nil
	}
	return fmt.Errorf("remove %v: %w", h, statusError("remove", resp))
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
	rd io.ReadCloser
	wr io.WriteCloser
}

func (c *stdioConn) Read(p []byte) (int, error)  { return c.rd.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.wr.Write(p) }
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
