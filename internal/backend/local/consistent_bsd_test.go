//go:build darwin || freebsd

package local

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestLocalFSNames(t *testing.T) {
	for name, want := range map[string]bool{
		"apfs": true, "hfs": true, "ufs": true, "zfs": true, "tmpfs": true,
		"nfs": false, "smbfs": false, "macfuse": false, "osxfuse": false, "fusefs": false, "": false,
	} {
		if got := localFileSystems[name]; got != want {
			t.Errorf("%q: local = %v, want %v", name, got, want)
		}
	}
	// localFS judges the temp dir by the type name statfs reports.
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	name := unix.ByteSliceToString(st.Fstypename[:])
	if got, want := localFS(dir), localFileSystems[name]; got != want {
		t.Errorf("%s on %q: localFS = %v, want %v", dir, name, got, want)
	}
	if localFS(dir + "/missing") {
		t.Error("a path that cannot be statted counts as local")
	}
}
