package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/repo"
)

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.JSON {
				return g.printJSON(map[string]string{"message_type": "version", "version": Version, "go_version": runtime.Version(), "go_os": runtime.GOOS, "go_arch": runtime.GOARCH, "zstd": repo.CompressionEngine()})
			}
			fmt.Fprintf(g.stdout, "cairn %s compiled with %s on %s/%s, zstd encoder: %s\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, repo.CompressionEngine())
			return nil
		},
	}
}
