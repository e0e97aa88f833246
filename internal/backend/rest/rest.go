// Package rest is a backend that talks restic's REST protocol (v2, with a
// v1 fallback) to `cairn serve`, rest-server or any compatible server.
//
// All requests share one pooled http.Transport whose idle and total
// connection limits equal Config.Connections, and a semaphore of the same
// size bounds concurrent requests. Every response body is drained before it
// is closed so connections are reused rather than left in TIME_WAIT (hazard
// H29), and a stall watchdog cancels requests that stop moving data (H30).
// Config.Transport lets the protocol run over another connection (the
// rclone backend uses it over rclone's standard input and output).
// Errors for 401, 403, 404, 416 and 507 implement Permanent() bool = true;
// 5xx and network errors are transient and left to the retry layer.
package rest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/retry"
	"github.com/cairn-backup/cairn/internal/backend/stall"
	"github.com/cairn-backup/cairn/internal/core"
)

// Content types of the two listing formats; requests always accept v2.
const (
	ContentTypeV1 = "application/vnd.x.restic.rest.v1"
	ContentTypeV2 = "application/vnd.x.restic.rest.v2"
)

// maxDrain is how much of an unread response body is read to keep the
// connection reusable. Past that, closing the connection and opening a new
// one is cheaper than reading the rest.
const maxDrain = 1 << 20

// maxErrorBody is how much of an error response body goes into the error.
const maxErrorBody = 512

// maxListBody bounds a listing response (a v2 entry is ~90 bytes, so this
// is tens of millions of files).
const maxListBody = 4 << 30

// Backend is a repository behind a REST server.
type Backend struct {
	base     *url.URL // repository URL without credentials, path ends in "/"
	user     *url.Userinfo
	location string
	conns    uint
	stall    time.Duration     // 0 or negative: no stall watchdog
	rt       http.RoundTripper // carries the requests
	client   *http.Client
	sem      chan struct{} // one token per request in flight
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Creator = (*Backend)(nil)
)

// Open returns a backend for the repository at cfg.URL. It does not
// contact the server.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open rest backend: %w", err)
	}
	if cfg.URL == nil {
		return nil, errors.New("open rest backend: no URL")
	}
	base := *cfg.URL
	user := base.User
	base.User = nil
	if !strings.HasSuffix(base.Path, "/") {
		return nil, fmt.Errorf("open rest backend %s: URL path must end in /", base.String())
	}
	conns := cfg.Connections
	if conns == 0 {
		conns = DefaultConnections
	}
	stallTimeout := cfg.StallTimeout
	if stallTimeout == 0 {
		stallTimeout = DefaultStallTimeout
	}
	rt := cfg.Transport
	if rt == nil {
		tr, err := newTransport(cfg, conns)
		if err != nil {
			return nil, fmt.Errorf("open rest backend %s: %w", base.String(), err)
		}
		rt = tr
	} else if cfg.CACert != "" || cfg.TLSClientCert != "" {
		return nil, fmt.Errorf("open rest backend %s: certificate options cannot be combined with a custom transport", base.String())
	}
	location := cfg.Location
	if location == "" {
		location = "rest:" + base.String()
	}
	b := &Backend{
		base:     &base,
		user:     user,
		location: location,
		conns:    conns,
		stall:    stallTimeout,
		rt:       rt,
		client: &http.Client{
			Transport: rt,
			// Never follow redirects: a redirected POST would lose its
			// body and credentials could leak to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sem: make(chan struct{}, conns),
	}
	return b, nil
}

// newTransport builds the pooled transport for cfg: as many idle and
// total connections as parallel requests.
func newTransport(cfg Config, conns uint) (*http.Transport, error) {
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		ForceAttemptHTTP2:   true,
		TLSClientConfig:     tc,
		MaxIdleConns:        int(conns),
		MaxIdleConnsPerHost: int(conns),
		MaxConnsPerHost:     int(conns),
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 30 * time.Second,
		// Stalls are detected by the request watchdog, which also covers
		// the wait for response headers.
		ResponseHeaderTimeout: 0,
	}, nil
}

