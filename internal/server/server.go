// Package server implements `cairn serve`: an HTTP handler speaking
// restic's REST protocol (v1 and v2) with rest-server's routing, status
// codes and options (append-only, private repositories, htpasswd
// authentication, a global size quota, Prometheus metrics), on top of a
// Store of repositories.
//
// Uploads are verified while they stream: the body must have exactly
// Content-Length bytes and (for objects) a SHA-256 equal to the object's
// name, or the backend's Save gets a read error and publishes nothing
// (hazards H20, H23). Objects are never overwritten (403), and with
// --append-only nothing but locks can be deleted (H25). Paths are parsed
// component by component after percent-decoding, so encoded slashes,
// dot segments, NUL bytes and empty components never reach the file
// system (H27). Server-side bookkeeping (the quota, the creation lock)
// lives in memory or under Config.RuntimeDir, never inside a repository
// (H08).
package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/core"
)

// Content types of the two listing formats.
const (
	ContentTypeV1 = "application/vnd.x.restic.rest.v1"
	ContentTypeV2 = "application/vnd.x.restic.rest.v2"
)

// DefaultStallTimeout is used when Config.StallTimeout is zero.
const DefaultStallTimeout = 5 * time.Minute

// Config configures the handler.
type Config struct {
	// AppendOnly refuses DELETE for everything but locks (403).
	AppendOnly bool
	// PrivateRepos restricts each user to repositories whose first folder
	// component is the user name (others get 401). No effect with NoAuth.
	PrivateRepos bool
	// NoAuth disables authentication. Without it HtpasswdFile is required.
	NoAuth bool
	// HtpasswdFile holds "user:hash" lines (bcrypt or {SHA}).
	HtpasswdFile string
	// HtpasswdCheckInterval is the minimum time between two checks of the
	// htpasswd file for changes (default 30 s).
	HtpasswdCheckInterval time.Duration
	// Prometheus serves metrics at /metrics; with PrometheusNoAuth that
	// endpoint needs no credentials.
	Prometheus       bool
	PrometheusNoAuth bool
	// NoVerifyUpload skips the check that an uploaded object's SHA-256
	// equals its name (rest-server's --no-verify-upload); the length is
	// still checked. Meant for tests whose data is not content-addressed.
	NoVerifyUpload bool
	// MaxSize, if positive, is a quota in bytes over the whole store; the
	// store must implement UsageReporter.
	MaxSize int64
	// StallTimeout aborts a request whose body read or response write
	// makes no progress for this long (default DefaultStallTimeout;
	// negative disables). It bounds stalls, not total transfer time.
	StallTimeout time.Duration
	// Logger receives the access log and errors (nil: discard).
	Logger *slog.Logger
	// RuntimeDir, if set, is where the server keeps its lock file that
	// stops two servers from serving the same store at once (their
	// in-memory quota and creation locks would not see each other). It
	// must not be inside a repository.
	RuntimeDir string
}

// Handler is the REST server's http.Handler.
type Handler struct {
	store   Store
	cfg     Config
	log     *slog.Logger
	stall   time.Duration
	auth    *htpasswd     // nil with NoAuth
	quota   *quota        // nil without MaxSize
	metrics *metrics      // nil without Prometheus
	objLock *keyedMutex   // serialises stat+remove per object for accounting
	closeMu sync.Mutex    // guards runLock
	runLock *os.File      // flock'ed lock file in RuntimeDir, or nil
	reqID   atomic.Uint64 // request counter for log correlation
}

var _ http.Handler = (*Handler)(nil)

