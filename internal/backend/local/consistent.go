package local

// ListConsistent reports whether the repository's file system lists a file
// as soon as it was renamed into place (see backend.ListConsistent). It is
// decided per call, so a repository directory that is replaced by a mount
// point is judged by what is mounted now. Only disk and memory file systems
// of this kernel qualify (localFS, per platform); network and FUSE file
// systems (NFS, CIFS, sshfs, …) cache directory contents on each client,
// and anything the platform cannot identify counts as not consistent,
// which only makes the lock protocol wait for listings to settle.
func (b *Backend) ListConsistent() bool { return localFS(b.dir) }
