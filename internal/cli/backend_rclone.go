package cli

import (
	"context"
	"strings"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/rclone"
)

func init() { backendFactories["rclone"] = openRclone }

// openRclone opens "rclone:REMOTE:PATH" locations by starting
// `rclone serve restic --stdio`. Options, as environment variables:
// CAIRN_RCLONE_PROGRAM (the rclone binary) and CAIRN_RCLONE_ARGS (extra
// arguments, separated by spaces, e.g. "--config /path/rclone.conf").
func openRclone(ctx context.Context, g *globalOptions, loc string, create bool) (backend.Backend, error) {
	cfg, err := rclone.ParseConfig("rclone:" + loc)
	if err != nil {
		return nil, err
	}
	if v := env("CAIRN_RCLONE_PROGRAM"); v != "" {
		cfg.Program = v
	}
	if v := env("CAIRN_RCLONE_ARGS"); v != "" {
		cfg.Args = strings.Fields(v)
	}
	if g.Connections > 0 {
		cfg.Connections = uint(g.Connections)
	}
	if create {
		return rclone.Create(ctx, cfg)
	}
	return rclone.Open(ctx, cfg)
}