// New returns a handler serving store. ctx bounds the startup work (the
// quota's walk over the store).
func New(ctx context.Context, store Store, cfg Config) (*Handler, error) {
	if store == nil {
		return nil, errors.New("server: no store")
	}
	h := &Handler{store: store, cfg: cfg, log: cfg.Logger, objLock: newKeyedMutex()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.stall = cfg.StallTimeout
	if h.stall == 0 {
		h.stall = DefaultStallTimeout
	}
	if !cfg.NoAuth {
		if cfg.HtpasswdFile == "" {
			return nil, errors.New("server: authentication needs an htpasswd file (or disable it explicitly)")
		}
		a, err := newHtpasswd(cfg.HtpasswdFile, cfg.HtpasswdCheckInterval, h.log)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		h.auth = a
	}
	if cfg.RuntimeDir != "" {
		if r, ok := store.(interface{ Root() string }); ok {
			if inside(cfg.RuntimeDir, r.Root()) {
				return nil, fmt.Errorf("server: runtime dir %s is inside the served directory %s (server state must never live in a repository)", cfg.RuntimeDir, r.Root())
			}
			f, err := lockRuntime(cfg.RuntimeDir, r.Root())
			if err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
			h.runLock = f
		}
	}
	if cfg.MaxSize > 0 {
		q, err := newQuota(ctx, store, cfg.MaxSize)
		if err != nil {
			_ = h.Close()
			return nil, fmt.Errorf("server: %w", err)
		}
		h.quota = q
		h.log.Info("quota enabled", "max_bytes", cfg.MaxSize, "used_bytes", q.usage())
	}
	if cfg.Prometheus {
		m, err := newMetrics()
		if err != nil {
			_ = h.Close()
			return nil, fmt.Errorf("server: %w", err)
		}
		h.metrics = m
	}
	return h, nil
}

// inside reports whether path is root or below it.
func inside(path, root string) bool {
	p, err1 := filepath.Abs(path)
	r, err2 := filepath.Abs(root)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(r, p)
	return err == nil && filepath.IsLocal(rel) // "." (root itself) is local too
}

// lockRuntime takes an exclusive flock on a file in dir named after root.
func lockRuntime(dir, root string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runtime dir: %w", err)
	}
	sum := sha256.Sum256([]byte(root))
	name := filepath.Join(dir, "cairn-serve-"+hex.EncodeToString(sum[:8])+".lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("runtime lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("runtime lock %s: another server is serving %s", name, root)
		}
		return nil, fmt.Errorf("runtime lock %s: %w", name, err)
	}
	// The content is informational only; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d serving %s\n", os.Getpid(), root)), 0)
	}
	return f, nil
}

// Close releases the runtime lock. It does not close the store.
func (h *Handler) Close() error {
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	if h.runLock == nil {
		return nil
	}
	err := h.runLock.Close() // closing the descriptor releases the flock
	h.runLock = nil
	if err != nil {
		return fmt.Errorf("server: release runtime lock: %w", err)
	}
	return nil
}

// ReloadHtpasswd re-reads the htpasswd file now (for SIGHUP).
func (h *Handler) ReloadHtpasswd() error {
	if h.auth == nil {
		return nil
	}
	return h.auth.reload()
}

// reqInfo collects what the access log reports about one request.
type reqInfo struct {
	user    string
	repo    string
	err     error // internal error behind a 4xx/5xx, for the log
	bytesIn int64
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := http.NewResponseController(w)
	watch := newStallWatch(h.stall, func() {
		// Unblock a stalled read or write; the request then fails.
		now := time.Now()
		_ = rc.SetReadDeadline(now)
		_ = rc.SetWriteDeadline(now)
	})
	defer watch.stop()
	rw := &respWriter{ResponseWriter: w, watch: watch}
	info := &reqInfo{}
	id := h.reqID.Add(1)

	defer func() {
		p := recover()
		status := rw.status
		if p != nil {
			status = 0 // aborted mid-response
		}
		if status == 0 && p == nil {
			status = http.StatusOK
		}
		attrs := []any{
			"id", id, "method", r.Method, "path", r.URL.EscapedPath(), "status", status,
			"bytes_out", rw.bytes, "bytes_in", info.bytesIn,
			"duration", time.Since(start), "user", info.user, "remote", r.RemoteAddr,
		}
		if info.err != nil {
			attrs = append(attrs, "err", info.err.Error())
		}
		switch {
		case p != nil:
			h.log.Warn("request aborted", attrs...)
		case status >= 500:
			h.log.Error("request", attrs...)
		default:
			h.log.Info("request", attrs...)
		}
		if p != nil {
			panic(p)
		}
	}()

	h.serve(rw, r, info)
}

