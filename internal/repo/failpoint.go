package repo

import fp "github.com/cairn-backup/cairn/internal/failpoint"

func failpoint(name string) error { return fp.Inject(name) }
