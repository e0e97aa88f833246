package rest

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultConnections is the default number of parallel requests.
const DefaultConnections = 5

// DefaultStallTimeout is used when Config.StallTimeout is zero.
const DefaultStallTimeout = 5 * time.Minute

// Config configures a REST backend.
type Config struct {
	// URL of the repository; its path ends in "/". It may carry
	// credentials (user:password@).
	URL *url.URL
	// Connections is the maximum number of concurrent requests and of
	// pooled connections (default DefaultConnections).
	Connections uint
	// CACert, if set, is a PEM file of root certificates that replaces the
	// system pool for verifying the server.
	CACert string
	// TLSClientCert, if set, is a PEM file holding a client certificate
	// and its private key.
	TLSClientCert string
	// StallTimeout aborts a request when the server sends or accepts no
	// data for this long (default DefaultStallTimeout; negative disables).
	// It bounds stalls (hazard H30), not the duration of a transfer.
	StallTimeout time.Duration
	// Transport, if set, carries every request instead of the pooled
	// http.Transport that Open builds (CACert and TLSClientCert must then
	// be empty: TLS is the transport's business). It lets the REST
	// protocol run over other connections, such as rclone's standard input
	// and output. Close calls its CloseIdleConnections method, if any.
	Transport http.RoundTripper
	// Location, if set, names the repository in Location() and in error
	// messages instead of "rest:" and the URL.
	Location string
}

// ParseConfig parses "rest:http(s)://[user:pass@]host[:port]/path/" (the
// "rest:" prefix is optional). A missing trailing slash is added, as restic
// does. Without credentials in the URL, CAIRN_REST_USERNAME and
// CAIRN_REST_PASSWORD, or else RESTIC_REST_USERNAME and
// RESTIC_REST_PASSWORD, are used if set.
func ParseConfig(s string) (Config, error) {
	return parseConfig(s, os.Getenv)
}

func parseConfig(s string, getenv func(string) string) (Config, error) {
	raw := strings.TrimPrefix(s, "rest:")
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("parse rest URL: %w", redactURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Config{}, fmt.Errorf("parse rest URL %q: scheme must be http or https", redact(u))
	}
	if u.Host == "" {
		return Config{}, fmt.Errorf("parse rest URL %q: no host", redact(u))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("parse rest URL %q: query strings and fragments are not allowed", redact(u))
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	if u.User == nil {
		for _, prefix := range []string{"CAIRN_REST_", "RESTIC_REST_"} {
			user, pass := getenv(prefix+"USERNAME"), getenv(prefix+"PASSWORD")
			if user != "" || pass != "" {
				u.User = url.UserPassword(user, pass)
				break
			}
		}
	}
	return Config{URL: u, Connections: DefaultConnections}, nil
}

// redact returns u without credentials, for messages.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// redactURLError drops the URL (which may hold a password) from a
// *url.Error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
