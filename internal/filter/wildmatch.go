package filter

import "strings"

// wildmatch matches text against a git-style glob pattern (git's
// wildmatch semantics):
//
//   - '?' matches one character, '*' any run of characters, '[...]' one
//     character of a set ('!' or '^' negates it, ranges "a-z", POSIX classes
//     "[:alpha:]", a leading ']' is literal, '\' escapes), '\x' matches x.
//   - With pathname set, none of them matches '/', and "**" matches across
//     '/' when it is a whole path component: "**/x" (x at any depth, also at
//     the top), "x/**" (everything inside x), "a/**/b" (zero or more
//     directories). Any other "**" is a plain '*'.
//   - A pattern ending in a lone '\' matches nothing.
//
// It works on bytes, like git; a multi-byte character is several
// characters for '?' and bracket sets.
func wildmatch(pattern, text string, pathname bool) bool {
	if !strings.ContainsAny(pattern, `*?[\`) {
		return pattern == text
	}
	w := wildMatcher{pat: pattern, text: text, pathname: pathname}
	if strings.Contains(pattern, "*") {
		// Only '*' backtracks; memoising bounds it to pattern×text steps.
		w.memo = make([]uint8, (len(pattern)+1)*(len(text)+1))
	}
	return w.eval(0, 0)
}

type wildMatcher struct {
	pat, text string
	pathname  bool
	memo      []uint8 // 0 unknown, 1 false, 2 true; index pi*(len(text)+1)+ti
}

func (w *wildMatcher) match(pi, ti int) bool {
	idx := pi*(len(w.text)+1) + ti
	if v := w.memo[idx]; v != 0 {
		return v == 2
	}
	r := w.eval(pi, ti)
	if r {
		w.memo[idx] = 2
	} else {
		w.memo[idx] = 1
	}
	return r
}

func (w *wildMatcher) eval(pi, ti int) bool {
	pat, text := w.pat, w.text
	for pi < len(pat) {
		c := pat[pi]
		switch c {
		case '?':
			if ti >= len(text) || (w.pathname && text[ti] == '/') {
				return false
			}
			pi++
			ti++
		case '*':
			start := pi
			for pi < len(pat) && pat[pi] == '*' {
				pi++
			}
			crossSlash := !w.pathname
			if w.pathname && pi-start >= 2 {
				before := start == 0 || pat[start-1] == '/'
				after := pi == len(pat) || pat[pi] == '/' ||
					(pat[pi] == '\\' && pi+1 < len(pat) && pat[pi+1] == '/')
				if before && after {
					// "**/" may also match no directory at all.
					if pi < len(pat) && pat[pi] == '/' && w.match(pi+1, ti) {
						return true
					}
					crossSlash = true
				}
			}
			if pi == len(pat) {
				if crossSlash {
					return true
				}
				for i := ti; i < len(text); i++ {
					if text[i] == '/' {
						return false
					}
				}
				return true
			}
			for i := ti; i <= len(text); i++ {
				if w.match(pi, i) {
					return true
				}
				if i < len(text) && !crossSlash && text[i] == '/' {
					return false
				}
			}
			return false
		case '[':
			if ti >= len(text) {
				return false
			}
			next, ok := w.bracket(pi, text[ti])
			if next < 0 {
				return false // malformed set: no match, as in git
			}
			if !ok || (w.pathname && text[ti] == '/') {
				return false
			}
			pi = next
			ti++
		case '\\':
			if pi+1 >= len(pat) {
				return false
			}
			if ti >= len(text) || text[ti] != pat[pi+1] {
				return false
			}
			pi += 2
			ti++
		default:
			if ti >= len(text) || text[ti] != c {
				return false
			}
			pi++
			ti++
		}
	}
	return ti == len(text)
}

// bracket evaluates the set starting at pat[pi] == '[' for character ch.
// It returns the index after the closing ']' (or -1 when the set is not
// closed) and whether ch is in the set.
func (w *wildMatcher) bracket(pi int, ch byte) (int, bool) {
	pat := w.pat
	i := pi + 1
	if i >= len(pat) {
		return -1, false
	}
	negate := false
	if pat[i] == '!' || pat[i] == '^' {
		negate = true
		i++
	}
	matched := false
	first := true
	var prev int = -1 // previous literal character, for ranges
	for {
		if i >= len(pat) {
			return -1, false
		}
		c := pat[i]
		if c == ']' && !first {
			i++
			break
		}
		first = false
		switch {
		case c == '\\':
			i++
			if i >= len(pat) {
				return -1, false
			}
			if pat[i] == ch {
				matched = true
			}
			prev = int(pat[i])
			i++
		case c == '-' && prev >= 0 && i+1 < len(pat) && pat[i+1] != ']':
			i++
			hi := pat[i]
			if hi == '\\' {
				i++
				if i >= len(pat) {
					return -1, false
				}
				hi = pat[i]
			}
			if int(ch) >= prev && ch <= hi {
				matched = true
			}
			prev = -1
			i++
		case c == '[' && i+1 < len(pat) && pat[i+1] == ':':
			// A class runs to the first ']'; it must end in ":]".
			end := -1
			for j := i + 2; j < len(pat); j++ {
				if pat[j] == ']' {
					end = j
					break
				}
			}
			if end < 0 {
				return -1, false
			}
			if end-1 < i+2 || pat[end-1] != ':' {
				// Not a class after all: a literal '['.
				if ch == '[' {
					matched = true
				}
				prev = '['
				i++
				continue
			}
			in, known := charClass(pat[i+2:end-1], ch)
			if !known {
				return -1, false // unknown class: malformed
			}
			if in {
				matched = true
			}
			prev = -1
			i = end + 1
		default:
			if c == ch {
				matched = true
			}
			prev = int(c)
			i++
		}
	}
	return i, matched != negate
}

// charClass reports whether ch is in the POSIX class name, and whether the
// class is known.
func charClass(name string, ch byte) (in, known bool) {
	isUpper := ch >= 'A' && ch <= 'Z'
	isLower := ch >= 'a' && ch <= 'z'
	isDigit := ch >= '0' && ch <= '9'
	switch name {
	case "alnum":
		return isUpper || isLower || isDigit, true
	case "alpha":
		return isUpper || isLower, true
	case "blank":
		return ch == ' ' || ch == '\t', true
	case "cntrl":
		return ch < 0x20 || ch == 0x7f, true
	case "digit":
		return isDigit, true
	case "graph":
		return ch > 0x20 && ch < 0x7f, true
	case "lower":
		return isLower, true
	case "print":
		return ch >= 0x20 && ch < 0x7f, true
	case "punct":
		return ch > 0x20 && ch < 0x7f && !isUpper && !isLower && !isDigit, true
	case "space":
		return ch == ' ' || (ch >= '\t' && ch <= '\r'), true
	case "upper":
		return isUpper, true
	case "xdigit":
		return isDigit || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'), true
	}
	return false, false
}