// Create opens the backend and creates the repository on the server: the
// config must not exist yet (404 to HEAD), then POST ?create=true.
func Create(ctx context.Context, cfg Config) (*Backend, error) {
	return backend.OpenCreate(ctx, func(ctx context.Context) (*Backend, error) { return Open(ctx, cfg) })
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA certificate %s: no certificates found", cfg.CACert)
		}
		tc.RootCAs = pool
	}
	if cfg.TLSClientCert != "" {
		pem, err := os.ReadFile(cfg.TLSClientCert)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		// One file holds both the certificate and its key.
		cert, err := tls.X509KeyPair(pem, pem)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s: %w", cfg.TLSClientCert, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.location }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return b.conns }

// Close implements backend.Backend: it closes idle connections.
func (b *Backend) Close() error {
	if c, ok := b.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	return nil
}

// urlFor returns the URL of rel below the repository.
func (b *Backend) urlFor(rel string) string {
	u := *b.base
	u.Path = b.base.Path + rel
	if b.base.RawPath != "" {
		u.RawPath = b.base.RawPath + rel
	}
	return u.String()
}

// objectURL is the URL of a file: {path}config or {path}{type}/{name}
// (never with a data/xx subdirectory).
func (b *Backend) objectURL(h backend.Handle) string {
	if h.Type == core.ConfigFile {
		return b.urlFor("config")
	}
	return b.urlFor(h.Type.String() + "/" + h.Name)
}

// response is an open response; release must be called exactly once.
type response struct {
	*http.Response
	release func()
}

// do sends one request under the semaphore and the stall watchdog. body
// may be nil; length is its exact size. On success the caller must call
// resp.release(), which drains and closes the body and frees the slot.
func (b *Backend) do(ctx context.Context, method, u string, body io.Reader, length int64, hdr http.Header) (*response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	rctx, cancel := context.WithCancelCause(ctx)
	watch := stall.New(b.stall, func() { cancel(stall.ErrStalled) })
	cleanup := func() {
		watch.Stop()
		cancel(nil)
		<-b.sem
	}

	var rbody io.Reader
	var guard *guardedReader
	if body != nil && length > 0 {
		guard = &guardedReader{rd: backend.NewExactBody(body, length), ctx: rctx, onRead: watch.Progress}
		rbody = guard
	} else if body != nil {
		rbody = http.NoBody
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rbody)
	if err != nil {
		cleanup()
		return nil, retry.Permanent(err)
	}
	if rbody != nil {
		req.ContentLength = length // explicit: never chunked
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", ContentTypeV2)
	if b.user != nil {
		pass, _ := b.user.Password()
		req.SetBasicAuth(b.user.Username(), pass)
	}

	// Watched until the response headers arrive; every read of the
	// request body by the transport counts as progress.
	watch.Begin()
	resp, err := b.client.Do(req)
	watch.End()
	// The transport may still hold the body in another goroutine; cut it
	// off so the caller can rewind or reuse its reader safely.
	guard.close()
	if err != nil {
		if watch.Stalled() {
			err = watch.Err("request")
		}
		cleanup()
		return nil, redactURLError(err)
	}
	// Reads of the body are watched while they wait on the server, so a
	// slow consumer never counts as a stalled server.
	resp.Body = watch.ReadCloser("response body", resp.Body)
	var once sync.Once
	return &response{Response: resp, release: func() {
		once.Do(func() {
			drainAndClose(resp.Body)
			cleanup()
		})
	}}, nil
}

// drainAndClose reads what is left of a body (up to maxDrain) so the
// connection can be reused, then closes it.
func drainAndClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, maxDrain))
	_ = rc.Close()
}

// statusError builds the error for an unexpected status, reading the
// start of the body for the message.
func (b *Backend) statusError(op string, resp *response, kind error) error {
	buf, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	u := *resp.Request.URL
	u.User = nil
	return &StatusError{
		Op: op, Method: resp.Request.Method, URL: u.String(),
		StatusCode: resp.StatusCode, Status: resp.Status,
		Server: resp.Header.Get("Server"), Body: string(buf), kind: kind,
	}
}

// kindFor maps a status to the backend sentinel error it stands for.
func kindFor(code int) error {
	switch code {
	case http.StatusNotFound:
		return backend.ErrNotExist
	case http.StatusInsufficientStorage:
		return backend.ErrNoSpace
	}
	return nil
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	length, err := backend.CheckSave(h, rd)
	if err != nil {
		return retry.Permanent(fmt.Errorf("save %v: %w", h, err))
	}
	if length == 0 {
		// No body is sent: make sure the reader is really empty.
		if err := backend.ProbeEOF(rd); err != nil {
			return fmt.Errorf("save %v: %w", h, err)
		}
	}
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, err := b.do(ctx, http.MethodPost, b.objectURL(h), rd, length, hdr)
	if err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	defer resp.release()
	if resp.StatusCode != http.StatusOK {
		kind := kindFor(resp.StatusCode)
		if resp.StatusCode == http.StatusForbidden {
			kind = backend.ErrAlreadyExists
		}
		return fmt.Errorf("save %v: %w", h, b.statusError("save", resp, kind))
	}
	return nil
}

