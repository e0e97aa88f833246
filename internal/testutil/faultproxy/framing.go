package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The framing code finds where HTTP/1.1 messages begin and end in a byte
// stream, so that faults can be placed per request. It never changes a
// byte: whatever it reads it writes, and a stream it cannot frame is
// copied through unparsed.

// maxHeader bounds a message header; longer ones are copied unframed.
const maxHeader = 1 << 20

// maxLine bounds a chunk-size or trailer line.
const maxLine = 4 << 10

// errFraming reports a stream that does not parse as HTTP/1.1 messages.
var errFraming = errors.New("faultproxy: cannot frame HTTP message")

// header is what the framer needs from a message header.
type header struct {
	start   []string // fields of the start line
	te      []string // transfer codings, lower case, in order
	cl      int64    // Content-Length, -1 if absent
	upgrade bool     // "Connection: upgrade"
}

// readHeader reads the start line and header fields up to and including
// the empty line, returning the raw bytes. Empty lines before the start
// line are kept in raw. It returns (nil, io.EOF) when the stream ends
// before a first byte.
func readHeader(br *bufio.Reader) ([]byte, error) {
	var raw []byte
	started := false
	for {
		line, err := br.ReadSlice('\n')
		raw = append(raw, line...)
		if len(raw) > maxHeader {
			return raw, errFraming
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			started = true
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(raw) == 0 {
				return nil, io.EOF
			}
			return raw, err
		}
		empty := len(line) == 1 || (len(line) == 2 && line[0] == '\r')
		if !empty {
			started = true
			continue
		}
		if started {
			return raw, nil
		}
	}
}

// parseHeader parses raw (from readHeader).
func parseHeader(raw []byte) (header, error) {
	h := header{cl: -1}
	lines := strings.Split(strings.TrimRight(string(raw), "\r\n"), "\n")
	i := 0
	for i < len(lines) && strings.TrimRight(lines[i], "\r") == "" {
		i++
	}
	if i == len(lines) {
		return h, errFraming
	}
	h.start = strings.SplitN(strings.TrimRight(lines[i], "\r"), " ", 3)
	if len(h.start) < 2 {
		return h, errFraming
	}
	for _, l := range lines[i+1:] {
		l = strings.TrimRight(l, "\r")
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return h, errFraming // includes obsolete line folding
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || (h.cl >= 0 && h.cl != n) {
				return h, errFraming
			}
			h.cl = n
		case "transfer-encoding":
			for _, c := range strings.Split(value, ",") {
				if c = strings.ToLower(strings.TrimSpace(c)); c != "" {
					h.te = append(h.te, c)
				}
			}
		case "connection":
			for _, c := range strings.Split(value, ",") {
				if strings.EqualFold(strings.TrimSpace(c), "upgrade") {
					h.upgrade = true
				}
			}
		}
	}
	return h, nil
}

func (h header) chunked() bool { return len(h.te) > 0 && h.te[len(h.te)-1] == "chunked" }

// body kinds
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// copyUnframed writes what was read already and then everything else.
func copyUnframed(w io.Writer, raw []byte, br *bufio.Reader) error {
	if _, err := w.Write(raw); err != nil {
		return err
	}
	_, err := io.Copy(w, br)
	return err
}

// copyBody copies one message body of the given kind through w.
func copyBody(w io.Writer, br *bufio.Reader, kind int, n int64) error {
	switch kind {
	case bodyLength:
		_, err := io.CopyN(w, br, n)
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF // the source closed inside a body
		}
		return err
	case bodyChunked:
		return copyChunked(w, br)
	case bodyUntilClose:
		_, err := io.Copy(w, br)
		if err == nil {
			return io.EOF // the message ends with the stream
		}
		return err
	}
	return nil
}

// readLine reads one line (with its end) of at most maxLine bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var raw []byte
	for {
		line, err := br.ReadSlice('\n')
		raw = append(raw, line...)
		if len(raw) > maxLine {
			return raw, errFraming
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return raw, err
	}
}

