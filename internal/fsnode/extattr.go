package fsnode

import "errors"

// appendExtattrNames decodes raw, a FreeBSD extattr_list(2) list (each name
// preceded by its length in one byte, no terminators), and appends every
// name with prefix (its namespace, "user." or "system.") and a NUL
// terminator to out, the layout Linux's listxattr returns. Used on
// FreeBSD; portable so that it is tested everywhere.
func appendExtattrNames(out, raw []byte, prefix string) ([]byte, error) {
	for len(raw) > 0 {
		n := int(raw[0])
		if 1+n > len(raw) {
			return out, errors.New("extattr list: truncated name")
		}
		out = append(out, prefix...)
		out = append(out, raw[1:1+n]...)
		out = append(out, 0)
		raw = raw[1+n:]
	}
	return out, nil
}
