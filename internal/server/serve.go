package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// Defaults for ServeConfig's zero values.
const (
	DefaultReadHeaderTimeout = time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultShutdownTimeout   = time.Minute
)

// ServeConfig configures Serve.
type ServeConfig struct {
	// TLSCertFile and TLSKeyFile (PEM) switch on HTTPS (HTTP/2 is
	// negotiated by ALPN). Both or neither must be set.
	TLSCertFile, TLSKeyFile string
	// TLSClientCAFile, if set, requires clients to present a certificate
	// signed by one of the CAs in this PEM file.
	TLSClientCAFile string
	// TLSMinVersion is the minimum TLS version (default TLS 1.2).
	TLSMinVersion uint16

	// ReadHeaderTimeout bounds reading the request line and headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout and WriteTimeout bound a whole request body read or
	// response write. They default to none: large uploads and downloads
	// over slow links are legitimate, and stalls are caught by the
	// handler's Config.StallTimeout instead.
	ReadTimeout, WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long in-flight requests may run on after ctx
	// is cancelled before their connections are closed.
	ShutdownTimeout time.Duration
	// Logger receives server errors (nil: discard).
	Logger *slog.Logger
}

// TLSConfig builds the server TLS configuration from cfg, or returns nil
// if TLS is off.
func (cfg ServeConfig) TLSConfig() (*tls.Config, error) {
	if cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" {
		if cfg.TLSClientCAFile != "" {
			return nil, errors.New("tls: a client CA needs a server certificate and key")
		}
		return nil, nil
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return nil, errors.New("tls: both a certificate and a key file are needed")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load key pair: %w", err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   cfg.TLSMinVersion,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	if cfg.TLSClientCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no certificates found", cfg.TLSClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Serve serves h on ln until ctx is cancelled, then shuts down gracefully:
// it stops accepting connections, lets in-flight requests (uploads
// included) finish within ShutdownTimeout, and returns nil. Any other end
// of serving is returned as an error. ln is closed on return.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, cfg ServeConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("serve: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: orDefault(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         tc,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Request contexts derive from Background, not ctx: cancelling ctx
	// must not abort in-flight uploads; Shutdown drains them instead.
	srv.BaseContext = func(net.Listener) context.Context { return context.Background() }

	errc := make(chan error, 1)
	go func() {
		if tc != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), orDefault(cfg.ShutdownTimeout, DefaultShutdownTimeout))
	defer cancel()
	serr := srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("serve ended with error during shutdown", "err", err)
	}
	if serr != nil {
		cerr := srv.Close()
		return fmt.Errorf("serve: graceful shutdown: %w", errors.Join(serr, cerr))
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
