//go:build !linux

package pack

import (
	"errors"
	"os"
)

// setDirect reports that direct I/O is not implemented on this system
// (clearing it always succeeds: it was never set).
func setDirect(_ *os.File, on bool) error {
	if on {
		return errors.ErrUnsupported
	}
	return nil
}

// directRefused is never true: direct mode is never entered here.
func directRefused(error) bool { return false }
