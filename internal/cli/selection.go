package cli

import (
	"github.com/spf13/pflag"

	"github.com/cairn-backup/cairn/internal/archiver"
	"github.com/cairn-backup/cairn/internal/restorer"
)

// selectionOptions are backup's file selection flags (filled in by the
// exclude-pattern support).
type selectionOptions struct {
	excludes []string
}

func addSelectionFlags(f *pflag.FlagSet, o *selectionOptions) {}

func (o *selectionOptions) build() (archiver.SelectFunc, error) { return nil, nil }

func (o *selectionOptions) excludePatterns() []string { return o.excludes }

func buildRestoreSelect(o restoreOptions) (restorer.SelectFunc, error) { return nil, nil }
