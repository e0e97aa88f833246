package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxListFileSize bounds what one pattern or file list may hold.
const maxListFileSize = 256 << 20

// DecodeText turns a text file into UTF-8 as restic reads exclude files and
// --files-from lists: a UTF-8 byte order mark is dropped, UTF-16 with a
// byte order mark (either endianness) is converted, anything else is taken
// as it is.
func DecodeText(data []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(data, []byte{0xef, 0xbb, 0xbf}):
		return data[3:], nil
	case bytes.HasPrefix(data, []byte{0xff, 0xfe}):
		return decodeUTF16(data[2:], false)
	case bytes.HasPrefix(data, []byte{0xfe, 0xff}):
		return decodeUTF16(data[2:], true)
	}
	return data, nil
}

func decodeUTF16(b []byte, bigEndian bool) ([]byte, error) {
	if len(b)%2 != 0 {
		return nil, errors.New("decode UTF-16 text: odd number of bytes")
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		if bigEndian {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		} else {
			u[i] = uint16(b[2*i+1])<<8 | uint16(b[2*i])
		}
	}
	var out []byte
	for _, r := range utf16.Decode(u) {
		out = utf8.AppendRune(out, r)
	}
	return out, nil
}

// splitLines splits text into lines like bufio.ScanLines: at '\n', with
// one trailing '\r' dropped from each line and no empty last line.
func splitLines(data []byte) []string {
	var lines []string
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		lines = append(lines, string(bytes.TrimSuffix(line, []byte("\r"))))
	}
	return lines
}

// ExpandEnv expands $VAR and ${VAR} from the environment as restic does in
// exclude files (os.Expand): an unset variable becomes empty, and "$$" is
// a literal '$'.
func ExpandEnv(s string) string {
	return os.Expand(s, func(name string) string {
		if name == "$" {
			return "$"
		}
		return os.Getenv(name)
	})
}

// ParseExcludeFile returns the patterns of an --exclude-file or
// --iexclude-file: lines are trimmed of surrounding white space, empty
// lines and lines starting with '#' are skipped, and environment variables
// are expanded (ExpandEnv).
func ParseExcludeFile(data []byte) ([]string, error) {
	text, err := DecodeText(data)
	if err != nil {
		return nil, fmt.Errorf("parse exclude file: %w", err)
	}
	var out []string
	for _, line := range splitLines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, ExpandEnv(line))
	}
	return out, nil
}

// ListKind selects the format of a --files-from style list.
type ListKind int

const (
	// FilesFrom (--files-from): one glob pattern per line, trimmed; empty
	// lines and '#' comments skipped. restic 0.14 does not expand
	// environment variables here.
	FilesFrom ListKind = iota
	// FilesFromVerbatim (--files-from-verbatim): one path per line, taken
	// as it is; only empty lines are skipped.
	FilesFromVerbatim
	// FilesFromRaw (--files-from-raw): paths each terminated by a NUL byte,
	// taken as they are (no text decoding).
	FilesFromRaw
)

func (k ListKind) String() string {
	switch k {
	case FilesFrom:
		return "--files-from"
	case FilesFromVerbatim:
		return "--files-from-verbatim"
	case FilesFromRaw:
		return "--files-from-raw"
	}
	return fmt.Sprintf("ListKind(%d)", int(k))
}

// ParseFileList parses the contents of a file list of the given kind.
func ParseFileList(data []byte, kind ListKind) ([]string, error) {
	switch kind {
	case FilesFrom, FilesFromVerbatim:
		text, err := DecodeText(data)
		if err != nil {
			return nil, fmt.Errorf("parse %v: %w", kind, err)
		}
		var out []string
		for _, line := range splitLines(text) {
			if kind == FilesFrom {
				line = strings.TrimSpace(line)
				if strings.HasPrefix(line, "#") {
					continue
				}
			}
			if line == "" {
				continue
			}
			out = append(out, line)
		}
		return out, nil
	case FilesFromRaw:
		if len(data) == 0 {
			return nil, nil
		}
		if data[len(data)-1] != 0 {
			return nil, fmt.Errorf("parse %v: trailing zero byte missing", kind)
		}
		parts := bytes.Split(data[:len(data)-1], []byte{0})
		out := make([]string, len(parts))
		for i, p := range parts {
			if len(p) == 0 {
				return nil, fmt.Errorf("parse %v: empty filename in listing", kind)
			}
			out[i] = string(p)
		}
		return out, nil
	}
	return nil, fmt.Errorf("parse file list: unknown kind %d", int(kind))
}

// ExpandGlobs expands --files-from patterns with filepath.Glob. Patterns
// that match nothing are returned in unmatched (restic warns and skips
// them); a malformed pattern is an error.
func ExpandGlobs(patterns []string) (paths, unmatched []string, err error) {
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, nil, fmt.Errorf("expand pattern %q: %w", p, err)
		}
		if len(m) == 0 {
			unmatched = append(unmatched, p)
			continue
		}
		paths = append(paths, m...)
	}
	return paths, unmatched, nil
}

// readList reads name, or stdin for "-", with a size bound.
func readList(ctx context.Context, name string, stdin io.Reader) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var r io.Reader
	if name == "-" {
		if stdin == nil {
			return nil, errors.New("no standard input")
		}
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxListFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxListFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxListFileSize)
	}
	return data, nil
}

// ReadExcludeFile reads and parses an --exclude-file (see
// ParseExcludeFile).
func ReadExcludeFile(ctx context.Context, name string) ([]string, error) {
	data, err := readList(ctx, name, nil)
	if err != nil {
		return nil, fmt.Errorf("read exclude file %s: %w", name, err)
	}
	out, err := ParseExcludeFile(data)
	if err != nil {
		return nil, fmt.Errorf("read exclude file %s: %w", name, err)
	}
	return out, nil
}

// ReadFileList reads and parses a --files-from style list; name "-" reads
// stdin.
func ReadFileList(ctx context.Context, name string, kind ListKind, stdin io.Reader) ([]string, error) {
	data, err := readList(ctx, name, stdin)
	if err != nil {
		return nil, fmt.Errorf("read %v %s: %w", kind, name, err)
	}
	out, err := ParseFileList(data, kind)
	if err != nil {
		return nil, fmt.Errorf("read %v %s: %w", kind, name, err)
	}
	return out, nil
}