// Load implements backend.Backend. It always sends a Range header and
// accepts 200 (skipping to offset itself) or 206 (checking Content-Range).
// A body shorter than the requested range is an error wrapping
// io.ErrUnexpectedEOF.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if err := backend.CheckLoad(h, length, offset); err != nil {
		return retry.Permanent(fmt.Errorf("load %v: %w", h, err))
	}
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 {
		rng = fmt.Sprintf("bytes=%d-%d", offset, offset+int64(length)-1)
	}
	resp, err := b.do(ctx, http.MethodGet, b.objectURL(h), nil, 0, http.Header{"Range": {rng}})
	if err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer resp.release()

	want := int64(-1) // bytes fn must get; -1: up to the end, as the server says
	if length > 0 {
		want = int64(length)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		// The server ignored the range and sent the whole file.
		if offset > 0 {
			n, err := io.CopyN(io.Discard, resp.Body, offset)
			if err != nil {
				return fmt.Errorf("load %v: skip to offset %d (got %d bytes): %w", h, offset, n, backend.UnexpectedEOF(err))
			}
		}
		if want < 0 && resp.ContentLength >= 0 {
			want = resp.ContentLength - offset
		}
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		start, end, _, ok := backend.ParseContentRange(cr)
		if !ok || start != offset {
			return fmt.Errorf("load %v: server sent Content-Range %q for offset %d", h, cr, offset)
		}
		if got := end - start + 1; want < 0 {
			want = got
		} else if got < want {
			return fmt.Errorf("load %v: server has only %d of %d bytes at offset %d: %w", h, got, want, offset, io.ErrUnexpectedEOF)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// The offset is at or past the end of the file. Reading zero bytes
		// at the very end is valid; anything else is past the end.
		serr := b.statusError("load", resp, nil)
		resp.release()
		fi, err := b.Stat(ctx, h)
		if err != nil {
			return fmt.Errorf("load %v: %w", h, errors.Join(serr, err))
		}
		switch {
		case offset > fi.Size:
			return fmt.Errorf("load %v: offset %d beyond end of %d-byte file: %w", h, offset, fi.Size, serr)
		case length > 0 && offset+int64(length) > fi.Size:
			return fmt.Errorf("load %v: range %d+%d beyond end of %d-byte file: %w", h, offset, length, fi.Size, io.ErrUnexpectedEOF)
		case offset == fi.Size:
			if err := fn(bytes.NewReader(nil)); err != nil {
				return fmt.Errorf("load %v: %w", h, err)
			}
			return nil
		}
		return fmt.Errorf("load %v: %w", h, serr)
	default:
		return fmt.Errorf("load %v: %w", h, b.statusError("load", resp, kindFor(resp.StatusCode)))
	}

	var rd io.Reader = resp.Body
	if want >= 0 {
		rd = backend.NewExactReader(resp.Body, want, "response body")
	}
	if err := fn(rd); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	return nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return backend.FileInfo{}, retry.Permanent(fmt.Errorf("stat %v: %w", h, err))
	}
	resp, err := b.do(ctx, http.MethodHead, b.objectURL(h), nil, 0, nil)
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, err)
	}
	defer resp.release()
	if resp.StatusCode != http.StatusOK {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, b.statusError("stat", resp, kindFor(resp.StatusCode)))
	}
	if resp.ContentLength < 0 {
		return backend.FileInfo{}, fmt.Errorf("stat %v: server sent no Content-Length", h)
	}
	return backend.FileInfo{Name: h.Name, Size: resp.ContentLength}, nil
}

