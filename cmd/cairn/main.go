// Command cairn is a restic-compatible deduplicating backup program.
package main

import (
	"os"

	"github.com/cairn-backup/cairn/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
