package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/prune"
	"github.com/cairn-backup/cairn/internal/server"
)

func init() { extraCommands = append(extraCommands, newServeCommand) }

type serveOptions struct {
	path             string
	listen           string
	appendOnly       bool
	privateRepos     bool
	noAuth           bool
	htpasswd         string
	tlsCert, tlsKey  string
	tlsClientCA      string
	maxSize          string
	prometheus       bool
	prometheusNoAuth bool
	noVerifyUpload   bool
	logFile          string
	runtimeDir       string
	backendLoc       string
	readTimeout      time.Duration
	writeTimeout     time.Duration
	idleTimeout      time.Duration
}

func newServeCommand(g *globalOptions) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Serve repositories over restic's REST protocol (v1 and v2)",
		Long: `Serve the repositories below --path to restic and cairn clients.

Every upload is hashed and checked against its name, and written as
temp file, fsync, rename, fsync directory: a truncated or corrupted upload
is never visible. Authentication uses --htpasswd-file (bcrypt and {SHA}
entries; default <path>/.htpasswd) unless --no-auth. The server's own lock
and quota state live outside the repositories (--runtime-dir, in memory by
default). SIGTERM or Ctrl-C shut down gracefully: uploads in flight finish.
SIGHUP reloads the htpasswd file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.path, "path", filepath.Join(os.TempDir(), "restic"), "serve repositories below `dir`")
	f.StringVar(&o.listen, "listen", ":8000", "listen `address` (host:port, or unix:/path/to/socket)")
	f.BoolVar(&o.appendOnly, "append-only", false, "refuse deletions (except of lock files)")
	f.BoolVar(&o.privateRepos, "private-repos", false, "users may only use repositories below their own name")
	f.BoolVar(&o.noAuth, "no-auth", false, "serve without authentication")
	f.StringVar(&o.htpasswd, "htpasswd-file", "", "htpasswd `file` (default <path>/.htpasswd)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM)")
	f.StringVar(&o.tlsKey, "tls-key", "", "TLS key `file` (PEM)")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "require client certificates signed by the CA in `file`")
	f.StringVar(&o.maxSize, "max-size", "", "limit the total size of all repositories to `size` (k, m, g, t suffixes)")
	f.BoolVar(&o.prometheus, "prometheus", false, "serve Prometheus metrics at /metrics")
	f.BoolVar(&o.prometheusNoAuth, "prometheus-no-auth", false, "serve /metrics without authentication")
	f.BoolVar(&o.noVerifyUpload, "no-verify-upload", false, "do not check uploads against their names (not recommended)")
	f.StringVar(&o.logFile, "log", "", "write the access log to `file` ('-' for stderr)")
	f.StringVar(&o.runtimeDir, "runtime-dir", "", "`directory` for the server's lock file (outside --path)")
	f.StringVar(&o.backendLoc, "backend", "", "keep the repositories below this backend `location` (e.g. s3:https://host/bucket/prefix) instead of --path; several servers may share it")
	f.DurationVar(&o.readTimeout, "read-timeout", 0, "abort requests whose body stalls this `long` (default 5m)")
	f.DurationVar(&o.writeTimeout, "write-timeout", 0, "abort responses that stall this `long`")
	f.DurationVar(&o.idleTimeout, "idle-timeout", 0, "close idle keep-alive connections after `duration` (default 2m)")
	return cmd
}

func runServe(ctx context.Context, g *globalOptions, o serveOptions) error {
	if o.backendLoc == "" {
		if err := os.MkdirAll(o.path, 0o700); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	} else if !o.noAuth && o.htpasswd == "" {
		return fmt.Errorf("serve --backend: give --htpasswd-file (or --no-auth)")
	}
	var logW io.Writer = io.Discard
	switch o.logFile {
	case "":
	case "-":
		logW = g.stderr
	default:
		f, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("serve: access log: %w", err)
		}
		defer f.Close()
		logW = f
	}
	logger := slog.New(slog.NewJSONHandler(logW, nil))
	cfg := server.Config{AppendOnly: o.appendOnly, PrivateRepos: o.privateRepos, NoAuth: o.noAuth,
		HtpasswdFile: o.htpasswd, Prometheus: o.prometheus, PrometheusNoAuth: o.prometheusNoAuth,
		NoVerifyUpload: o.noVerifyUpload, StallTimeout: o.readTimeout, Logger: logger, RuntimeDir: o.runtimeDir}
	if !o.noAuth && cfg.HtpasswdFile == "" {
		cfg.HtpasswdFile = filepath.Join(o.path, ".htpasswd")
	}
	if o.maxSize != "" {
		n, err := prune.ParseSize(o.maxSize)
		if err != nil {
			return fmt.Errorf("--max-size: %w", err)
		}
		cfg.MaxSize = n
	}
	var store server.Store
	if o.backendLoc != "" {
		if cfg.MaxSize > 0 {
			return fmt.Errorf("--max-size works with --path only (a shared backend has no single owner to count usage)")
		}
		ls := newLocationStore(g, o.backendLoc)
		defer ls.Close()
		store = ls
	} else {
		ds := server.NewDirStore(o.path)
		defer ds.Close()
		store = ds
	}
	h, err := server.New(ctx, store, cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer h.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := h.ReloadHtpasswd(); err != nil {
				g.warnf("reload htpasswd: %v\n", err)
			}
		}
	}()
	network, addr := "tcp", o.listen
	if len(addr) > 5 && addr[:5] == "unix:" {
		network, addr = "unix", addr[5:]
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	where := o.path
	if o.backendLoc != "" {
		where = displayLocation(o.backendLoc)
	}
	g.printf("serving %s on %s://%s\n", where, scheme, ln.Addr())
	return server.Serve(ctx, ln, h, server.ServeConfig{TLSCertFile: o.tlsCert, TLSKeyFile: o.tlsKey, TLSClientCAFile: o.tlsClientCA,
		WriteTimeout: o.writeTimeout, IdleTimeout: o.idleTimeout, Logger: logger})
}
