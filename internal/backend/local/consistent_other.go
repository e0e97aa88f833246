//go:build !linux && !darwin && !freebsd

package local

// localFS cannot tell the file system type here, so no listing counts as
// consistent (the safe answer: the lock protocol then waits for listings
// to settle).
func localFS(string) bool { return false }
