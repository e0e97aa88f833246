package server

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/internal/core"
)

// MaxFolderDepth is the maximum number of folder components in a
// repository path ("/", "/a/", "/a/b/"), as in rest-server.
const MaxFolderDepth = 2

// maxComponentLen bounds one folder component (a typical NAME_MAX).
const maxComponentLen = 255

type routeKind int

const (
	routeRepo   routeKind = iota + 1 // {path}           (POST ?create=true)
	routeConfig                      // {path}config
	routeList                        // {path}{type}/
	routeObject                      // {path}{type}/{name}
)

// route is a parsed, validated request path.
type route struct {
	folder []string // decoded repository folder components, 0..MaxFolderDepth
	kind   routeKind
	ftype  core.FileType // for routeList and routeObject; ConfigFile for routeConfig
	name   string        // for routeObject: 64 lowercase hex characters
}

// repoPath is the repository path as Store methods expect it ("", "a", "a/b").
func (r route) repoPath() string { return strings.Join(r.folder, "/") }

// isTypeDir reports whether s names one of the five object directories.
func isTypeDir(s string) bool {
	for _, t := range core.AllFileTypes {
		if t.String() == s {
			return true
		}
	}
	return false
}

// validFolder reports whether s may be used as a repository folder
// component. Only letters, digits and "@._-" are allowed (the character
// class rest-server accepts for user names), and a component may not start
// with a dot, so ".", "..", hidden files such as ".htpasswd", and anything
// containing a separator or NUL are refused.
func validFolder(s string) bool {
	if s == "" || len(s) > maxComponentLen || s[0] == '.' || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r):
		case r == '@', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// parsePath parses the escaped request path (r.URL.EscapedPath()). Every
// component is percent-decoded on its own, so an encoded slash ("%2F") or
// encoded dots ("%2e%2e") stay inside one component and are then refused by
// validation. It reports false for anything that is not a well-formed
// repository URL; callers answer 404.
func parsePath(escaped string) (route, bool) {
	if !strings.HasPrefix(escaped, "/") {
		return route{}, false
	}
	comps := strings.Split(escaped[1:], "/")
	for i, c := range comps {
		d, err := url.PathUnescape(c)
		if err != nil || strings.ContainsAny(d, "/\\\x00") {
			return route{}, false
		}
		comps[i] = d
	}

	var rt route
	i := 0
	// The last component is never a folder: "/a" is not the repository "a".
	for i < len(comps)-1 && len(rt.folder) < MaxFolderDepth && comps[i] != "config" && !isTypeDir(comps[i]) {
		if !validFolder(comps[i]) {
			return route{}, false
		}
		rt.folder = append(rt.folder, comps[i])
		i++
	}
	rest := comps[i:]
	switch {
	case len(rest) == 1 && rest[0] == "":
		rt.kind = routeRepo
	case len(rest) == 1 && rest[0] == "config":
		rt.kind = routeConfig
		rt.ftype = core.ConfigFile
	case len(rest) == 2 && isTypeDir(rest[0]):
		t, err := core.ParseFileType(rest[0])
		if err != nil {
			return route{}, false
		}
		rt.ftype = t
		switch {
		case rest[1] == "":
			rt.kind = routeList
		case core.IsValidName(rest[1]):
			rt.kind = routeObject
			rt.name = rest[1]
		default:
			return route{}, false
		}
	default:
		return route{}, false
	}
	return rt, true
}
