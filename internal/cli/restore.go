package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/restorer"
	"github.com/cairn-backup/cairn/internal/ui"
)

type restoreOptions struct {
	target    string
	include   []string
	exclude   []string
	iinclude  []string
	iexclude  []string
	overwrite string
	delete    bool
	verify    bool
	dryRun    bool
	direct    string
	filter    snapshotFilterOptions
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore [flags] SNAPSHOT[:PATH]",
		Short: "Restore a snapshot (or a directory inside it) to a target directory",
		Long: `Restore SNAPSHOT (an ID, a unique ID prefix, or "latest") into --target.
SNAPSHOT:PATH restores only the directory PATH of the snapshot.

Files whose data cannot be read (a damaged or missing pack) are named, every
other file is restored, and the exit status is 1.

--direct-io=on writes files of 1 MiB and more with direct I/O (O_DIRECT) on
ext4, XFS and btrfs: the restored data does not pass through the page cache,
so a large restore does not evict what the machine has cached, and the data
is on the device when restore exits. Each write waits for the device, so it
is not faster everywhere; the default, auto, uses it on VMs with free page
reporting (a virtio balloon that hands freed memory back to the host), where
filling the page cache is slow. --direct-io=off never uses it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestore(cmd.Context(), g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.target, "target", "t", "", "directory to restore into (required)")
	f.StringArrayVarP(&o.include, "include", "i", nil, "restore only items matching `pattern` (repeatable)")
	f.StringArrayVarP(&o.exclude, "exclude", "e", nil, "do not restore items matching `pattern` (repeatable)")
	f.StringArrayVar(&o.iinclude, "iinclude", nil, "like --include, case-insensitive")
	f.StringArrayVar(&o.iexclude, "iexclude", nil, "like --exclude, case-insensitive")
	f.StringVar(&o.overwrite, "overwrite", "always", "existing files: always, if-changed, if-newer or never")
	f.BoolVar(&o.delete, "delete", false, "delete files in the target that are not in the snapshot")
	f.BoolVar(&o.verify, "verify", false, "read restored files again and check them against the snapshot")
	f.BoolVar(&o.dryRun, "dry-run", false, "only show what would be restored")
	f.StringVar(&o.direct, "direct-io", "auto", "write large files with O_DIRECT, around the page cache (ext4, XFS, btrfs): auto, on or off")
	f.Lookup("direct-io").NoOptDefVal = "on"
	addSnapshotFilterFlags(cmd, &o.filter)
	return cmd
}

type restoreSummaryJSON struct {
	MessageType    string  `json:"message_type"`
	SecondsElapsed float64 `json:"seconds_elapsed"`
	TotalFiles     uint64  `json:"total_files"`
	FilesRestored  uint64  `json:"files_restored"`
	FilesSkipped   uint64  `json:"files_skipped"`
	TotalBytes     uint64  `json:"total_bytes"`
	BytesRestored  uint64  `json:"bytes_restored"`
	Errors         int     `json:"errors"`
	FilesVerified  uint64  `json:"files_verified,omitempty"`
}

func runRestore(ctx context.Context, g *globalOptions, o restoreOptions, arg string) error {
	if o.target == "" {
		return errors.New("please give a target directory with --target")
	}
	ow, err := restorer.ParseOverwrite(o.overwrite)
	if err != nil {
		return err
	}
	direct, err := restorer.ParseDirectMode(o.direct)
	if err != nil {
		return fmt.Errorf("--direct-io: %w", err)
	}
	sel, err := buildRestoreSelect(o)
	if err != nil {
		return err
	}
	snapArg, sub, _ := strings.Cut(arg, ":")
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, ctx, _, err := g.lockRepository(ctx, r, false, "restore", true)
	if err != nil {
		return err
	}
	defer unlock()
	sn, err := r.FindSnapshot(ctx, snapArg, o.filter.filter())
	if err != nil {
		return err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return fmt.Errorf("load index: %w", err)
	}
	tuneMemory()
	root := *sn.Tree
	if sub != "" {
		root, err = restorer.FindSubtree(ctx, r, root, sub)
		if err != nil {
			return err
		}
	}
	g.printf("restoring %v to %s\n", sn, o.target)
	prog := &restorer.Progress{}
	start := time.Now()
	stop := g.startRestoreProgress(prog, start)
	// the restorer's workers wait in direct writes (its worker count does
	// not follow GOMAXPROCS): see spareProc
	_, restoreProcs := spareProc()
	defer restoreProcs()
	res, err := restorer.Restore(ctx, r, root, restorer.Options{
		Target: o.target, Select: sel, Overwrite: ow, Delete: o.delete, Verify: o.verify,
		DryRun: o.dryRun, Progress: prog, IgnoreOwnership: os.Geteuid() != 0, Direct: direct,
	})
	stop()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, e := range res.Errors {
		if g.JSON {
			ej := errorJSON{MessageType: "error", During: "restore"}
			ej.Error.Message = e.Error()
			_ = g.printJSON(ej)
		} else {
			g.warnf("error: %v\n", e)
		}
	}
	if g.JSON {
		_ = g.printJSON(restoreSummaryJSON{MessageType: "summary", SecondsElapsed: time.Since(start).Seconds(),
			TotalFiles: prog.FilesTotal.Load(), FilesRestored: prog.FilesDone.Load(), FilesSkipped: res.FilesSkipped,
			TotalBytes: prog.BytesTotal.Load(), BytesRestored: prog.BytesDone.Load(), Errors: len(res.Errors), FilesVerified: res.Verified})
	} else {
		g.printf("restored %d files, %s in %s\n", prog.FilesDone.Load(), ui.Bytes(prog.BytesDone.Load()), ui.Duration(time.Since(start)))
		if o.verify {
			g.printf("verified %d files\n", res.Verified)
		}
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d files or directories could not be restored (see above)", len(res.Errors))
	}
	return nil
}

type restoreStatusJSON struct {
	MessageType    string  `json:"message_type"`
	SecondsElapsed uint64  `json:"seconds_elapsed"`
	PercentDone    float64 `json:"percent_done"`
	TotalFiles     uint64  `json:"total_files"`
	FilesRestored  uint64  `json:"files_restored"`
	TotalBytes     uint64  `json:"total_bytes"`
	BytesRestored  uint64  `json:"bytes_restored"`
}

func (g *globalOptions) startRestoreProgress(p *restorer.Progress, start time.Time) func() {
	if g.Quiet {
		return func() {}
	}
	if g.JSON {
		t := ui.StartTicker(time.Second, func(final bool) {
			if final {
				return
			}
			st := restoreStatusJSON{MessageType: "status", SecondsElapsed: uint64(time.Since(start).Seconds()),
				TotalFiles: p.FilesTotal.Load(), FilesRestored: p.FilesDone.Load(), TotalBytes: p.BytesTotal.Load(), BytesRestored: p.BytesDone.Load()}
			if st.TotalBytes > 0 {
				st.PercentDone = float64(st.BytesRestored) / float64(st.TotalBytes)
			}
			_ = g.printJSON(st)
		})
		return t.Stop
	}
	if !ui.IsTerminal(g.stdout) {
		return func() {}
	}
	sl := ui.NewStatusLine(g.stdout)
	t := ui.StartTicker(200*time.Millisecond, func(final bool) {
		if final {
			sl.Done()
			return
		}
		el := time.Since(start)
		done, total := p.BytesDone.Load(), p.BytesTotal.Load()
		sl.Set(fmt.Sprintf("[%s] %d/%d files %s/%s %s %s", ui.Duration(el), p.FilesDone.Load(), p.FilesTotal.Load(),
			ui.Bytes(done), ui.Bytes(total), ui.Bar(done, total, 22), ui.ETA(el, done, total)))
	})
	return t.Stop
}
