package mem

// ListConsistent reports true: the map is listed under the same lock that
// Save and Remove take (see backend.ListConsistent).
func (b *Backend) ListConsistent() bool { return true }