// copyChunked copies a chunked body including its trailer section.
func copyChunked(w io.Writer, br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if errors.Is(err, errFraming) {
			return copyUnframed(w, line, br)
		}
		if _, werr := w.Write(line); werr != nil {
			return werr
		}
		if err != nil {
			return eofInBody(err)
		}
		sizeStr, _, _ := strings.Cut(string(bytes.TrimRight(line, "\r\n")), ";")
		size, perr := strconv.ParseInt(strings.TrimSpace(sizeStr), 16, 64)
		if perr != nil || size < 0 {
			return copyUnframed(w, nil, br)
		}
		if size == 0 {
			for { // trailer fields, then the empty line
				line, err := readLine(br)
				if errors.Is(err, errFraming) {
					return copyUnframed(w, line, br)
				}
				if _, werr := w.Write(line); werr != nil {
					return werr
				}
				if err != nil {
					return eofInBody(err)
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := io.CopyN(w, br, size); err != nil {
			return eofInBody(err)
		}
		line, err = readLine(br) // CRLF after the data
		if errors.Is(err, errFraming) {
			return copyUnframed(w, line, br)
		}
		if _, werr := w.Write(line); werr != nil {
			return werr
		}
		if err != nil {
			return eofInBody(err)
		}
	}
}

func eofInBody(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// copyRequests forwards requests from src to dst. For each request, start
// is called with its method, header length and body length (-1: chunked)
// and returns the writer to forward that request through. A stream that
// cannot be framed is copied to dst unparsed. It returns nil when src ends
// cleanly between requests.
func copyRequests(src io.Reader, dst io.Writer, start func(method string, hdrLen, bodyLen int64) io.Writer) error {
	br := bufio.NewReaderSize(src, 32<<10)
	for {
		raw, err := readHeader(br)
		if errors.Is(err, io.EOF) && raw == nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, errFraming) {
				return copyUnframed(dst, raw, br)
			}
			if _, werr := dst.Write(raw); werr != nil {
				return werr
			}
			return eofInBody(err)
		}
		h, err := parseHeader(raw)
		kind, n := bodyLength, h.cl
		switch {
		case err != nil:
		case len(h.start) != 3 || !strings.HasPrefix(h.start[2], "HTTP/"):
			err = errFraming
		case h.chunked():
			kind, n = bodyChunked, -1
		case len(h.te) > 0:
			err = errFraming // a request body that cannot be delimited
		case h.cl < 0:
			kind, n = bodyNone, 0
		}
		if err != nil {
			return copyUnframed(dst, raw, br)
		}
		w := start(h.start[0], int64(len(raw)), n)
		if _, err := w.Write(raw); err != nil {
			return err
		}
		if err := copyBody(w, br, kind, n); err != nil {
			return err
		}
		if h.upgrade {
			_, err := io.Copy(w, br)
			return err
		}
	}
}

// copyResponses forwards responses from src to dst. For each final
// response, pop returns the plan of the request it answers and start
// returns the writer to forward it through (given the header length and
// the body length, -1 when unknown). Interim (1xx) responses go straight
// to dst. It returns nil when src ends cleanly between responses.
func copyResponses(src io.Reader, dst io.Writer, pop func() plan, start func(pl plan, hdrLen, bodyLen int64) io.Writer) error {
	br := bufio.NewReaderSize(src, 32<<10)
	for {
		raw, err := readHeader(br)
		if errors.Is(err, io.EOF) && raw == nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, errFraming) {
				return copyUnframed(dst, raw, br)
			}
			if _, werr := dst.Write(raw); werr != nil {
				return werr
			}
			return eofInBody(err)
		}
		h, err := parseHeader(raw)
		var code int
		if err == nil {
			code, err = strconv.Atoi(h.start[1])
			if err != nil || code < 100 || code > 999 || !strings.HasPrefix(h.start[0], "HTTP/") {
				err = fmt.Errorf("%w: status line %q", errFraming, strings.Join(h.start, " "))
			}
		}
		if err != nil {
			return copyUnframed(dst, raw, br)
		}
		if code == 101 {
			return copyUnframed(dst, raw, br)
		}
		if code < 200 {
			if _, err := dst.Write(raw); err != nil {
				return err
			}
			continue
		}
		pl := pop()
		kind, n := bodyLength, h.cl
		switch {
		case pl.method == "HEAD" || code == 204 || code == 304:
			kind, n = bodyNone, 0
		case h.chunked():
			kind, n = bodyChunked, -1
		case len(h.te) > 0 || h.cl < 0:
			kind, n = bodyUntilClose, -1
		}
		w := start(pl, int64(len(raw)), n)
		if _, err := w.Write(raw); err != nil {
			return err
		}
		if err := copyBody(w, br, kind, n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
