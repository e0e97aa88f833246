package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/bufpool"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/repo/crypto"
	"github.com/cairn-backup/cairn/internal/repo/index"
	"github.com/cairn-backup/cairn/internal/repo/pack"
)

// ErrNoRepository means the location holds no repository (no config file).
var ErrNoRepository = errors.New("repository does not exist")

// ErrInvalidData is wrapped by errors about stored data that fails
// verification (hash mismatch, MAC failure, bad encoding).
var ErrInvalidData = errors.New("invalid data")

// DefaultPackSize is the target pack size.
const DefaultPackSize = 16 << 20

// Options tune a repository handle.
type Options struct {
	Compression   Compression
	PackSize      int  // target pack size in bytes (default 16 MiB)
	NoExtraVerify bool // skip decompressing and checking each compressed blob again before upload
	KeyHint       string
	MaxKeys       int // how many key files to try (0: all)
}

// Repository is an open repository. It is safe for concurrent use.
type Repository struct {
	be      backend.Backend
	key     *crypto.Key
	keyFile *KeyFile
	cfg     Config
	opts    Options
	idx     *index.MasterIndex

	// commitGuard, if set, is called before every index file the blob
	// saver writes (a commit step): it returns an error when the caller's
	// lock is lost, and the write is not made; else the context for the
	// write and the function to call with its result (Lock.Guard).
	commitGuard CommitGuard

	// lockSights, if set, records every listing of the lock files (see
	// SetLockSightings). Set once after Open, before any lock operation.
	lockSights LockSightings

	saveOnce sync.Once
	saver    *blobSaver
	// saveCtx bounds background uploads; cancelled by Close.
	saveCtx    context.Context
	saveCancel context.CancelFunc
}

func randomHexID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func newRepository(be backend.Backend, opts Options) *Repository {
	if opts.PackSize <= 0 {
		opts.PackSize = DefaultPackSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Repository{be: be, opts: opts, idx: index.NewMaster(), saveCtx: ctx, saveCancel: cancel}
}

// Init creates a new repository on be, protected by password.
func Init(ctx context.Context, be backend.Backend, password string, version uint, params crypto.Params, opts Options) (*Repository, error) {
	cfg, err := NewConfig(version)
	if err != nil {
		return nil, err
	}
	return InitWithConfig(ctx, be, password, cfg, params, opts)
}

// InitWithConfig creates a repository with the given config (used to copy
// chunker parameters from another repository).
func InitWithConfig(ctx context.Context, be backend.Backend, password string, cfg Config, params crypto.Params, opts Options) (*Repository, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: core.ConfigFile}); err == nil {
		return nil, fmt.Errorf("init %s: a repository already exists there (config file found)", be.Location())
	} else if !backend.IsNotExist(err) {
		return nil, fmt.Errorf("init %s: check for config: %w", be.Location(), err)
	}
	for _, t := range []core.FileType{core.KeyFile, core.SnapshotFile} {
		found := false
		err := be.List(ctx, t, func(backend.FileInfo) error { found = true; return nil })
		if err != nil && !backend.IsNotExist(err) {
			return nil, fmt.Errorf("init %s: list %v: %w", be.Location(), t, err)
		}
		if found {
			return nil, fmt.Errorf("init %s: %v already contains files; refusing to overwrite", be.Location(), t)
		}
	}
	if c, ok := be.(backend.Creator); ok {
		if err := c.Create(ctx); err != nil {
			return nil, fmt.Errorf("init %s: create: %w", be.Location(), err)
		}
	}
	r := newRepository(be, opts)
	r.key = crypto.NewRandomKey()
	r.cfg = cfg
	kf, err := r.AddKey(ctx, password, params, "")
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	r.keyFile = kf
	// Verify the key file reads back before committing the config (H41).
	if _, _, err := SearchKey(ctx, be, password, kf.id.String(), 1); err != nil {
		// Remove the bad key so that a retried init finds an empty
		// repository again (no config was written yet).
		h := backend.Handle{Type: core.KeyFile, Name: kf.id.String()}
		if rerr := be.Remove(ctx, h); rerr != nil && !backend.IsNotExist(rerr) {
			return nil, fmt.Errorf("init: key file does not read back: %w (removing it failed too: %v)", err, rerr)
		}
		return nil, fmt.Errorf("init: key file does not read back: %w", err)
	}
	cbuf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	sealed := r.key.Seal(nil, cbuf)
	if err := be.Save(ctx, backend.Handle{Type: core.ConfigFile}, backend.NewByteReader(sealed)); err != nil {
		_ = be.Remove(ctx, backend.Handle{Type: core.KeyFile, Name: kf.id.String()})
		if errors.Is(err, backend.ErrAlreadyExists) {
			return nil, fmt.Errorf("init %s: another process created a repository there at the same time", be.Location())
		}
		return nil, fmt.Errorf("init: save config: %w", err)
	}
	return r, nil
}