// List implements backend.Backend. The whole listing is read before fn is
// called, so fn may use the backend (even with Connections = 1). A 404 is
// an empty list (the type directory does not exist yet), except from
// rclone, whose 404 means the repository is missing.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if t == core.ConfigFile {
		return backend.ListConfig(ctx, b.Stat, fn)
	}
	if err := backend.CheckListType(t); err != nil {
		return retry.Permanent(fmt.Errorf("list: %w", err))
	}
	entries, v2, err := b.fetchList(ctx, t)
	if err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		if !core.IsValidName(e.Name) {
			continue // not a repository file (e.g. a server's temporary file)
		}
		fi := backend.FileInfo{Name: e.Name, Size: e.Size}
		if !v2 {
			// v1 lists names only: ask for each size.
			fi, err = b.Stat(ctx, backend.Handle{Type: t, Name: e.Name})
			if backend.IsNotExist(err) {
				continue // removed since it was listed
			}
			if err != nil {
				return fmt.Errorf("list %v: %w", t, err)
			}
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

type listEntry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// fetchList reads and decodes one listing; v2 reports whether sizes are
// included.
func (b *Backend) fetchList(ctx context.Context, t core.FileType) ([]listEntry, bool, error) {
	resp, err := b.do(ctx, http.MethodGet, b.urlFor(t.String()+"/"), nil, 0, nil)
	if err != nil {
		return nil, false, err
	}
	defer resp.release()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		if strings.HasPrefix(resp.Header.Get("Server"), "rclone/") {
			return nil, false, b.statusError("list", resp, nil)
		}
		return nil, true, nil
	default:
		return nil, false, b.statusError("list", resp, kindFor(resp.StatusCode))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody+1))
	if err != nil {
		return nil, false, fmt.Errorf("read listing: %w", err)
	}
	if int64(len(data)) > maxListBody {
		return nil, false, fmt.Errorf("listing larger than %d bytes", int64(maxListBody))
	}
	if resp.Header.Get("Content-Type") == ContentTypeV2 {
		var entries []listEntry
		if err := decodeJSONArray(data, &entries); err != nil {
			return nil, false, fmt.Errorf("decode v2 listing: %w", err)
		}
		for _, e := range entries {
			if e.Size < 0 {
				return nil, false, fmt.Errorf("decode v2 listing: negative size %d for %q", e.Size, e.Name)
			}
		}
		return entries, true, nil
	}
	var names []string
	if err := decodeJSONArray(data, &names); err != nil {
		return nil, false, fmt.Errorf("decode v1 listing: %w", err)
	}
	entries := make([]listEntry, len(names))
	for i, n := range names {
		entries[i] = listEntry{Name: n, Size: -1}
	}
	return entries, false, nil
}

// decodeJSONArray decodes data, which must be exactly one JSON array
// (not null, no trailing data).
func decodeJSONArray(data []byte, v any) error {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '[' {
		return errors.New("not a JSON array")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON array")
	}
	return nil
}

// Remove implements backend.Backend. A missing file (404) is success.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return retry.Permanent(fmt.Errorf("remove %v: %w", h, err))
	}
	resp, err := b.do(ctx, http.MethodDelete, b.objectURL(h), nil, 0, nil)
	if err != nil {
		return fmt.Errorf("remove %v: %w", h, err)
	}
	defer resp.release()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNotFound:
		return nil
	}
	return fmt.Errorf("remove %v: %w", h, b.statusError("remove", resp, kindFor(resp.StatusCode)))
}

// Create implements backend.Creator: it refuses if the config exists and
// asks the server to create the repository.
func (b *Backend) Create(ctx context.Context) error {
	_, err := b.Stat(ctx, backend.Handle{Type: core.ConfigFile})
	switch {
	case err == nil:
		return retry.Permanent(fmt.Errorf("create repository at %s: config already exists: %w", b.location, backend.ErrAlreadyExists))
	case !backend.IsNotExist(err):
		return fmt.Errorf("create repository at %s: %w", b.location, err)
	}
	return b.CreateLayout(ctx)
}

// CreateLayout asks the server to create the repository (POST
// ?create=true) without first checking that no config exists. It is
// idempotent on servers that keep what exists (rclone); Create is the
// checked form.
func (b *Backend) CreateLayout(ctx context.Context) error {
	hdr := http.Header{"Content-Type": {"binary/octet-stream"}}
	resp, err := b.do(ctx, http.MethodPost, b.urlFor("")+"?create=true", bytes.NewReader(nil), 0, hdr)
	if err != nil {
		return fmt.Errorf("create repository at %s: %w", b.location, err)
	}
	defer resp.release()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("create repository at %s: %w", b.location, b.statusError("create", resp, kindFor(resp.StatusCode)))
	}
	return nil
}

// errBodyClosed is returned by reads of a request body after the request
// finished.
var errBodyClosed = errors.New("request body read after the request finished")

// guardedReader wraps a request body: it calls onRead before every read
// (feeding the stall watchdog) and, once closed, refuses further reads
// without touching the underlying reader.
//
// It also stops handing out data once ctx is done, even if the underlying
// reader keeps delivering: a cancelled Save must not complete its body on
// the wire behind the caller's back.
type guardedReader struct {
	mu     sync.Mutex // guards closed and serialises reads with close
	closed bool
	rd     io.Reader
	ctx    context.Context
	onRead func()
}

func (r *guardedReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errBodyClosed
	}
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	r.onRead()
	n, err := r.rd.Read(p)
	if cerr := r.ctx.Err(); cerr != nil {
		return 0, cerr
	}
	return n, err
}

// close waits for a read in progress and stops all later ones. A nil
// *guardedReader does nothing.
func (r *guardedReader) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}
