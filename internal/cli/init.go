package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/repo"
)

type initOptions struct {
	repoVersion       string
	copyChunkerParams bool
	fromRepo          string
	fromPasswordFile  string
}

func newInitCommand(g *globalOptions) *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new repository",
		Long: `Create a new repository at the location given with -r/--repo.

The key is derived from the password with scrypt: N=32768, r=8 (32 MiB per
lane) and p calibrated so that one derivation costs at least 0.5 s of
single-core work (never cheaper than N=32768, r=8, p=1). The p lanes are
computed on all cores, which shortens the wait, not the attacker's work.
Tests may set CAIRN_KDF_PARAMS=N,r,p for cheap keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.repoVersion, "repository-version", "stable", "repository format `version`: 1, 2, stable (2) or latest (2)")
	cmd.Flags().BoolVar(&o.copyChunkerParams, "copy-chunker-params", false, "copy the chunker polynomial from --from-repo (so copies deduplicate)")
	cmd.Flags().StringVar(&o.fromRepo, "from-repo", "", "source `repository` for --copy-chunker-params")
	cmd.Flags().StringVar(&o.fromPasswordFile, "from-password-file", "", "password `file` of --from-repo")
	return cmd
}

func parseRepoVersion(s string) (uint, error) {
	switch s {
	case "1":
		return 1, nil
	case "2", "stable", "latest", "":
		return 2, nil
	}
	return 0, fmt.Errorf("invalid --repository-version %q (want 1, 2, stable or latest)", s)
}

func runInit(ctx context.Context, g *globalOptions, o initOptions) error {
	version, err := parseRepoVersion(o.repoVersion)
	if err != nil {
		return err
	}
	loc, err := g.repoLocation()
	if err != nil {
		return err
	}
	cfg, err := repo.NewConfig(version)
	if err != nil {
		return err
	}
	if o.copyChunkerParams {
		if o.fromRepo == "" {
			return fmt.Errorf("--copy-chunker-params needs --from-repo")
		}
		// the source password comes from the --from-* sources, never from
		// the new repository's (shared with copy)
		co := copyOptions{fromRepo: o.fromRepo, fromPasswordFile: o.fromPasswordFile}
		sr, err := co.openSource(ctx, g)
		if err != nil {
			return fmt.Errorf("open --from-repo: %w", err)
		}
		cfg.ChunkerPolynomial = sr.Config().ChunkerPolynomial
		sr.Close()
	}
	pw, err := g.readPassword("enter password for new repository: ", true)
	if err != nil {
		return err
	}
	params, err := repo.KDFParams()
	if err != nil {
		return err
	}
	be, err := g.openBackend(ctx, loc, true)
	if err != nil {
		return fmt.Errorf("create repository at %s: %w", displayLocation(loc), err)
	}
	opts, err := g.repoOptions()
	if err != nil {
		return err
	}
	r, err := repo.InitWithConfig(ctx, be, pw, cfg, params, opts)
	if err != nil {
		be.Close()
		return err
	}
	defer r.Close()
	if g.JSON {
		return g.printJSON(map[string]any{"message_type": "initialized", "id": r.Config().ID, "repository": displayLocation(loc)})
	}
	g.printf("created cairn repository %s at %s (format version %d)\n", r.Config().ID[:10], displayLocation(loc), r.Config().Version)
	g.printf("\nPlease note that knowledge of your password is required to access\nthe repository. Losing your password means that your data is\nirrecoverably lost.\n")
	return nil
}