func (h *Handler) serve(w *respWriter, r *http.Request, info *reqInfo) {
	path := r.URL.EscapedPath()
	if h.metrics != nil && path == "/metrics" {
		h.serveMetrics(w, r, info)
		return
	}
	user, ok := h.authenticate(r)
	if !ok {
		httpError(w, http.StatusUnauthorized)
		return
	}
	info.user = user
	rt, ok := parsePath(path)
	if !ok {
		httpError(w, http.StatusNotFound)
		return
	}
	info.repo = rt.repoPath()
	if h.cfg.PrivateRepos && h.auth != nil && (len(rt.folder) == 0 || rt.folder[0] != user) {
		httpError(w, http.StatusUnauthorized)
		return
	}
	switch rt.kind {
	case routeRepo:
		h.serveRepo(w, r, rt, info)
	case routeList:
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			httpError(w, http.StatusMethodNotAllowed)
			return
		}
		h.serveList(w, r, rt, info)
	case routeConfig, routeObject:
		switch r.Method {
		case http.MethodHead:
			h.serveHead(w, r, rt, info)
		case http.MethodGet:
			h.serveGet(w, r, rt, info)
		case http.MethodPost:
			h.servePost(w, r, rt, info)
		case http.MethodDelete:
			h.serveDelete(w, r, rt, info)
		default:
			w.Header().Set("Allow", "DELETE, GET, HEAD, POST")
			httpError(w, http.StatusMethodNotAllowed)
		}
	default:
		httpError(w, http.StatusNotFound)
	}
}

// authenticate returns the user name, or false for missing or wrong
// credentials. With NoAuth every request is anonymous.
func (h *Handler) authenticate(r *http.Request) (string, bool) {
	if h.auth == nil {
		return "", true
	}
	user, pass, ok := r.BasicAuth()
	if !ok || !h.auth.verify(user, pass) {
		return "", false
	}
	return user, true
}

// httpError answers with the status text as body (so 401 has the body
// "Unauthorized", as rest-server sends, and no WWW-Authenticate header).
func httpError(w http.ResponseWriter, code int) {
	w.Header().Del("Content-Range")
	w.Header().Del("Accept-Ranges")
	http.Error(w, http.StatusText(code), code)
}

// fail answers code and records err for the access log.
func fail(w http.ResponseWriter, info *reqInfo, code int, err error) {
	if err != nil && info.err == nil {
		info.err = err
	}
	httpError(w, code)
}

