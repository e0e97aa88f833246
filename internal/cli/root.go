// Package cli implements cairn's command line, one file per command.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/repo"
)

// Exit codes, as restic 0.17+ documents them.
const (
	ExitOK           = 0
	ExitError        = 1
	ExitPartial      = 3  // backup: some files could not be read
	ExitNoRepository = 10 // the repository does not exist
	ExitLocked       = 11 // the repository is locked
	ExitWrongPass    = 12 // wrong password
	ExitInterrupted  = 130
)

// Version is cairn's version, reported by `cairn version` and stored in
// snapshots.
var Version = "0.1.0-dev"

// globalOptions are the flags every command shares.
type globalOptions struct {
	Repo          string
	PasswordFile  string
	PasswordCmd   string
	KeyHint       string
	JSON          bool
	Quiet         bool
	Verbose       int
	NoLock        bool
	RetryLock     time.Duration
	Compression   string
	PackSizeMiB   int
	LimitUpload   int // KiB/s
	LimitDownload int // KiB/s
	Connections   int
	NoExtraVerify bool
	CACert        []string
	TLSClientCert string
	CacheDir      string
	NoCache       bool
	StuckTimeout  time.Duration

	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Main runs cairn with args and returns the exit code.
func Main(args []string) int {
	return run(args, os.Stdin, os.Stdout, os.Stderr)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancelPipe := context.WithCancel(ctx)
	defer cancelPipe()
	watchBrokenStdout(ctx, cancelPipe)
	g := &globalOptions{stdout: stdout, stderr: stderr, stdin: stdin}
	if pf := os.Getenv("CAIRN_CPU_PROFILE"); pf != "" {
		stopProfile, err := startCPUProfile(pf)
		if err != nil {
			fmt.Fprintf(stderr, "cairn: %v\n", err)
			return ExitError
		}
		defer stopProfile()
	}
	if pf := os.Getenv("CAIRN_TRACE"); pf != "" {
		stopTrace, err := startTrace(pf)
		if err != nil {
			fmt.Fprintf(stderr, "cairn: %v\n", err)
			return ExitError
		}
		defer stopTrace()
	}
	if pf := os.Getenv("CAIRN_HEAP_PROFILE"); pf != "" {
		d, err := time.ParseDuration(os.Getenv("CAIRN_HEAP_PROFILE_AFTER"))
		if err != nil {
			fmt.Fprintf(stderr, "cairn: CAIRN_HEAP_PROFILE_AFTER: %v\n", err)
			return ExitError
		}
		startHeapSnapshot(pf, d)
	}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	if code == ExitInterrupted {
		fmt.Fprintln(stderr, "cairn: interrupted")
	} else {
		fmt.Fprintf(stderr, "cairn: %v\n", err)
	}
	return code
}

func exitCode(err error) int {
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.Is(err, repo.ErrNoRepository):
		return ExitNoRepository
	case errors.Is(err, repo.ErrLocked):
		return ExitLocked
	case errors.Is(err, repo.ErrWrongPassword):
		return ExitWrongPass
	}
	return ExitError
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "cairn",
		Short: "Deduplicating, encrypted backups, compatible with restic repositories",
		Long: `cairn backs up files into a deduplicated, encrypted, compressed repository.
Repositories are restic-compatible: restic can read what cairn writes and
cairn reads what restic writes.

The repository is given with -r/--repo or CAIRN_REPOSITORY (RESTIC_REPOSITORY
also works); the password with --password-file, CAIRN_PASSWORD_FILE,
CAIRN_PASSWORD (or RESTIC_PASSWORD_FILE, RESTIC_PASSWORD), or a prompt.

Exit codes: 0 success, 1 error, 3 backup incomplete (some files unreadable),
10 repository does not exist, 11 repository locked, 12 wrong password,
130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringVarP(&g.Repo, "repo", "r", "", "repository `location` (default: $CAIRN_REPOSITORY, $RESTIC_REPOSITORY)")
	f.StringVarP(&g.PasswordFile, "password-file", "p", "", "read the password from `file` (default: $CAIRN_PASSWORD_FILE)")
	f.StringVar(&g.PasswordCmd, "password-command", "", "run `command` and use its output as the password")
	f.StringVar(&g.KeyHint, "key-hint", "", "key `ID` to try first")
	f.BoolVar(&g.JSON, "json", false, "print machine-readable JSON")
	f.BoolVarP(&g.Quiet, "quiet", "q", false, "print only errors")
	f.CountVarP(&g.Verbose, "verbose", "v", "print more (repeat for even more)")
	f.BoolVar(&g.NoLock, "no-lock", false, "do not lock the repository (read-only commands only)")
	f.DurationVar(&g.RetryLock, "retry-lock", 0, "retry to lock the repository for up to `duration` if it is locked")
	f.StringVar(&g.Compression, "compression", "auto", "compression `mode` for new data (v2 repositories): auto (zstd level 3, tuned for 1 MiB blobs), off, fastest (1), better (6), max (11); builds without cgo use the pure-Go encoder's levels of those names")
	f.IntVar(&g.PackSizeMiB, "pack-size", 0, "target pack size in `MiB` (default 16)")
	f.IntVar(&g.LimitUpload, "limit-upload", 0, "limit uploads to `KiB/s`")
	f.IntVar(&g.LimitDownload, "limit-download", 0, "limit downloads to `KiB/s`")
	f.IntVar(&g.Connections, "connections", 0, "parallel backend requests (default: backend's own)")
	f.BoolVar(&g.NoExtraVerify, "no-extra-verify", false, "skip checking each blob again before upload")
	f.StringSliceVar(&g.CACert, "cacert", nil, "trust the TLS certificates in `file` (REST)")
	f.StringVar(&g.TLSClientCert, "tls-client-cert", "", "client certificate and key `file` (PEM) for TLS (REST)")
	f.StringVar(&g.CacheDir, "cache-dir", "", "local cache `directory`")
	f.BoolVar(&g.NoCache, "no-cache", false, "do not use a local cache")
	f.DurationVar(&g.StuckTimeout, "stuck-request-timeout", 5*time.Minute, "abort and retry a backend request that transfers nothing for this `long`")

	root.AddCommand(
		newVersionCommand(g),
		newInitCommand(g),
		newBackupCommand(g),
		newRestoreCommand(g),
		newSnapshotsCommand(g),
		newLsCommand(g),
		newCatCommand(g),
		newUnlockCommand(g),
	)
	for _, c := range extraCommands {
		root.AddCommand(c(g))
	}
	return root
}

// extraCommands lets command files register themselves.
var extraCommands []func(*globalOptions) *cobra.Command

func env(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func (g *globalOptions) repoLocation() (string, error) {
	loc := g.Repo
	if loc == "" {
		loc = env("CAIRN_REPOSITORY", "RESTIC_REPOSITORY")
	}
	if loc == "" {
		return "", errors.New("no repository given: use -r/--repo or set CAIRN_REPOSITORY")
	}
	return loc, nil
}

// readPassword finds the password in the usual places, prompting on a
// terminal as a last resort.
func (g *globalOptions) readPassword(prompt string, confirm bool) (string, error) {
	if g.PasswordCmd != "" || env("CAIRN_PASSWORD_COMMAND", "RESTIC_PASSWORD_COMMAND") != "" {
		cmd := g.PasswordCmd
		if cmd == "" {
			cmd = env("CAIRN_PASSWORD_COMMAND", "RESTIC_PASSWORD_COMMAND")
		}
		return runPasswordCommand(cmd)
	}
	file := g.PasswordFile
	if file == "" {
		file = env("CAIRN_PASSWORD_FILE")
	}
	if file == "" && os.Getenv("CAIRN_PASSWORD") != "" {
		return os.Getenv("CAIRN_PASSWORD"), nil
	}
	if file == "" {
		file = env("RESTIC_PASSWORD_FILE")
	}
	if file == "" && os.Getenv("RESTIC_PASSWORD") != "" {
		return os.Getenv("RESTIC_PASSWORD"), nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read password file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("password file %s is empty", file)
		}
		return pw, nil
	}
	return g.promptPassword(prompt, confirm)
}

func (g *globalOptions) promptPassword(prompt string, confirm bool) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("no password given: use --password-file, CAIRN_PASSWORD_FILE or CAIRN_PASSWORD (no terminal to ask on)")
	}
	fmt.Fprint(g.stderr, prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(g.stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if len(b) == 0 {
		return "", errors.New("empty password")
	}
	if confirm {
		fmt.Fprint(g.stderr, "enter password again: ")
		b2, err := term.ReadPassword(fd)
		fmt.Fprintln(g.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(b) != string(b2) {
			return "", errors.New("passwords do not match")
		}
	}
	return string(b), nil
}

func (g *globalOptions) repoOptions() (repo.Options, error) {
	comp, err := repo.ParseCompression(g.Compression)
	if err != nil {
		return repo.Options{}, err
	}
	o := repo.Options{Compression: comp, NoExtraVerify: g.NoExtraVerify, KeyHint: g.KeyHint}
	if g.PackSizeMiB != 0 {
		if g.PackSizeMiB < 4 || g.PackSizeMiB > 128 {
			return o, fmt.Errorf("--pack-size %d: must be between 4 and 128 MiB", g.PackSizeMiB)
		}
		o.PackSize = g.PackSizeMiB << 20
	}
	return o, nil
}

// openRepository opens the repository and loads nothing else.
func (g *globalOptions) openRepository(ctx context.Context) (*repo.Repository, error) {
	loc, err := g.repoLocation()
	if err != nil {
		return nil, err
	}
	be, err := g.openBackend(ctx, loc, false)
	if err != nil {
		return nil, err
	}
	pw, err := g.readPassword("enter password for repository: ", false)
	if err != nil {
		be.Close()
		return nil, err
	}
	opts, err := g.repoOptions()
	if err != nil {
		be.Close()
		return nil, err
	}
	r, err := repo.Open(ctx, be, pw, opts)
	if err != nil {
		be.Close()
		return nil, err
	}
	for _, hook := range repoOpenHooks {
		if err := hook(ctx, g, r); err != nil {
			r.Close()
			return nil, err
		}
	}
	if s := g.lockSightings(r); s != nil {
		r.SetLockSightings(s) // every lock listing records sightings (F1)
	}
	return r, nil
}

// lockSightings is the file in which this host remembers since when it has
// seen each lock file of r (nil with --no-cache).
func (g *globalOptions) lockSightings(r *repo.Repository) repo.LockSightings {
	if g.NoCache {
		return nil
	}
	base, err := g.cacheBase()
	if err != nil {
		return nil
	}
	return repo.FileSightings{Path: filepath.Join(base, r.Config().ID, lockSightingsFile)}
}

// repoOpenHooks run after a repository is opened (e.g. to add the cache);
// command files register them from init functions.
var repoOpenHooks []func(ctx context.Context, g *globalOptions, r *repo.Repository) error

// lockRepository takes a lock unless --no-lock (for read-only commands).
// The returned context is cancelled if the lock is lost.
func (g *globalOptions) lockRepository(ctx context.Context, r *repo.Repository, exclusive bool, op string, allowNoLock bool) (func(), context.Context, *repo.Lock, error) {
	if g.NoLock && allowNoLock {
		return func() {}, ctx, nil, nil
	}
	l, lctx, err := r.Lock(ctx, exclusive, repo.LockOptions{Op: op, RetryLock: g.RetryLock})
	if err != nil {
		return nil, nil, nil, err
	}
	// every index the command writes is a commit step guarded by the lock
	r.SetCommitGuard(l.Guard)
	return func() { _ = l.Unlock(context.WithoutCancel(ctx)) }, lctx, l, nil
}

// printJSON writes v as one JSON line.
func (g *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	return enc.Encode(v)
}

func (g *globalOptions) printf(format string, args ...any) {
	if g.Quiet || g.JSON {
		return
	}
	fmt.Fprintf(g.stdout, format, args...)
}

func (g *globalOptions) verbosef(level int, format string, args ...any) {
	if g.Verbose < level || g.Quiet || g.JSON {
		return
	}
	fmt.Fprintf(g.stdout, format, args...)
}

func (g *globalOptions) warnf(format string, args ...any) {
	fmt.Fprintf(g.stderr, format, args...)
}

var _ = backend.ErrNotExist
