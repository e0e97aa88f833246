//go:build !linux

package repo

// machineBootID is unknown ("") where there is no Linux boot_id: locks are
// then never judged by their PID (pidCheckable), only by their age.
func machineBootID() string { return "" }

// pidNamespace is unknown (0) without Linux PID namespaces: locks are then
// never judged by their PID (pidCheckable), only by their age.
func pidNamespace() uint64 { return 0 }
