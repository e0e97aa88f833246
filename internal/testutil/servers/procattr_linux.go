//go:build linux

package servers

import "syscall"

// procAttr puts a server in its own process group and has the kernel kill
// it when the test binary dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