// AddKey stores a new key file wrapping the master key under password.
func (r *Repository) AddKey(ctx context.Context, password string, params crypto.Params, hostname string) (*KeyFile, error) {
	kf, buf, err := NewKeyFile(r.key, password, params, hostname)
	if err != nil {
		return nil, fmt.Errorf("add key: %w", err)
	}
	if err := r.be.Save(ctx, backend.Handle{Type: core.KeyFile, Name: kf.id.String()}, backend.NewByteReader(buf)); err != nil {
		return nil, fmt.Errorf("add key: save: %w", err)
	}
	return kf, nil
}

// Open opens the repository on be with password.
func Open(ctx context.Context, be backend.Backend, password string, opts Options) (*Repository, error) {
	ch := backend.Handle{Type: core.ConfigFile}
	if _, err := be.Stat(ctx, ch); err != nil {
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("open %s: %w (no config file)", be.Location(), ErrNoRepository)
		}
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	key, kf, err := SearchKey(ctx, be, password, opts.KeyHint, opts.MaxKeys)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	r := newRepository(be, opts)
	r.key, r.keyFile = key, kf
	var plain []byte
	for attempt := 0; ; attempt++ {
		sealed, err := backend.LoadAll(ctx, be, ch)
		if err != nil {
			return nil, fmt.Errorf("open: load config: %w", err)
		}
		if plain, err = key.Open(nil, sealed); err == nil {
			break
		}
		if attempt == 1 { // read twice: a corrupted transfer is not a damaged file
			return nil, fmt.Errorf("open: decrypt config: %w", err)
		}
	}
	cfg, err := DecodeConfig(plain)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	r.cfg = cfg
	return r, nil
}

// Backend returns the underlying backend.
func (r *Repository) Backend() backend.Backend { return r.be }

// WrapBackend replaces the backend with wrap(current), e.g. to add a
// local cache once the repository ID is known. Call it before any other
// use of the handle.
func (r *Repository) WrapBackend(wrap func(backend.Backend) backend.Backend) { r.be = wrap(r.be) }

// CommitGuard guards a commit step made of one write (see Lock.Guard).
type CommitGuard func(ctx context.Context) (context.Context, func(error) error, error)

// SetCommitGuard installs the guard run around every index write of the
// blob saver (the CLI passes its lock's Guard).
func (r *Repository) SetCommitGuard(fn CommitGuard) { r.commitGuard = fn }

// Config returns the repository config.
func (r *Repository) Config() Config { return r.cfg }

// Key returns the master key.
func (r *Repository) Key() *crypto.Key { return r.key }

// KeyFile returns the key file used to open the repository.
func (r *Repository) KeyFile() *KeyFile { return r.keyFile }

// Index returns the master index.
func (r *Repository) Index() *index.MasterIndex { return r.idx }

// SetIndex replaces the master index (used by repair and prune).
func (r *Repository) SetIndex(m *index.MasterIndex) { r.idx = m }

// Options returns the handle's options.
func (r *Repository) Options() Options { return r.opts }

// Connections is the useful number of parallel backend requests.
func (r *Repository) Connections() int {
	n := int(r.be.Connections())
	if n < 1 {
		n = 1
	}
	return n
}

