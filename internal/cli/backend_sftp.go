package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/sftp"
	"github.com/cairn-backup/cairn/internal/repo"
)

func init() { backendFactories["sftp"] = openSFTP }

// openSFTP opens "sftp:[user@]host:path" and "sftp://[user@]host[:port]/path"
// locations. Options, as environment variables: CAIRN_SFTP_KNOWN_HOSTS
// (known_hosts files, separated by the path list separator; default
// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts) and CAIRN_SFTP_KEY
// (private key files, likewise; tried before the ssh-agent and the
// default ~/.ssh/id_* keys).
func openSFTP(ctx context.Context, g *globalOptions, loc string, create bool) (backend.Backend, error) {
	cfg, err := sftp.ParseConfig("sftp:" + loc)
	if err != nil {
		return nil, err
	}
	if v := env("CAIRN_SFTP_KNOWN_HOSTS"); v != "" {
		cfg.KnownHostsFiles = filepath.SplitList(v)
	}
	if v := env("CAIRN_SFTP_KEY"); v != "" {
		cfg.KeyFiles = filepath.SplitList(v)
	}
	if g.Connections > 0 {
		cfg.Connections = uint(g.Connections)
	}
	if create {
		return sftp.Create(ctx, cfg)
	}
	be, err := sftp.Open(ctx, cfg)
	if err != nil && backend.IsNotExist(err) {
		return nil, fmt.Errorf("%w at sftp:%s: %w", repo.ErrNoRepository, loc, err)
	}
	return be, err
}
