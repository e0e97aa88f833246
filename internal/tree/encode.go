package tree

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/cairn-backup/cairn/internal/core"
)

const hexDigits = "0123456789abcdef"

// rawSafe[b] is true for ASCII bytes encoding/json writes unescaped with
// HTML escaping on: printable characters and DEL, except '"', '\\', '<',
// '>' and '&'.
var rawSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = true
	}
	for _, b := range []byte{'"', '\\', '<', '>', '&'} {
		t[b] = false
	}
	return t
}()

// appendString appends s as a JSON string the way go1.19's encoding/json
// does with HTML escaping: \" \\ \n \r \t short escapes, every other control
// character and < > & as \u00XX (lowercase hex; note: no \b or \f short
// forms, which Go only added in 1.22), U+2028/U+2029 as \u2028/\u2029 and
// each invalid UTF-8 byte as \ufffd.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if rawSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendName appends the JSON encoding of restic's quoted form of name:
// strconv.Quote(name) without the outer quotes, JSON-escaped.
func appendName(dst []byte, name string) []byte {
	plain := true
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		// strconv.Quote leaves printable ASCII other than " and \ alone.
		return appendString(dst, name)
	}
	var scratch [256]byte
	q := strconv.AppendQuote(scratch[:0], name)
	// q is at least `""`; view the inside as a string without copying. q is
	// not modified while the view is in use.
	inner := unsafe.String(unsafe.SliceData(q[1:]), len(q)-2)
	return appendString(dst, inner)
}

func appendUint(dst []byte, v uint64) []byte { return strconv.AppendUint(dst, v, 10) }

// appendTime appends t as a JSON string in RFC 3339 with nanoseconds, in t's
// own location, after clamping the year (see clampYear).
func appendTime(dst []byte, t time.Time) []byte {
	t = clampYear(t)
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// clampYear mirrors restic's FixTime: a year below 0 is moved to year 0 and a
// year above 9999 to 9999 with AddDate, leaving the rest of the date alone
// (AddDate normalises, so Feb 29 may become Mar 1). The year is taken in t's
// location, which for filesystem times is the local zone.
func clampYear(t time.Time) time.Time {
	switch y := t.Year(); {
	case y < 0:
		return t.AddDate(-y, 0, 0)
	case y > 9999:
		return t.AddDate(-(y - 9999), 0, 0)
	}
	return t
}

// appendBase64 appends b as a JSON string holding its standard base64 form.
func appendBase64(dst []byte, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// appendID appends id as a quoted lowercase hex string.
func appendID(dst []byte, id *core.ID) []byte {
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, id[:])
	return append(dst, '"')
}

func validUTF8(s string) bool { return utf8.ValidString(s) }

// checkIDs rejects a node that refers to the null (all-zero) ID: a file
// whose content lists it or a directory whose subtree is it. Such a tree
// would reference data that can never exist (invariant I15,
// docs/concurrency.md); the archiver never produces one, so it is a bug.
func checkIDs(n *Node) error {
	switch n.Type {
	case NodeFile:
		for i := range n.Content {
			if n.Content[i].IsNull() {
				return fmt.Errorf("file %q: content blob %d has the null ID", n.Name, i)
			}
		}
	case NodeDir:
		if n.Subtree != nil && n.Subtree.IsNull() {
			return fmt.Errorf("dir %q: null subtree ID", n.Name)
		}
	}
	return nil
}