// Close stops background uploads (without flushing) and closes the backend.
func (r *Repository) Close() error {
	r.saveCancel()
	if r.saver != nil {
		r.saver.stop()
	}
	return r.be.Close()
}

// compressUnpacked applies the v2 unpacked encoding.
func (r *Repository) encodeUnpacked(t core.FileType, plain []byte) []byte {
	if r.cfg.Version < 2 || t == core.ConfigFile {
		return plain
	}
	out := make([]byte, 1, 1+compressBound(len(plain)))
	out[0] = 2
	enc, err := appendCompressed(out, plain, CompressionAuto)
	if err != nil {
		// Only an allocation failure inside libzstd gets here; the
		// uncompressed form is valid in v2 repositories too.
		return plain
	}
	return enc
}

func (r *Repository) decodeUnpacked(plain []byte) ([]byte, error) {
	if r.cfg.Version < 2 || len(plain) == 0 {
		return plain, nil
	}
	switch plain[0] {
	case 2:
		return decompress(nil, plain[1:], -1)
	case '[', '{':
		return plain, nil
	}
	return nil, fmt.Errorf("unsupported encoding format %d", plain[0])
}

// SaveUnpacked encrypts (and in v2 compresses) plain and stores it as a new
// file of type t, returning its ID.
func (r *Repository) SaveUnpacked(ctx context.Context, t core.FileType, plain []byte) (core.ID, error) {
	sealed := r.key.Seal(nil, r.encodeUnpacked(t, plain))
	id := core.Hash(sealed)
	h := backend.Handle{Type: t, Name: id.String()}
	if err := r.be.Save(ctx, h, backend.NewByteReader(sealed)); err != nil && !errors.Is(err, backend.ErrAlreadyExists) {
		return core.ID{}, fmt.Errorf("save %v: %w", h, err)
	}
	return id, nil
}

// SaveJSONUnpacked marshals v and saves it with SaveUnpacked.
func (r *Repository) SaveJSONUnpacked(ctx context.Context, t core.FileType, v any) (core.ID, error) {
	buf, err := json.Marshal(v)
	if err != nil {
		return core.ID{}, fmt.Errorf("encode %v: %w", t, err)
	}
	return r.SaveUnpacked(ctx, t, buf)
}

// LoadUnpacked loads, verifies and decrypts the file t/id.
func (r *Repository) LoadUnpacked(ctx context.Context, t core.FileType, id core.ID) ([]byte, error) {
	h := backend.Handle{Type: t, Name: id.String()}
	var sealed []byte
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		sealed, err = backend.LoadAll(ctx, r.be, h)
		if err != nil {
			return nil, fmt.Errorf("load %v: %w", h, err)
		}
		if core.Hash(sealed) == id {
			break
		}
		err = fmt.Errorf("load %v: content hash %v does not match the file name: %w", h, core.Hash(sealed).Str(), ErrInvalidData)
	}
	if err != nil {
		return nil, err
	}
	plain, err := r.key.Open(nil, sealed)
	if err != nil {
		return nil, fmt.Errorf("load %v: %w: %w", h, ErrInvalidData, err)
	}
	out, err := r.decodeUnpacked(plain)
	if err != nil {
		return nil, fmt.Errorf("load %v: %w: %w", h, ErrInvalidData, err)
	}
	return out, nil
}

