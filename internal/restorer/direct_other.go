//go:build !linux

package restorer

import (
	"errors"
	"fmt"
)

// directFS is false: cairn uses direct I/O (O_DIRECT) only on Linux, so
// restores elsewhere always write through the page cache. A variable for
// tests.
var directFS = func(string) bool { return false }

// openDirect fails with errors.ErrUnsupported, which writeDirect treats
// like a refusal (the restore continues buffered); it is not reached while
// directFS is false.
var openDirect = func(path string) (int, error) {
	return -1, fmt.Errorf("open %s for direct I/O: %w", path, errors.ErrUnsupported)
}
