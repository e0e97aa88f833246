// Package s3 stores a repository in an S3 bucket (AWS or any compatible
// server), under an optional key prefix, using the standard layout
// (<prefix>/config, <prefix>/data/xx/<id>, <prefix>/index/<id>, ...).
//
// Saves are single PUTs up to Config.PartSize and multipart uploads above
// it; both are atomic on S3: an object becomes visible only complete, and a
// failed or aborted upload leaves nothing under its name. The body handed
// to the client is checked against the reader's length before its last
// byte goes out, and Content-MD5 lets the server reject a body that arrived
// damaged or short (hazard H23).
//
// No overwrite: every PUT carries If-None-Match: *, so a server with
// conditional writes (AWS since 2024, MinIO, versitygw) refuses to replace
// an existing object atomically. A server that answers 501 Not Implemented
// to that header is used without it from then on; before each upload Save
// also checks that the name is free. Without conditional writes two
// clients racing on one name may both succeed: for content-addressed files
// they wrote the same bytes, so only the config could be affected, and
// `init` does not run concurrently against one repository in practice.
//
// Every connection is guarded by a stall timeout (no byte moved in either
// direction for Config.StallTimeout aborts it, H30), the idle pool is as
// large as the number of parallel requests and bodies are drained before
// they are closed (H29), and listing errors are never reported as an empty
// listing (H24).
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/retry"
	"github.com/cairn-backup/cairn/internal/backend/stall"
	"github.com/cairn-backup/cairn/internal/core"
)

// maxDrain is how much of an unread response body is read to keep the
// connection reusable.
const maxDrain = 1 << 20

// Backend is a repository in an S3 bucket.
type Backend struct {
	cfg      Config
	core     *minio.Core
	tr       *http.Transport
	prefix   string // cfg.Prefix + "/", or "" for the bucket's root
	location string
	sem      chan struct{} // one token per request in flight
	// noConditional is set once the server answered 501 to If-None-Match;
	// accessed atomically.
	noConditional atomic.Bool
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Creator = (*Backend)(nil)
)

// Open returns a backend for the repository described by cfg. It does not
// contact the server.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	loc := cfg.location()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, fmt.Errorf("open %s: endpoint and bucket are required", loc)
	}
	if cfg.Connections == 0 {
		cfg.Connections = DefaultConnections
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize {
		return nil, fmt.Errorf("open %s: part size %d is below S3's minimum of %d bytes", loc, cfg.PartSize, minPartSize)
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	var lookup minio.BucketLookupType
	switch cfg.BucketLookup {
	case "", LookupAuto:
		lookup = minio.BucketLookupAuto
	case LookupDNS:
		lookup = minio.BucketLookupDNS
	case LookupPath:
		lookup = minio.BucketLookupPath
	default:
		return nil, fmt.Errorf("open %s: bucket lookup %q is not one of auto, dns, path", loc, cfg.BucketLookup)
	}

	tr, err := minio.DefaultTransport(!cfg.UseHTTP)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	stallTimeout := cfg.StallTimeout
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return c, err
		}
		return stall.NewConn(c, stallTimeout), nil
	}
	// Keep enough idle connections for every parallel request and the
	// listing, so connections are reused rather than left in TIME_WAIT.
	tr.MaxIdleConns = int(cfg.Connections) + 2
	tr.MaxIdleConnsPerHost = int(cfg.Connections) + 2
	tr.IdleConnTimeout = 90 * time.Second

	cl, err := minio.NewCore(cfg.Endpoint, &minio.Options{
		Creds:        credentialsFor(cfg),
		Secure:       !cfg.UseHTTP,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
		// Transient failures are retried by cairn's retry layer with its
		// own back-off; the client's own attempts only add delay. Two
		// attempts let it correct a wrong region once.
		MaxRetries: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	b := &Backend{
		cfg:      cfg,
		core:     cl,
		tr:       tr,
		location: loc,
		sem:      make(chan struct{}, cfg.Connections),
	}
	if cfg.Prefix != "" {
		b.prefix = cfg.Prefix + "/"
	}
	return b, nil
}

// Create opens the backend and creates the bucket if it does not exist.
func Create(ctx context.Context, cfg Config) (*Backend, error) {
	return backend.OpenCreate(ctx, func(ctx context.Context) (*Backend, error) { return Open(ctx, cfg) })
}

// credentialsFor builds the credential chain: explicit keys, else the
// AWS_* environment, else the shared credentials file; anonymous if none
// yields keys.
func credentialsFor(cfg Config) *credentials.Credentials {
	if cfg.KeyID != "" {
		return credentials.NewStaticV4(cfg.KeyID, cfg.Secret, cfg.SessionToken)
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Profile: cfg.Profile},
	})
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.location }

// Connections implements backend.Backend.
func (b *Backend) Connections() uint { return b.cfg.Connections }

// Close implements backend.Backend: it closes idle connections.
func (b *Backend) Close() error {
	b.tr.CloseIdleConnections()
	return nil
}

