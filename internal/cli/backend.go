package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/local"
	"github.com/cairn-backup/cairn/internal/backend/rest"
	"github.com/cairn-backup/cairn/internal/repo"
)

// backendFactories maps a location scheme ("rest", "s3", …) to its opener.
// create is true for `init`.
var backendFactories = map[string]func(ctx context.Context, g *globalOptions, loc string, create bool) (backend.Backend, error){
	"local": openLocal,
	"rest":  openREST,
}

// backendDecorators wrap every opened backend (retry, limits), in order.
var backendDecorators []func(g *globalOptions, be backend.Backend, local bool) backend.Backend

func (g *globalOptions) openBackend(ctx context.Context, loc string, create bool) (backend.Backend, error) {
	scheme, rest, ok := strings.Cut(loc, ":")
	factory, known := backendFactories[scheme]
	if !ok || !known || len(scheme) == 1 { // "C:\..." is a local path, too
		factory, rest, scheme = openLocal, loc, "local"
	}
	be, err := factory(ctx, g, rest, create)
	if err != nil {
		return nil, err
	}
	for _, d := range backendDecorators {
		be = d(g, be, scheme == "local")
	}
	return be, nil
}

func openLocal(ctx context.Context, _ *globalOptions, dir string, create bool) (backend.Backend, error) {
	if create {
		return local.Create(ctx, dir)
	}
	be, err := local.Open(ctx, dir)
	if err != nil && backend.IsNotExist(err) {
		return nil, fmt.Errorf("%w at %s", repo.ErrNoRepository, dir)
	}
	return be, err
}

func openREST(ctx context.Context, g *globalOptions, rest_ string, create bool) (backend.Backend, error) {
	cfg, err := rest.ParseConfig("rest:" + rest_)
	if err != nil {
		return nil, err
	}
	if len(g.CACert) > 0 {
		cfg.CACert = g.CACert[0]
	}
	cfg.TLSClientCert = g.TLSClientCert
	if g.Connections > 0 {
		cfg.Connections = uint(g.Connections)
	}
	if create {
		return rest.Create(ctx, cfg)
	}
	return rest.Open(ctx, cfg)
}
