//go:build !linux

package servers

import "syscall"

// procAttr puts a server in its own process group. There is no parent-death
// signal outside Linux: a server outlives a test binary that dies without
// stopping it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