// key returns the object key of h.
func (b *Backend) key(h backend.Handle) string { return b.prefix + backend.Path(h) }

// acquire takes a request slot; release with <-b.sem.
func (b *Backend) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case b.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Backend) release() { <-b.sem }

// Create implements backend.Creator: it creates the bucket unless it
// exists. A bucket that exists but belongs to someone else is an error.
// Lacking the permission to check for the bucket is taken to mean it exists
// (restricted keys often may only access objects).
func (b *Backend) Create(ctx context.Context) error {
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("create bucket %s: %w", b.cfg.Bucket, err)
	}
	defer b.release()
	found, err := b.core.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "AccessDenied" {
			return nil
		}
		return fmt.Errorf("create bucket %s: check whether it exists: %w", b.cfg.Bucket, classify(err))
	}
	if found {
		return nil
	}
	err = b.core.MakeBucket(ctx, b.cfg.Bucket, minio.MakeBucketOptions{Region: b.cfg.Region})
	if err != nil {
		if minio.ToErrorResponse(err).Code == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return fmt.Errorf("create bucket %s: %w", b.cfg.Bucket, classify(err))
	}
	return nil
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	length, err := backend.CheckSave(h, rd)
	if err != nil {
		return retry.Permanent(fmt.Errorf("save %v: %w", h, err))
	}
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	defer b.release()
	key := b.key(h)

	// Refuse early, without uploading, if the name is taken. With
	// conditional writes the PUT itself re-checks atomically.
	if _, err := b.core.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{}); err == nil {
		return fmt.Errorf("save %v: %w", h, backend.ErrAlreadyExists)
	} else if !isNotFound(err) {
		return fmt.Errorf("save %v: check for an existing object: %w", h, classify(err))
	}

	for attempt := 0; ; attempt++ {
		conditional := !b.noConditional.Load()
		err := b.put(ctx, key, rd, length, conditional)
		if err == nil {
			return nil
		}
		resp := minio.ToErrorResponse(err)
		switch {
		case resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed":
			return fmt.Errorf("save %v: %w", h, backend.ErrAlreadyExists)
		case conditional && attempt == 0 && (resp.StatusCode == http.StatusNotImplemented || resp.Code == "NotImplemented"):
			// The server does not do conditional writes: go on without.
			b.noConditional.Store(true)
			if rerr := rd.Rewind(); rerr != nil {
				return fmt.Errorf("save %v: rewind: %w", h, rerr)
			}
			if _, serr := b.core.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{}); serr == nil {
				return fmt.Errorf("save %v: %w", h, backend.ErrAlreadyExists)
			}
			continue
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
		return fmt.Errorf("save %v: %w", h, classify(err))
	}
}

// put uploads rd as key.
func (b *Backend) put(ctx context.Context, key string, rd io.Reader, length int64, conditional bool) error {
	crd := backend.NewCtxReader(ctx, rd)
	if length == 0 {
		// No body is read: make sure the reader is really empty.
		if err := backend.ProbeEOF(crd); err != nil {
			return err
		}
	}
	body := backend.NewExactBody(crd, length)
	opts := minio.PutObjectOptions{
		ContentType:  "application/octet-stream",
		StorageClass: b.cfg.StorageClass,
		PartSize:     b.cfg.PartSize,
		// Content-MD5 on every PUT (and part): the server rejects a body
		// that is not what was sent.
		SendContentMd5: true,
		NumThreads:     1,
	}
	if conditional {
		opts.SetMatchETagExcept("*")
	}
	_, err := b.core.Client.PutObject(ctx, b.cfg.Bucket, key, body, length, opts)
	return err
}

// Load implements backend.Backend. A body shorter than the requested range
// is an error wrapping io.ErrUnexpectedEOF.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if err := backend.CheckLoad(h, length, offset); err != nil {
		return retry.Permanent(fmt.Errorf("load %v: %w", h, err))
	}
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer b.release()
	key := b.key(h)

	var opts minio.GetObjectOptions
	ranged := offset > 0 || length > 0
	if ranged {
		end := int64(0)
		if length > 0 {
			end = offset + int64(length) - 1
		}
		if err := opts.SetRange(offset, end); err != nil {
			return retry.Permanent(fmt.Errorf("load %v: %w", h, err))
		}
	}
	body, info, hdr, err := b.core.GetObject(ctx, b.cfg.Bucket, key, opts)
	if err != nil {
		if resp := minio.ToErrorResponse(err); resp.StatusCode == http.StatusRequestedRangeNotSatisfiable || resp.Code == "InvalidRange" {
			return b.loadOutOfRange(ctx, h, key, length, offset, fn, err)
		}
		return fmt.Errorf("load %v: %w", h, classify(err))
	}
	defer drainAndClose(body)

	var rd io.Reader = body
	want := info.Size // bytes fn must get
	if ranged && hdr.Get("Content-Range") == "" {
		// The server ignored the range and sent the whole object.
		if info.Size >= 0 && offset > info.Size {
			return retry.Permanent(fmt.Errorf("load %v: offset %d beyond end of %d-byte object", h, offset, info.Size))
		}
		if _, err := io.CopyN(io.Discard, body, offset); err != nil {
			return fmt.Errorf("load %v: skip to offset %d: %w", h, offset, backend.UnexpectedEOF(err))
		}
		want = info.Size - offset
	} else if ranged {
		start, _, _, ok := backend.ParseContentRange(hdr.Get("Content-Range"))
		if !ok || start != offset {
			return fmt.Errorf("load %v: server sent Content-Range %q for offset %d", h, hdr.Get("Content-Range"), offset)
		}
	}
	if length > 0 {
		if want < int64(length) {
			return fmt.Errorf("load %v: object has only %d of %d bytes at offset %d: %w", h, want, length, offset, io.ErrUnexpectedEOF)
		}
		want = int64(length)
	}
	if want < 0 {
		return fmt.Errorf("load %v: server sent no Content-Length", h)
	}
	rd = backend.NewExactReader(backend.NewCtxReader(ctx, rd), want, "response body")
	if err := fn(rd); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	return nil
}

