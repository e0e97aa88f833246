package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/archiver"
	"github.com/cairn-backup/cairn/internal/bufpool"
	"github.com/cairn-backup/cairn/internal/core"
	"github.com/cairn-backup/cairn/internal/failpoint"
	"github.com/cairn-backup/cairn/internal/filter"
	"github.com/cairn-backup/cairn/internal/fsnode"
	"github.com/cairn-backup/cairn/internal/repo"
	"github.com/cairn-backup/cairn/internal/snapshot"
	"github.com/cairn-backup/cairn/internal/ui"
)

type backupOptions struct {
	host              string
	tags              []string
	timeStr           string
	parent            string
	force             bool
	oneFileSystem     bool
	withAtime         bool
	filesFrom         []string
	filesFromVerbatim []string
	filesFromRaw      []string
	selection         selectionOptions
	dryRun            bool
	stdin             bool
	stdinFilename     string
	stdinFromCommand  bool
	skipIfUnchanged   bool
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	var o backupOptions
	cmd := &cobra.Command{
		Use:   "backup [flags] PATH...",
		Short: "Create a new snapshot of files and directories",
		Long: `Back up the given paths into a new snapshot.

Unchanged files (same size, mtime, ctime and inode as in the parent
snapshot) are not read again. The parent is --parent, else the latest
snapshot of the same host and paths.

Exit status is 3 when some files could not be read: the snapshot was saved
without them.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.host, "host", "H", "", "`hostname` to record in the snapshot (default: this host)")
	f.StringArrayVar(&o.tags, "tag", nil, "add `tags` to the snapshot (comma separated, repeatable)")
	f.StringVar(&o.timeStr, "time", "", "`time` of the snapshot (format \"2006-01-02 15:04:05\"; default: now)")
	f.StringVar(&o.parent, "parent", "", "use snapshot `ID` as the parent")
	f.BoolVarP(&o.force, "force", "f", false, "read every file, even unchanged ones")
	f.BoolVarP(&o.oneFileSystem, "one-file-system", "x", false, "do not cross file system boundaries")
	f.BoolVar(&o.withAtime, "with-atime", false, "store access times (default: atime = mtime, as restic)")
	f.StringArrayVar(&o.filesFrom, "files-from", nil, "read the paths to back up from `file` (one per line, # comments, globs; - for stdin)")
	f.StringArrayVar(&o.filesFromVerbatim, "files-from-verbatim", nil, "read the paths to back up from `file`, one per line, verbatim")
	f.StringArrayVar(&o.filesFromRaw, "files-from-raw", nil, "read NUL-separated paths to back up from `file`")
	f.BoolVarP(&o.dryRun, "dry-run", "n", false, "read everything but store nothing; report what would be added")
	f.BoolVar(&o.stdin, "stdin", false, "back up the data read from standard input")
	f.StringVar(&o.stdinFilename, "stdin-filename", "stdin", "`name` of the file for --stdin / --stdin-from-command")
	f.BoolVar(&o.stdinFromCommand, "stdin-from-command", false, "run the arguments as a command and back up its output (no snapshot if it fails)")
	f.BoolVar(&o.skipIfUnchanged, "skip-if-unchanged", false, "do not save a snapshot when nothing changed since the parent")
	addSelectionFlags(f, &o.selection)
	return cmd
}

func parseSnapshotTime(s string) (time.Time, error) {
	if s == "" {
		return time.Now(), nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", time.RFC3339Nano, "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid --time %q (want \"2006-01-02 15:04:05\")", s)
}

// backupSummaryJSON is restic's backup summary message.
type backupSummaryJSON struct {
	MessageType         string  `json:"message_type"`
	FilesNew            uint    `json:"files_new"`
	FilesChanged        uint    `json:"files_changed"`
	FilesUnmodified     uint    `json:"files_unmodified"`
	DirsNew             uint    `json:"dirs_new"`
	DirsChanged         uint    `json:"dirs_changed"`
	DirsUnmodified      uint    `json:"dirs_unmodified"`
	DataBlobs           int     `json:"data_blobs"`
	TreeBlobs           int     `json:"tree_blobs"`
	DataAdded           uint64  `json:"data_added"`
	DataAddedPacked     uint64  `json:"data_added_packed"`
	TotalFilesProcessed uint    `json:"total_files_processed"`
	TotalBytesProcessed uint64  `json:"total_bytes_processed"`
	TotalDuration       float64 `json:"total_duration"`
	SnapshotID          string  `json:"snapshot_id"`
	DryRun              bool    `json:"dry_run,omitempty"`
}

type backupStatusJSON struct {
	MessageType    string   `json:"message_type"`
	SecondsElapsed uint64   `json:"seconds_elapsed"`
	PercentDone    float64  `json:"percent_done"`
	TotalFiles     uint64   `json:"total_files"`
	FilesDone      uint64   `json:"files_done"`
	TotalBytes     uint64   `json:"total_bytes"`
	BytesDone      uint64   `json:"bytes_done"`
	ErrorCount     uint64   `json:"error_count,omitempty"`
	CurrentFiles   []string `json:"current_files,omitempty"`
}

type errorJSON struct {
	MessageType string `json:"message_type"`
	Error       struct {
		Message string `json:"message"`
	} `json:"error"`
	During string `json:"during"`
	Item   string `json:"item"`
}

func runBackup(ctx context.Context, g *globalOptions, o backupOptions, args []string) error {
	if o.stdin || o.stdinFromCommand {
		return runBackupStdin(ctx, g, o, args)
	}
	targets := append([]string(nil), args...)
	for _, l := range []struct {
		files []string
		kind  filter.ListKind
	}{{o.filesFrom, filter.FilesFrom}, {o.filesFromVerbatim, filter.FilesFromVerbatim}, {o.filesFromRaw, filter.FilesFromRaw}} {
		for _, name := range l.files {
			paths, err := filter.ReadFileList(ctx, name, l.kind, g.stdin)
			if err != nil {
				return err
			}
			targets = append(targets, paths...)
		}
	}
	if len(targets) == 0 {
		return errors.New("nothing to back up: give at least one path")
	}
	snTime, err := parseSnapshotTime(o.timeStr)
	if err != nil {
		return err
	}
	sel, err := o.selection.build()
	if err != nil {
		return err
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, lctx, lock, err := g.lockRepository(ctx, r, false, "backup", false)
	if err != nil {
		return err
	}
	defer unlock()
	ctx = lctx
	if err := r.LoadIndex(ctx); err != nil {
		return fmt.Errorf("load index: %w", err)
	}
	defer backupMemory()()
	sn, err := snapshot.New(targets, nil, o.host, snTime)
	if err != nil {
		return err
	}
	for _, t := range snapshot.ParseTagList(o.tags) {
		sn.Tags = append(sn.Tags, t...)
	}
	sn.ProgramVersion = "cairn " + Version
	sn.Excludes = o.selection.excludePatterns()

	var parentTree *core.ID
	if o.parent != "" {
		p, err := r.FindSnapshot(ctx, o.parent, snapshot.Filter{})
		if err != nil {
			return fmt.Errorf("parent snapshot: %w", err)
		}
		sn.Parent, parentTree = p.ID(), p.Tree
	} else if !o.force {
		if p := findParent(ctx, r, sn); p != nil {
			sn.Parent, parentTree = p.ID(), p.Tree
		}
	}
	if sn.Parent != nil {
		g.verbosef(1, "using parent snapshot %v\n", sn.Parent.Str())
	}

	prog := &archiver.Progress{}
	start := time.Now()
	stopProgress := g.startBackupProgress(prog, start)
	dirHook, err := o.selection.dirHook()
	if err != nil {
		return err
	}
	cpus, restoreProcs := spareProc()
	defer restoreProcs()
	arch := archiver.New(r, archiver.Options{
		FileWorkers:   2 * cpus,
		BlobWorkers:   cpus,
		DryRun:        o.dryRun,
		DirHook:       dirHook,
		Select:        sel,
		Parent:        parentTree,
		Force:         o.force,
		OneFileSystem: o.oneFileSystem,
		NodeOptions:   fsnode.Options{WithAtime: o.withAtime},
		Progress:      prog,
		OnError: func(path string, err error) error {
			if g.JSON {
				e := errorJSON{MessageType: "error", During: "archival", Item: path}
				e.Error.Message = err.Error()
				_ = g.printJSON(e)
			} else {
				g.warnf("error: %v\n", err)
			}
			return nil
		},
	})
	res, err := arch.Run(ctx, targets)
	stopProgress()
	if a := bufpool.Arena(); a.Size > 0 {
		g.verbosef(2, "buffer arena: %d MiB, at most %d MiB in use, %d requests did not fit\n",
			a.Size>>20, a.Peak>>20, a.Misses)
	}
	if err != nil {
		return fmt.Errorf("backup failed, no snapshot saved: %w", err)
	}
	sn.Tree = &res.Tree
	sn.Summary = &res.Summary
	if o.dryRun {
		s := res.Summary
		if g.JSON {
			return g.printJSON(backupSummaryJSON{MessageType: "summary", FilesNew: s.FilesNew, FilesChanged: s.FilesChanged,
				FilesUnmodified: s.FilesUnmodified, DirsNew: s.DirsNew, DirsChanged: s.DirsChanged, DirsUnmodified: s.DirsUnmodified,
				DataBlobs: s.DataBlobs, TreeBlobs: s.TreeBlobs, DataAdded: s.DataAdded, TotalFilesProcessed: s.TotalFilesProcessed,
				TotalBytesProcessed: s.TotalBytesProcessed, TotalDuration: time.Since(start).Seconds(), DryRun: true})
		}
		g.printf("dry run: would add %s in %d new blobs (%d files new, %d changed); nothing was stored\n",
			ui.Bytes(s.DataAdded), s.DataBlobs+s.TreeBlobs, s.FilesNew, s.FilesChanged)
		return nil
	}
	if o.skipIfUnchanged && parentTree != nil && *parentTree == res.Tree {
		if g.JSON {
			return g.printJSON(map[string]any{"message_type": "summary", "snapshot_id": "", "skipped": true})
		}
		g.printf("nothing changed since snapshot %s: no new snapshot saved\n", sn.Parent.Str())
		return nil
	}
	return g.commitSnapshot(ctx, r, lock, sn, res, start)
}

// commitSnapshot checks the lock, saves the snapshot and reports.
func (g *globalOptions) commitSnapshot(ctx context.Context, r *repo.Repository, lock *repo.Lock, sn *snapshot.Snapshot, res *archiver.Result, start time.Time) error {
	// Commit step: the lock must still be ours (H02), then the snapshot,
	// written within the guard's bound (A-FREEZE).
	wctx, done, err := repo.GuardIfLocked(ctx, lock)
	if err != nil {
		return fmt.Errorf("backup not committed: %w", err)
	}
	if err := failpoint.Inject("backup.before-snapshot"); err != nil {
		return done(err)
	}
	id, err := r.SaveSnapshot(wctx, sn)
	if err = done(err); err != nil {
		if id.IsNull() {
			return err
		}
		return fmt.Errorf("snapshot %v was written, but %w; run `cairn check` before relying on it", id.Str(), err)
	}
	if err := failpoint.Inject("backup.after-snapshot"); err != nil {
		return err
	}
	s := res.Summary
	if g.JSON {
		_ = g.printJSON(backupSummaryJSON{
			MessageType: "summary", FilesNew: s.FilesNew, FilesChanged: s.FilesChanged, FilesUnmodified: s.FilesUnmodified,
			DirsNew: s.DirsNew, DirsChanged: s.DirsChanged, DirsUnmodified: s.DirsUnmodified,
			DataBlobs: s.DataBlobs, TreeBlobs: s.TreeBlobs, DataAdded: s.DataAdded, DataAddedPacked: s.DataAddedPacked,
			TotalFilesProcessed: s.TotalFilesProcessed, TotalBytesProcessed: s.TotalBytesProcessed,
			TotalDuration: time.Since(start).Seconds(), SnapshotID: id.String(),
		})
	} else {
		g.printf("\nFiles:       %5d new, %5d changed, %5d unmodified\n", s.FilesNew, s.FilesChanged, s.FilesUnmodified)
		g.printf("Dirs:        %5d new, %5d changed, %5d unmodified\n", s.DirsNew, s.DirsChanged, s.DirsUnmodified)
		g.printf("Added to the repository: %s (%s stored)\n", ui.Bytes(s.DataAdded), ui.Bytes(s.DataAddedPacked))
		g.printf("\nprocessed %d files, %s in %s\n", s.TotalFilesProcessed, ui.Bytes(s.TotalBytesProcessed), ui.Duration(time.Since(start)))
		g.printf("snapshot %s saved\n", id.Str())
	}
	if len(res.Errors) > 0 {
		return withCode(ExitPartial, fmt.Errorf("snapshot %s saved, but %d files or directories could not be read", id.Str(), len(res.Errors)))
	}
	return nil
}

// findParent returns the latest snapshot of the same host and paths.
func findParent(ctx context.Context, r *repo.Repository, sn *snapshot.Snapshot) *snapshot.Snapshot {
	all, _, err := r.LoadAllSnapshots(ctx)
	if err != nil {
		return nil
	}
	var best *snapshot.Snapshot
	for _, c := range all {
		if c.Hostname != sn.Hostname || !samePaths(c.Paths, sn.Paths) || c.Time.After(sn.Time) {
			continue
		}
		if best == nil || !c.Time.Before(best.Time) {
			best = c
		}
	}
	return best
}

func samePaths(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x := append([]string(nil), a...)
	y := append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

func (g *globalOptions) startBackupProgress(p *archiver.Progress, start time.Time) func() {
	if g.Quiet {
		return func() {}
	}
	if g.JSON {
		t := ui.StartTicker(time.Second, func(final bool) {
			if final {
				return
			}
			st := backupStatusJSON{MessageType: "status", SecondsElapsed: uint64(time.Since(start).Seconds()),
				TotalFiles: p.FilesTotal.Load(), FilesDone: p.FilesDone.Load(), TotalBytes: p.BytesTotal.Load(), BytesDone: p.BytesDone.Load(), ErrorCount: p.ErrorCount.Load()}
			if st.TotalBytes > 0 {
				st.PercentDone = float64(st.BytesDone) / float64(st.TotalBytes)
			}
			if cf := p.CurrentFile.Load(); cf != nil {
				st.CurrentFiles = []string{*cf}
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
		rate := uint64(float64(done) / el.Seconds())
		eta := ""
		if p.ScanDone.Load() {
			eta = ui.ETA(el, done, total)
		}
		sl.Set(fmt.Sprintf("[%s] %d/%d files %s/%s %s/s %s %s", ui.Duration(el), p.FilesDone.Load(), p.FilesTotal.Load(),
			ui.Bytes(done), ui.Bytes(total), ui.Bytes(rate), ui.Bar(done, total, 22), eta))
	})
	return t.Stop
}

// runBackupStdin backs up standard input (or a command's output) as one
// file.
func runBackupStdin(ctx context.Context, g *globalOptions, o backupOptions, args []string) error {
	if o.stdin && o.stdinFromCommand {
		return errors.New("--stdin and --stdin-from-command cannot be combined")
	}
	if o.stdin && len(args) > 0 {
		return errors.New("--stdin takes no paths")
	}
	if o.stdinFromCommand && len(args) == 0 {
		return errors.New("--stdin-from-command needs a command to run")
	}
	snTime, err := parseSnapshotTime(o.timeStr)
	if err != nil {
		return err
	}
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	unlock, lctx, lock, err := g.lockRepository(ctx, r, false, "backup", false)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.LoadIndex(lctx); err != nil {
		return err
	}
	// The stream's chunks are saved on the blob workers: without a limit
	// the heap grew to twice their buffers (peak RSS 110-133 MiB piping
	// text.txt, restic 87-96). With the soft limit alone, 82-89 MiB and
	// 60,000-150,000 page faults; with the buffer arena too, 62-73 MiB,
	// ~20,000 faults and 2.3 s instead of 2.5-2.8 (restic 4.3 s, 88 MiB).
	defer backupMemory()()
	var rd io.Reader = g.stdin
	var cmd *exec.Cmd
	var cmdOut io.ReadCloser
	if o.stdinFromCommand {
		cmd = exec.CommandContext(lctx, args[0], args[1:]...)
		cmd.Stderr = g.stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("--stdin-from-command: %w", err)
		}
		rd, cmdOut = out, out
	}
	start := time.Now()
	name := o.stdinFilename
	sn, err := snapshot.New(nil, nil, o.host, snTime)
	if err != nil {
		return err
	}
	sn.Paths = []string{path.Clean("/" + name)}
	for _, t := range snapshot.ParseTagList(o.tags) {
		sn.Tags = append(sn.Tags, t...)
	}
	sn.ProgramVersion = "cairn " + Version
	cpus, restoreProcs := spareProc()
	defer restoreProcs()
	res, err := archiver.New(r, archiver.Options{DryRun: o.dryRun, BlobWorkers: cpus}).RunStdin(lctx, rd, name, snTime)
	if cmd != nil {
		if err != nil {
			// The backup stopped before the end of the command's output:
			// close the pipe so that the command's next write fails
			// (EPIPE / SIGPIPE) instead of blocking Wait forever.
			cmdOut.Close()
		}
		if werr := cmd.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("command %q failed, no snapshot saved: %w", args[0], werr)
		}
	}
	if err != nil {
		return err
	}
	if o.dryRun {
		g.printf("dry run: would add %s; nothing was stored\n", ui.Bytes(res.Summary.DataAdded))
		return nil
	}
	sn.Tree = &res.Tree
	sn.Summary = &res.Summary
	return g.commitSnapshot(lctx, r, lock, sn, res, start)
}