// isNoSpace reports whether err means the storage is full.
func isNoSpace(err error) bool {
	return errors.Is(err, backend.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// errStatus maps a backend error to a status code.
func errStatus(err error) int {
	switch {
	case backend.IsNotExist(err):
		return http.StatusNotFound
	case isNoSpace(err):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

func (h *Handler) serveRepo(w *respWriter, r *http.Request, rt route, info *reqInfo) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		httpError(w, http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Query().Get("create") != "true" {
		httpError(w, http.StatusBadRequest)
		return
	}
	if err := h.store.Create(r.Context(), rt.repoPath()); err != nil {
		fail(w, info, errStatus(err), err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// openRepo opens the route's repository, answering 404/500 itself on error.
func (h *Handler) openRepo(w *respWriter, r *http.Request, rt route, info *reqInfo) (backend.Backend, bool) {
	be, err := h.store.Open(r.Context(), rt.repoPath())
	if err != nil {
		fail(w, info, errStatus(err), err)
		return nil, false
	}
	return be, true
}

func (rt route) handle() backend.Handle { return backend.Handle{Type: rt.ftype, Name: rt.name} }

// acceptsV2 reports whether the Accept header asks for listing format v2.
func acceptsV2(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == ContentTypeV2 {
				return true
			}
		}
	}
	return false
}

func (h *Handler) serveList(w *respWriter, r *http.Request, rt route, info *reqInfo) {
	ctx := r.Context()
	ok, err := h.store.Exists(ctx, rt.repoPath())
	if err != nil {
		fail(w, info, http.StatusInternalServerError, err)
		return
	}
	if !ok {
		httpError(w, http.StatusNotFound)
		return
	}
	be, ok := h.openRepo(w, r, rt, info)
	if !ok {
		return
	}
	v2 := acceptsV2(r)
	if v2 {
		w.Header().Set("Content-Type", ContentTypeV2)
	} else {
		w.Header().Set("Content-Type", ContentTypeV1)
	}

	// The listing is streamed. An error before the first entry is a 500;
	// an error after it aborts the response, so the client sees a
	// truncated body and never mistakes it for a complete list (H24).
	started := false
	begin := func() error {
		if !started {
			started = true
			w.WriteHeader(http.StatusOK)
			_, err := io.WriteString(w, "[")
			return err
		}
		_, err := io.WriteString(w, ",")
		return err
	}
	err = be.List(ctx, rt.ftype, func(fi backend.FileInfo) error {
		if !core.IsValidName(fi.Name) {
			return nil
		}
		var buf []byte
		var err error
		if v2 {
			buf, err = json.Marshal(struct {
				Name string `json:"name"`
				Size int64  `json:"size"`
			}{fi.Name, fi.Size})
		} else {
			buf, err = json.Marshal(fi.Name)
		}
		if err != nil {
			return err
		}
		if err := begin(); err != nil {
			return err
		}
		_, err = w.Write(buf)
		return err
	})
	if err != nil {
		if !started {
			fail(w, info, errStatus(err), err)
			return
		}
		info.err = err
		panic(http.ErrAbortHandler)
	}
	if !started {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "[")
	}
	_, _ = io.WriteString(w, "]")
}

func (h *Handler) serveHead(w *respWriter, r *http.Request, rt route, info *reqInfo) {
	be, ok := h.openRepo(w, r, rt, info)
	if !ok {
		return
	}
	fi, err := be.Stat(r.Context(), rt.handle())
	if err != nil {
		fail(w, info, errStatus(err), err)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size, 10))
	w.WriteHeader(http.StatusOK)
}

// parseRange interprets a Range header for a file of size bytes. It
// returns the byte range to send, whether to answer 206, and false if the
// range cannot be satisfied (416). Only one "bytes=" range is supported.
func parseRange(header string, size int64) (start, length int64, partial, ok bool) {
	if header == "" {
		return 0, size, false, true
	}
	spec, found := strings.CutPrefix(header, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	spec = strings.TrimSpace(spec)
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, false
	}
	if first == "" { // suffix range: the last n bytes
		n, ok := parseDigits(last)
		if !ok || n == 0 {
			return 0, 0, false, false
		}
		if size == 0 {
			return 0, 0, false, true
		}
		n = min(n, size)
		return size - n, n, true, true
	}
	s, ok := parseDigits(first)
	if !ok {
		return 0, 0, false, false
	}
	end := size - 1
	if last != "" {
		e, ok := parseDigits(last)
		if !ok || e < s {
			return 0, 0, false, false
		}
		end = min(e, size-1)
	}
	if size == 0 && s == 0 && last == "" {
		// "bytes=0-" of an empty file: send the (empty) whole file.
		return 0, 0, false, true
	}
	if s >= size {
		return 0, 0, false, false
	}
	return s, end - s + 1, true, true
}

// parseDigits parses a non-empty decimal number without sign.
func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func (h *Handler) serveGet(w *respWriter, r *http.Request, rt route, info *reqInfo) {
	ctx := r.Context()
	be, ok := h.openRepo(w, r, rt, info)
	if !ok {
		return
	}
	hd := rt.handle()
	fi, err := be.Stat(ctx, hd)
	if err != nil {
		fail(w, info, errStatus(err), err)
		return
	}
	start, length, partial, ok := parseRange(r.Header.Get("Range"), fi.Size)
	if !ok {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", fi.Size))
		http.Error(w, http.StatusText(http.StatusRequestedRangeNotSatisfiable), http.StatusRequestedRangeNotSatisfiable)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("Content-Length", strconv.FormatInt(length, 10))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, fi.Size))
	}

	sent := false
	var n int64
	loadLen := int(length)
	if start+length == fi.Size {
		loadLen = 0 // to the end
	}
	err = be.Load(ctx, hd, loadLen, start, func(rd io.Reader) error {
		if sent {
			return errors.New("load retried after the response started")
		}
		sent = true
		w.WriteHeader(status)
		var err error
		n, err = io.Copy(w, io.LimitReader(rd, length))
		if err == nil && n != length {
			err = fmt.Errorf("sent %d of %d bytes: %w", n, length, io.ErrUnexpectedEOF)
		}
		return err
	})
	if h.metrics != nil && rt.kind == routeObject && sent {
		h.metrics.read(info, rt, n)
	}
	if err != nil {
		if !sent {
			fail(w, info, errStatus(err), err)
			return
		}
		// Headers (with Content-Length) are out: cut the connection so the
		// client sees a short body instead of a wrong one.
		info.err = err
		panic(http.ErrAbortHandler)
	}
}

func (h *Handler) servePost(w *respWriter, r *http.Request, rt route, info *reqInfo) {
	ctx := r.Context()
	if r.ContentLength < 0 {
		httpError(w, http.StatusLengthRequired)
		return
	}
	be, ok := h.openRepo(w, r, rt, info)
	if !ok {
		return
	}
	hd := rt.handle()
	// Fast refusal of an existing file, before the body is read; Save
	// itself refuses atomically in case of a race.
	if _, err := be.Stat(ctx, hd); err == nil {
		httpError(w, http.StatusForbidden)
		return
	} else if !backend.IsNotExist(err) {
		fail(w, info, errStatus(err), err)
		return
	}
	size := r.ContentLength
	if h.quota != nil {
		if !h.quota.reserve(size) {
			fail(w, info, http.StatusInsufficientStorage, fmt.Errorf("quota: %d bytes would exceed %d (used %d)", size, h.quota.max, h.quota.usage()))
			return
		}
	}
	body := &watchedReader{rd: r.Body, watch: w.watch}
	verifyName := rt.name
	if h.cfg.NoVerifyUpload {
		verifyName = ""
	}
	vr, err := newVerifyReader(body, size, verifyName)
	if err != nil {
		if h.quota != nil {
			h.quota.release(size)
		}
		fail(w, info, http.StatusBadRequest, err)
		return
	}
	err = be.Save(ctx, hd, vr)
	info.bytesIn = vr.n
	if err == nil && !vr.complete() {
		// The backend reported success without consuming and verifying
		// the whole body: never keep unverified data.
		err = fmt.Errorf("backend stored an unverified upload (%d of %d bytes read)", vr.n, size)
		if rerr := be.Remove(context.WithoutCancel(ctx), hd); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		if h.quota != nil {
			h.quota.release(size)
		}
		switch {
		case vr.err != nil:
			fail(w, info, http.StatusBadRequest, err)
		case errors.Is(err, backend.ErrAlreadyExists):
			fail(w, info, http.StatusForbidden, err)
		default:
			fail(w, info, errStatus(err), err)
		}
		return
	}
	if h.metrics != nil && rt.kind == routeObject {
		h.metrics.write(info, rt, size)
	}
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) serveDelete(w *respWriter, r *http.Request, rt route, info *reqInfo) {
	ctx := r.Context()
	if h.cfg.AppendOnly && rt.ftype != core.LockFile {
		httpError(w, http.StatusForbidden)
		return
	}
	be, ok := h.openRepo(w, r, rt, info)
	if !ok {
		return
	}
	hd := rt.handle()
	size := int64(-1)
	if h.quota != nil || h.metrics != nil {
		// Stat and remove under a per-object lock, so two concurrent
		// deletes of one file do not both subtract its size.
		unlock := h.objLock.lock(rt.repoPath() + "\x00" + backend.Path(hd))
		defer unlock()
		fi, err := be.Stat(ctx, hd)
		switch {
		case err == nil:
			size = fi.Size
		case !backend.IsNotExist(err):
			fail(w, info, errStatus(err), err)
			return
		}
	}
	if err := be.Remove(ctx, hd); err != nil {
		fail(w, info, errStatus(err), err)
		return
	}
	if size >= 0 {
		if h.quota != nil {
			h.quota.release(size)
		}
		if h.metrics != nil && rt.kind == routeObject {
			h.metrics.delete(info, rt, size)
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) serveMetrics(w *respWriter, r *http.Request, info *reqInfo) {
	if !h.cfg.PrometheusNoAuth {
		user, ok := h.authenticate(r)
		if !ok || (h.cfg.PrivateRepos && h.auth != nil && user != "metrics") {
			httpError(w, http.StatusUnauthorized)
			return
		}
		info.user = user
	}
	h.metrics.handler.ServeHTTP(w, r)
}

// respWriter records the status and byte count for the access log and
// feeds the stall watchdog.
type respWriter struct {
	http.ResponseWriter
	watch  *stallWatch
	status int
	bytes  int64
}

func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.watch.arm()
	n, err := w.ResponseWriter.Write(p)
	w.watch.disarm()
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// watchedReader feeds the stall watchdog while reading a request body.
type watchedReader struct {
	rd    io.Reader
	watch *stallWatch
}

func (r *watchedReader) Read(p []byte) (int, error) {
	r.watch.arm()
	n, err := r.rd.Read(p)
	r.watch.disarm()
	return n, err
}

// stallWatch calls abort when an armed read or write has not returned
// within d. A nil *stallWatch does nothing.
type stallWatch struct {
	d time.Duration
	t *time.Timer
}

func newStallWatch(d time.Duration, abort func()) *stallWatch {
	if d <= 0 {
		return nil
	}
	t := time.AfterFunc(time.Hour, abort)
	t.Stop()
	return &stallWatch{d: d, t: t}
}

func (s *stallWatch) arm() {
	if s != nil {
		s.t.Reset(s.d)
	}
}

func (s *stallWatch) disarm() {
	if s != nil {
		s.t.Stop()
	}
}

func (s *stallWatch) stop() { s.disarm() }