// LoadJSONUnpacked loads t/id and unmarshals it into v.
func (r *Repository) LoadJSONUnpacked(ctx context.Context, t core.FileType, id core.ID, v any) error {
	buf, err := r.LoadUnpacked(ctx, t, id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(buf, v); err != nil {
		return fmt.Errorf("decode %v/%v: %w: %w", t, id.Str(), ErrInvalidData, err)
	}
	return nil
}

// List calls fn for every file of type t whose name is a valid ID.
func (r *Repository) List(ctx context.Context, t core.FileType, fn func(id core.ID, size int64) error) error {
	return r.be.List(ctx, t, func(fi backend.FileInfo) error {
		id, err := core.ParseID(fi.Name)
		if err != nil {
			return nil
		}
		return fn(id, fi.Size)
	})
}

// ListIDs returns the IDs of every file of type t.
func (r *Repository) ListIDs(ctx context.Context, t core.FileType) (core.IDs, error) {
	var ids core.IDs
	err := r.List(ctx, t, func(id core.ID, _ int64) error { ids = append(ids, id); return nil })
	if err != nil {
		return nil, fmt.Errorf("list %v: %w", t, err)
	}
	return ids, nil
}

// FindFile resolves a unique ID prefix among the files of type t.
func (r *Repository) FindFile(ctx context.Context, t core.FileType, prefix string) (core.ID, error) {
	if id, err := core.ParseID(prefix); err == nil {
		return id, nil
	}
	var found []core.ID
	err := r.List(ctx, t, func(id core.ID, _ int64) error {
		if len(prefix) <= 64 && id.String()[:len(prefix)] == prefix {
			found = append(found, id)
		}
		return nil
	})
	if err != nil {
		return core.ID{}, err
	}
	switch len(found) {
	case 0:
		return core.ID{}, fmt.Errorf("no %v file matches %q: %w", t, prefix, backend.ErrNotExist)
	case 1:
		return found[0], nil
	}
	return core.ID{}, fmt.Errorf("prefix %q matches %d %v files; give more characters", prefix, len(found), t)
}

// LoadIndex loads every index file not loaded yet into the master index.
// A damaged index file is an error naming it.
func (r *Repository) LoadIndex(ctx context.Context) error {
	// An index file can vanish between the listing and its load: prune
	// deletes index files it has superseded (after writing the files that
	// replace them), while other processes hold shared locks. Such a file
	// is not an error; the listing is taken again so that its replacement,
	// which exists by then, is loaded.
	const attempts = 5
	for attempt := 1; ; attempt++ {
		vanished, err := r.loadIndexOnce(ctx)
		if err != nil {
			return err
		}
		if vanished == 0 {
			return nil
		}
		if attempt == attempts {
			return fmt.Errorf("load index: index files keep vanishing while they are loaded (%d in the last of %d listings): %w", vanished, attempts, backend.ErrNotExist)
		}
	}
}

// loadIndexOnce lists the index files and loads those not loaded yet. It
// returns how many listed files had vanished when they were loaded.
func (r *Repository) loadIndexOnce(ctx context.Context) (int, error) {
	ids, err := r.ListIDs(ctx, core.IndexFile)
	if err != nil {
		return 0, fmt.Errorf("load index: %w", err)
	}
	var vanished atomic.Int32
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Connections() + runtime.GOMAXPROCS(0))
	for _, id := range ids {
		if r.idx.HasFile(id) {
			continue
		}
		g.Go(func() error {
			f, err := r.LoadIndexFile(gctx, id)
			if err != nil {
				if backend.IsNotExist(err) {
					vanished.Add(1)
					return nil
				}
				return err
			}
			r.idx.AddFile(id, f)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return int(vanished.Load()), nil
}

// LoadIndexFile loads and decodes one index file.
func (r *Repository) LoadIndexFile(ctx context.Context, id core.ID) (*index.File, error) {
	buf, err := r.LoadUnpacked(ctx, core.IndexFile, id)
	if err != nil {
		return nil, fmt.Errorf("index %v: %w", id.Str(), err)
	}
	f, err := index.Decode(buf, r.cfg.Version < 2)
	if err != nil {
		return nil, fmt.Errorf("index %v: %w: %w", id.Str(), ErrInvalidData, err)
	}
	return f, nil
}

// SaveIndexFile writes f as a new index file and records it in the master
// index.
func (r *Repository) SaveIndexFile(ctx context.Context, f *index.File) (core.ID, error) {
	buf, err := index.Encode(f)
	if err != nil {
		return core.ID{}, err
	}
	id, err := r.SaveUnpacked(ctx, core.IndexFile, buf)
	if err != nil {
		return core.ID{}, err
	}
	r.idx.AddFile(id, f)
	return id, nil
}

// LoadPackHeader reads the header of a pack straight from the backend.
func (r *Repository) LoadPackHeader(ctx context.Context, id core.ID, size int64) ([]pack.Blob, error) {
	h := backend.Handle{Type: core.PackFile, Name: id.String()}
	if size <= 0 {
		fi, err := r.be.Stat(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("pack %v: %w", id.Str(), err)
		}
		size = fi.Size
	}
	blobs, err := pack.ReadHeader(&backendReaderAt{ctx: ctx, be: r.be, h: h}, size, r.key)
	if err != nil {
		return nil, fmt.Errorf("pack %v: %w", id.Str(), err)
	}
	return blobs, nil
}

type backendReaderAt struct {
	ctx context.Context
	be  backend.Backend
	h   backend.Handle
}

func (b *backendReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	err := b.be.Load(b.ctx, b.h, len(p), off, func(rd io.Reader) error {
		var err error
		n, err = io.ReadFull(rd, p)
		return err
	})
	return n, err
}

// DecodeBlob decrypts, decompresses and verifies one stored blob. The
// plaintext is appended to dst[:0].
func (r *Repository) DecodeBlob(b pack.Blob, sealed []byte, dst []byte) ([]byte, error) {
	if len(sealed) != int(b.Length) {
		return nil, fmt.Errorf("blob %v: got %d bytes, want %d: %w", b.BlobHandle, len(sealed), b.Length, ErrInvalidData)
	}
	var plain []byte
	var err error
	if b.IsCompressed() {
		buf := getBuf(len(sealed))
		tmp, err := r.key.Open(buf[:0], sealed)
		if err != nil {
			putBuf(buf)
			return nil, fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
		}
		plain, err = decompress(dst, tmp, int(b.UncompressedLength))
		putBuf(tmp)
		if err != nil {
			return nil, fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
		}
	} else {
		plain, err = r.key.Open(dst[:0], sealed)
		if err != nil {
			return nil, fmt.Errorf("blob %v: %w: %w", b.BlobHandle, ErrInvalidData, err)
		}
	}
	if core.Hash(plain) != b.ID {
		return nil, fmt.Errorf("blob %v: content does not match its ID: %w", b.BlobHandle, ErrInvalidData)
	}
	return plain, nil
}

// LoadBlob returns the plaintext of blob (t, id), appended to buf[:0]. It
// tries every pack that holds the blob before giving up.
func (r *Repository) LoadBlob(ctx context.Context, t core.BlobType, id core.ID, buf []byte) ([]byte, error) {
	h := core.BlobHandle{ID: id, Type: t}
	locs := r.idx.LookupAll(h)
	if len(locs) == 0 {
		return nil, fmt.Errorf("blob %v not found in index: %w", h, backend.ErrNotExist)
	}
	// A copy that fails to decode is read once more before giving up:
	// a flaky network or disk may have corrupted the transfer, not the
	// stored data.
	var errs []error
	for round := 0; round < 2; round++ {
		if round == 1 && !anyInvalid(errs) {
			break
		}
		for _, l := range locs {
			sealed := getBuf(int(l.Length))[:l.Length]
			ph := backend.Handle{Type: core.PackFile, Name: l.Pack.String()}
			err := r.be.Load(ctx, ph, int(l.Length), int64(l.Offset), func(rd io.Reader) error {
				_, err := io.ReadFull(rd, sealed)
				return err
			})
			if err != nil {
				putBuf(sealed)
				errs = append(errs, fmt.Errorf("load blob %v from pack %v: %w", h, l.Pack.Str(), err))
				continue
			}
			plain, err := r.DecodeBlob(l.Blob, sealed, buf)
			putBuf(sealed)
			if err != nil {
				errs = append(errs, fmt.Errorf("pack %v: %w", l.Pack.Str(), err))
				continue
			}
			return plain, nil
		}
	}
	return nil, errors.Join(errs...)
}

func anyInvalid(errs []error) bool {
	for _, e := range errs {
		if errors.Is(e, ErrInvalidData) {
			return true
		}
	}
	return false
}

func getBuf(n int) []byte { return bufpool.Get(n) }
func putBuf(b []byte)     { bufpool.Put(b) }

// hostname returns the host name for lock and key files.
func hostname() string {
	h, _ := os.Hostname()
	return h
}
