//go:build linux

package local

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/internal/backend"
)

// renameNoReplace renames tmp to final unless final exists, atomically.
func renameNoReplace(tmp, final string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("publish: %w", backend.ErrAlreadyExists)
	case renameUnsupported(err):
		return fmt.Errorf("publish by renameat2: %w (%w)", errUnsupported, err)
	}
	return fmt.Errorf("publish: %w", classify(err))
}
