package rest

import (
	"fmt"
	"net/http"
	"strings"
)

// StatusError is an HTTP response with an unexpected status code. It
// wraps backend.ErrNotExist (404), backend.ErrNoSpace (507) or
// backend.ErrAlreadyExists (403 to a save) where they apply, so callers
// can test it with errors.Is.
type StatusError struct {
	Op         string // "save", "load", "stat", "list", "remove", "create"
	Method     string
	URL        string // without credentials
	StatusCode int
	Status     string
	Server     string // the Server response header
	Body       string // the start of the response body
	kind       error
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("rest %s: %s %s: %s", e.Op, e.Method, e.URL, e.Status)
	if b := strings.TrimSpace(e.Body); b != "" && b != http.StatusText(e.StatusCode) {
		msg += ": " + b
	}
	return msg
}

// Unwrap returns the backend sentinel error matching the status, if any.
func (e *StatusError) Unwrap() error { return e.kind }

// Permanent reports whether retrying cannot help: 401, 403, 404, 416 and
// 507 are permanent (as in restic); every other status, 5xx included, is
// transient.
func (e *StatusError) Permanent() bool { return isPermanentStatus(e.StatusCode) }

func isPermanentStatus(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusRequestedRangeNotSatisfiable, http.StatusInsufficientStorage:
		return true
	}
	return false
}
