package server

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// credCacheTTL is how long a verified user:password pair is trusted
// without re-running bcrypt.
const credCacheTTL = time.Minute

// maxCredCache bounds the verified-credential cache.
const maxCredCache = 4096

// defaultHtpasswdCheck is the minimum time between two checks of the
// htpasswd file for changes.
const defaultHtpasswdCheck = 30 * time.Second

// validUserName is the user-name syntax accepted from htpasswd files.
var validUserName = regexp.MustCompile(`^[\p{L}\d@._-]+$`)

// htpasswd verifies Basic-auth credentials against an htpasswd file that
// holds bcrypt ($2a$, $2b$, $2y$) or {SHA} entries. The file is re-read when
// its mtime or size changes (checked at most every checkEvery) or when
// reload is called (SIGHUP).
type htpasswd struct {
	path       string
	checkEvery time.Duration
	log        *slog.Logger
	now        func() time.Time

	mu        sync.Mutex        // guards all fields below
	users     map[string]string // user name -> hash
	modTime   time.Time
	size      int64
	lastCheck time.Time
	cache     map[[sha256.Size]byte]time.Time // sha256(user:pass) -> expiry
}

func newHtpasswd(path string, checkEvery time.Duration, log *slog.Logger) (*htpasswd, error) {
	if checkEvery <= 0 {
		checkEvery = defaultHtpasswdCheck
	}
	h := &htpasswd{path: path, checkEvery: checkEvery, log: log, now: time.Now}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// reload reads the file now.
func (h *htpasswd) reload() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reloadLocked()
}

func (h *htpasswd) reloadLocked() error {
	fi, err := os.Stat(h.path)
	if err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	data, err := os.ReadFile(h.path)
	if err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	h.users = parseHtpasswd(data, h.log)
	h.modTime = fi.ModTime()
	h.size = fi.Size()
	h.lastCheck = h.now()
	h.cache = make(map[[sha256.Size]byte]time.Time)
	return nil
}

// parseHtpasswd reads "user:hash" lines; '#' starts a comment line, leading
// blanks are ignored, bad user names and unsupported hash formats are
// skipped with a log line.
func parseHtpasswd(data []byte, log *slog.Logger) map[string]string {
	users := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(strings.TrimLeft(sc.Text(), " \t"), "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok {
			log.Warn("htpasswd: line without ':' skipped", "line", lineNo)
			continue
		}
		if !validUserName.MatchString(user) {
			log.Warn("htpasswd: invalid user name skipped", "line", lineNo)
			continue
		}
		if !supportedHash(hash) {
			log.Warn("htpasswd: unsupported hash format skipped (only bcrypt and {SHA})", "line", lineNo, "user", user)
			continue
		}
		users[user] = hash
	}
	if err := sc.Err(); err != nil {
		log.Warn("htpasswd: read stopped", "line", lineNo, "err", err)
	}
	return users
}

func supportedHash(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") ||
		strings.HasPrefix(hash, "$2y$") || strings.HasPrefix(hash, "{SHA}")
}

// maybeReloadLocked re-reads the file if it changed and the check interval
// has passed. A failed re-read keeps the previous users.
func (h *htpasswd) maybeReloadLocked() {
	now := h.now()
	if now.Sub(h.lastCheck) < h.checkEvery {
		return
	}
	h.lastCheck = now
	fi, err := os.Stat(h.path)
	if err != nil {
		h.log.Warn("htpasswd: stat failed, keeping the loaded users", "err", err)
		return
	}
	if fi.ModTime().Equal(h.modTime) && fi.Size() == h.size {
		return
	}
	if err := h.reloadLocked(); err != nil {
		h.log.Warn("htpasswd: reload failed, keeping the loaded users", "err", err)
		return
	}
	h.log.Info("htpasswd: reloaded", "users", len(h.users))
}

// verify reports whether user:pass is valid.
func (h *htpasswd) verify(user, pass string) bool {
	key := sha256.Sum256([]byte(user + ":" + pass))

	h.mu.Lock()
	h.maybeReloadLocked()
	now := h.now()
	if exp, ok := h.cache[key]; ok {
		if now.Before(exp) {
			h.mu.Unlock()
			return true
		}
		delete(h.cache, key)
	}
	hash, ok := h.users[user]
	h.mu.Unlock()
	if !ok {
		return false
	}

	if !checkHash(hash, pass) {
		return false
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	// The file may have been reloaded while bcrypt ran; only cache the
	// result if the entry is unchanged.
	if h.users[user] != hash {
		return true
	}
	if len(h.cache) >= maxCredCache {
		for k, exp := range h.cache {
			if !now.Before(exp) {
				delete(h.cache, k)
			}
		}
		if len(h.cache) >= maxCredCache {
			h.cache = make(map[[sha256.Size]byte]time.Time)
		}
	}
	h.cache[key] = now.Add(credCacheTTL)
	return true
}

func checkHash(hash, pass string) bool {
	if rest, ok := strings.CutPrefix(hash, "{SHA}"); ok {
		sum := sha1.Sum([]byte(pass))
		want := base64.StdEncoding.EncodeToString(sum[:])
		return subtle.ConstantTimeCompare([]byte(rest), []byte(want)) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) == nil
}
