package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// watchBrokenStdout turns a broken standard output (`cairn ls | head`) into
// an orderly stop, so locks are released, while a SIGPIPE from a network
// connection (a client that hung up on `cairn serve`) changes nothing: the
// failed write is an ordinary error there.
func watchBrokenStdout(ctx context.Context, cancel context.CancelFunc) {
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	go func() {
		defer signal.Stop(sigpipe)
		for {
			select {
			case <-sigpipe:
				if stdoutBroken() {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
}

// stdoutBroken reports whether file descriptor 1 has been closed by its
// reader.
func stdoutBroken() bool {
	fds := []unix.PollFd{{Fd: 1, Events: unix.POLLOUT}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return false
	}
	return fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0
}
