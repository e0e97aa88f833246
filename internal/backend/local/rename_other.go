//go:build !linux

package local

// renameNoReplace is only available on Linux; elsewhere the backend falls
// back to publishing by hard link.
func renameNoReplace(tmp, final string) error { return errUnsupported }
