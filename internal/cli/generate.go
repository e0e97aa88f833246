package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { extraCommands = append(extraCommands, newGenerateCommand) }

func newGenerateCommand(g *globalOptions) *cobra.Command {
	var manDir, bash, zsh, fish, powershell string
	cmd := &cobra.Command{
		Use:   "generate [flags]",
		Short: "Write man pages and shell completion scripts",
		Long: `Write man pages (one per command) and shell completion scripts, all
generated from the command definitions. ("cairn completion SHELL" prints a
completion script to standard output as well.)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			if manDir == "" && bash == "" && zsh == "" && fish == "" && powershell == "" {
				return errors.New("nothing to do: give --man DIR or a --*-completion FILE")
			}
			if manDir != "" {
				if err := os.MkdirAll(manDir, 0o755); err != nil {
					return err
				}
				hdr := &doc.GenManHeader{Title: "CAIRN", Section: "1", Source: "cairn " + Version, Manual: "cairn manual"}
				root.DisableAutoGenTag = true
				if err := doc.GenManTree(root, hdr, manDir); err != nil {
					return fmt.Errorf("generate man pages: %w", err)
				}
				g.printf("wrote man pages to %s\n", manDir)
			}
			for _, c := range []struct {
				file string
				gen  func(string) error
			}{
				{bash, func(f string) error { return root.GenBashCompletionFileV2(f, true) }},
				{zsh, root.GenZshCompletionFile},
				{fish, func(f string) error { return root.GenFishCompletionFile(f, true) }},
				{powershell, root.GenPowerShellCompletionFileWithDesc},
			} {
				if c.file == "" {
					continue
				}
				if err := c.gen(c.file); err != nil {
					return fmt.Errorf("generate completion %s: %w", c.file, err)
				}
				g.printf("wrote %s\n", c.file)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&manDir, "man", "", "write man pages into `directory`")
	f.StringVar(&bash, "bash-completion", "", "write the bash completion script to `file`")
	f.StringVar(&zsh, "zsh-completion", "", "write the zsh completion script to `file`")
	f.StringVar(&fish, "fish-completion", "", "write the fish completion script to `file`")
	f.StringVar(&powershell, "powershell-completion", "", "write the PowerShell completion script to `file`")
	return cmd
}
