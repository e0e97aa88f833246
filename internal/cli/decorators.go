package cli

import (
	"time"

	"github.com/cairn-backup/cairn/internal/backend"
	"github.com/cairn-backup/cairn/internal/backend/limiter"
	"github.com/cairn-backup/cairn/internal/backend/retry"
)

func init() {
	// The limiter sits below retry, so back-off sleeps hold no slot.
	backendDecorators = append(backendDecorators,
		func(g *globalOptions, be backend.Backend, local bool) backend.Backend {
			if g.LimitUpload <= 0 && g.LimitDownload <= 0 && g.Connections <= 0 {
				return be
			}
			return limiter.New(be, int64(g.LimitUpload)*1024, int64(g.LimitDownload)*1024, g.Connections)
		},
		func(g *globalOptions, be backend.Backend, local bool) backend.Backend {
			if local {
				return be // local errors are not transient
			}
			return retry.New(be, retry.Options{
				StallTimeout: g.StuckTimeout,
				OnRetry: func(op string, h backend.Handle, attempt int, err error, delay time.Duration) {
					if g.Verbose > 0 {
						g.warnf("%s %v failed (attempt %d, retrying in %v): %v\n", op, h, attempt, delay.Round(time.Millisecond), err)
					}
				},
			})
		},
	)
}
