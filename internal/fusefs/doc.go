// Package fusefs presents a repository's snapshots as a read-only FUSE
// file system: /ids/<id>, /snapshots/<time> (plus "latest"),
// /hosts/<host>/<time> and /tags/<tag>/<time>.
//
// It is built only where the FUSE library (github.com/hanwen/go-fuse/v2)
// compiles: Linux on 64-bit architectures, macOS and FreeBSD. On 32-bit
// Linux go-fuse's splice package does not compile (it assigns the int that
// syscall.Splice returns there to an int64), so the package is empty and
// `cairn mount` reports that FUSE is unsupported.
package fusefs
