package sftp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// DefaultConnections is the default number of parallel requests (all over
// one SSH connection).
const DefaultConnections = 5

// DefaultStallTimeout is used when Config.StallTimeout is zero.
const DefaultStallTimeout = 5 * time.Minute

// Config configures an SFTP backend.
type Config struct {
	User string // empty: the current user
	Host string // host name or IP address (no brackets)
	Port int    // 0: 22
	// Path of the repository on the server: absolute, or relative to the
	// user's home directory.
	Path string

	// KnownHostsFiles are checked for the server's host key; empty means
	// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts. A host whose key is
	// in none of them is refused, never trusted on first use.
	KnownHostsFiles []string
	// KeyFiles are private keys (unencrypted) to authenticate with, tried
	// first. After them come the keys of the ssh-agent at $SSH_AUTH_SOCK
	// (unless NoAgent) and ~/.ssh/id_ed25519, id_ecdsa and id_rsa.
	KeyFiles []string
	NoAgent  bool

	// Connections is the number of parallel requests (default
	// DefaultConnections).
	Connections uint
	// StallTimeout closes the connection when the server does not answer
	// an SSH keepalive for this long (default DefaultStallTimeout;
	// negative disables keepalives).
	StallTimeout time.Duration
}

// ParseConfig parses an SFTP location in either of restic's forms:
//
//	sftp:[user@]host:path          (path absolute, or relative to the home directory)
//	sftp://[user@]host[:port]/path (relative to the home directory)
//	sftp://[user@]host[:port]//path (absolute)
//
// The "sftp:" prefix is optional for the first form. IPv6 addresses are
// written in brackets: sftp:user@[::1]:/srv/repo.
func ParseConfig(s string) (Config, error) {
	if strings.HasPrefix(s, "sftp://") {
		return parseURL(s)
	}
	raw := strings.TrimPrefix(s, "sftp:")
	var cfg Config
	// A user name holds no ":" or "/", a host no "@": the first "@"
	// before any of those ends the user name.
	if i := strings.Index(raw, "@"); i >= 0 && !strings.ContainsAny(raw[:i], ":/[") {
		cfg.User, raw = raw[:i], raw[i+1:]
		if cfg.User == "" {
			return Config{}, fmt.Errorf("parse sftp location %q: empty user", s)
		}
	}
	var host, p string
	if strings.HasPrefix(raw, "[") {
		end := strings.Index(raw, "]")
		if end < 0 {
			return Config{}, fmt.Errorf("parse sftp location %q: unterminated [", s)
		}
		host = raw[1:end]
		rest, ok := strings.CutPrefix(raw[end+1:], ":")
		if !ok {
			return Config{}, fmt.Errorf("parse sftp location %q: want [host]:path", s)
		}
		p = rest
	} else {
		var ok bool
		host, p, ok = strings.Cut(raw, ":")
		if !ok {
			return Config{}, fmt.Errorf("parse sftp location %q: want [user@]host:path or sftp://[user@]host[:port]/path", s)
		}
	}
	cfg.Host = host
	cfg.Path = p
	return cfg.finish(s)
}

func parseURL(s string) (Config, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Config{}, fmt.Errorf("parse sftp location: %w", redactURLError(err))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("parse sftp location %q: query strings and fragments are not allowed", s)
	}
	var cfg Config
	if u.User != nil {
		if _, hasPass := u.User.Password(); hasPass {
			return Config{}, errors.New("parse sftp location: passwords are not supported: use keys")
		}
		cfg.User = u.User.Username()
		if cfg.User == "" {
			return Config{}, fmt.Errorf("parse sftp location %q: empty user", s)
		}
	}
	cfg.Host = u.Hostname()
	if ps := u.Port(); ps != "" {
		port, err := strconv.Atoi(ps)
		if err != nil || port < 1 || port > 65535 {
			return Config{}, fmt.Errorf("parse sftp location %q: invalid port %q", s, ps)
		}
		cfg.Port = port
	}
	// One slash separates host and path: "/x" is relative to the home
	// directory, "//x" is absolute.
	cfg.Path = strings.TrimPrefix(u.Path, "/")
	return cfg.finish(s)
}

func (cfg Config) finish(s string) (Config, error) {
	if cfg.Host == "" || strings.ContainsAny(cfg.Host, "/@[] ") {
		return Config{}, fmt.Errorf("parse sftp location %q: invalid host %q", s, cfg.Host)
	}
	if cfg.Path == "" {
		return Config{}, fmt.Errorf("parse sftp location %q: no path", s)
	}
	cfg.Path = path.Clean(cfg.Path)
	if cfg.Path == "/" || cfg.Path == "." {
		return Config{}, fmt.Errorf("parse sftp location %q: the repository cannot be the root or home directory itself", s)
	}
	cfg.Connections = DefaultConnections
	return cfg, nil
}

// addr returns host:port.
func (cfg Config) addr() string {
	port := cfg.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(port))
}

// location names the repository for messages.
func (cfg Config) location(user string) string {
	host := cfg.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if cfg.Port != 0 && cfg.Port != 22 {
		// One slash after the host; an absolute path adds its own.
		return "sftp://" + user + "@" + host + ":" + strconv.Itoa(cfg.Port) + "/" + cfg.Path
	}
	return "sftp:" + user + "@" + host + ":" + cfg.Path
}

func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