// loadOutOfRange handles a 416 answer: the offset is at or past the end of
// the object (or the object is empty). Reading nothing at the very end is
// valid; anything else is past the end.
func (b *Backend) loadOutOfRange(ctx context.Context, h backend.Handle, key string, length int, offset int64, fn func(io.Reader) error, rangeErr error) error {
	info, err := b.core.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("load %v: %w", h, classify(err))
	}
	switch {
	case offset > info.Size:
		return retry.Permanent(fmt.Errorf("load %v: offset %d beyond end of %d-byte object: %w", h, offset, info.Size, rangeErr))
	case length > 0:
		return fmt.Errorf("load %v: range %d+%d beyond end of %d-byte object: %w", h, offset, length, info.Size, io.ErrUnexpectedEOF)
	}
	if err := fn(strings.NewReader("")); err != nil {
		return fmt.Errorf("load %v: %w", h, err)
	}
	return nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return backend.FileInfo{}, retry.Permanent(fmt.Errorf("stat %v: %w", h, err))
	}
	if err := b.acquire(ctx); err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, err)
	}
	defer b.release()
	info, err := b.core.StatObject(ctx, b.cfg.Bucket, b.key(h), minio.StatObjectOptions{})
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, classify(err))
	}
	if info.Size < 0 {
		return backend.FileInfo{}, fmt.Errorf("stat %v: server sent no size", h)
	}
	return backend.FileInfo{Name: h.Name, Size: info.Size}, nil
}

// List implements backend.Backend. Only well-formed names in the right
// place are reported (data/xx/<id> with xx matching the id); anything else
// under the prefix is ignored. An interrupted listing is an error, never a
// short or empty result.
func (b *Backend) List(ctx context.Context, t core.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	if t == core.ConfigFile {
		return backend.ListConfig(ctx, b.Stat, fn)
	}
	if err := backend.CheckListType(t); err != nil {
		return retry.Permanent(fmt.Errorf("list: %w", err))
	}
	dir := b.prefix + t.String() + "/"
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	objects := b.core.Client.ListObjects(lctx, b.cfg.Bucket, minio.ListObjectsOptions{
		Prefix:    dir,
		Recursive: t == core.PackFile,
		UseV1:     b.cfg.ListObjectsV1,
	})
	// The listing goroutine stops when lctx is cancelled; drain what it
	// already queued so it can exit.
	defer func() {
		cancel()
		for range objects {
		}
	}()
	for obj := range objects {
		if obj.Err != nil {
			return fmt.Errorf("list %v: %w", t, classify(obj.Err))
		}
		name, ok := nameOf(t, strings.TrimPrefix(obj.Key, dir))
		if !ok || obj.Size < 0 {
			continue
		}
		if err := fn(backend.FileInfo{Name: name, Size: obj.Size}); err != nil {
			return err
		}
	}
	// A cancelled context may end the listing without an error entry.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	return nil
}

// nameOf returns the file name for the key rel (relative to the type's
// directory) if it is a repository file of type t in its proper place.
func nameOf(t core.FileType, rel string) (string, bool) {
	if t == core.PackFile {
		sub, name, ok := strings.Cut(rel, "/")
		if !ok || !core.IsValidName(name) || sub != name[:2] {
			return "", false
		}
		return name, true
	}
	if !core.IsValidName(rel) {
		return "", false
	}
	return rel, true
}

// Remove implements backend.Backend. Deleting a missing object succeeds.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return retry.Permanent(fmt.Errorf("remove %v: %w", h, err))
	}
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("remove %v: %w", h, err)
	}
	defer b.release()
	err := b.core.RemoveObject(ctx, b.cfg.Bucket, b.key(h), minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
		return fmt.Errorf("remove %v: %w", h, classify(err))
	}
	return nil
}

// drainAndClose reads what is left of a body (up to maxDrain) so the
// connection can be reused, then closes it.
func drainAndClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, maxDrain))
	_ = rc.Close()
}
