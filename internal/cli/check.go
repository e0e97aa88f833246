package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/internal/checker"
	"github.com/cairn-backup/cairn/internal/core"
)

func init() { extraCommands = append(extraCommands, newCheckCommand) }

type checkOptions struct {
	readData       bool
	readDataSubset string
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check [flags]",
		Short: "Check the repository for errors",
		Long: `Check the repository: every index file loads; every indexed pack exists with
the size its blobs imply; every snapshot loads and every tree reachable from
it decodes and refers only to indexed blobs. With --read-data every pack is
read in full and every blob is decrypted and verified; --read-data-subset
reads only part of them: "n/t" (group n of t, by the first byte of the pack
ID), "x%" (a random x% of the packs) or a size such as "500M" (random packs
up to that size).

check takes a shared (non-exclusive) lock unless --no-lock is given, so it
runs alongside backups, forget and the mark phase of prune (while it runs,
the sweep phase of prune is skipped and restic's prune is refused: they need
an exclusive lock). It checks the
snapshots that exist when it starts; what concurrent commands leave behind
is not an error: packs a running (or interrupted) backup uploaded but has
not indexed yet, or that prune marked for deletion, are reported as
additional files, index files a prune replaces are listed again, and
snapshots a forget removes are skipped. check never uses a cache. It exits
with status 1 if the repository contains errors; hints (orphaned, duplicate
or mixed packs) do not count as errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.readData, "read-data", false, "read all data blobs")
	f.StringVar(&o.readDataSubset, "read-data-subset", "", "read a `subset` of the data packs: n/t, x% or a size")
	return cmd
}

// checkProblemJSON is one problem in --json output.
type checkProblemJSON struct {
	MessageType string `json:"message_type"` // "error" or "hint"
	Kind        string `json:"kind"`
	Index       string `json:"index,omitempty"`
	Pack        string `json:"pack,omitempty"`
	Snapshot    string `json:"snapshot,omitempty"`
	Tree        string `json:"tree,omitempty"`
	Blob        string `json:"blob,omitempty"`
	Path        string `json:"path,omitempty"`
	Message     string `json:"message"`
}

// checkSummaryJSON ends --json output.
type checkSummaryJSON struct {
	MessageType        string   `json:"message_type"` // "summary"
	NumErrors          int      `json:"num_errors"`
	NumHints           int      `json:"num_hints"`
	Snapshots          int      `json:"snapshots"`
	IndexFiles         int      `json:"index_files"`
	Packs              int      `json:"packs"`
	OrphanedPacks      int      `json:"orphaned_packs"`
	Trees              int      `json:"trees"`
	PacksRead          int      `json:"packs_read"`
	BytesRead          int64    `json:"bytes_read"`
	BrokenPacks        []string `json:"broken_packs"`
	SuggestRepairIndex bool     `json:"suggest_repair_index"`
	SuggestPrune       bool     `json:"suggest_prune"`
}

func jsonID(id core.ID) string {
	if id.IsNull() {
		return ""
	}
	return id.String()
}

var errRepoContainsErrors = errors.New("repository contains errors")

// testHookCheckListed, if set (by tests), runs once check holds its lock and
// has listed the snapshots, before it loads the index.
var testHookCheckListed func()

func runCheck(ctx context.Context, g *globalOptions, o checkOptions) error {
	var sub *checker.Subset
	switch {
	case o.readData && o.readDataSubset != "":
		return errors.New("check: --read-data and --read-data-subset cannot be used together")
	case o.readData:
		sub = &checker.Subset{Kind: checker.SubsetAll}
	case o.readDataSubset != "":
		s, err := checker.ParseSubset(o.readDataSubset)
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		sub = &s
	}

	g.NoCache = true // check never trusts the cache (H35)
	r, err := g.openRepository(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	if !g.NoLock {
		g.printf("create shared lock for repository\n")
	}
	// A shared lock is enough (docs/concurrency.md, section 9): it keeps
	// out everything that deletes packs or rewrites the index without
	// keeping every pack listed (prune sweeps, restic's prune), and the
	// checker accepts the states that concurrent backups, forgets and
	// prune marks leave behind.
	unlock, lctx, _, err := g.lockRepository(ctx, r, false, "check", true)
	if err != nil {
		return err
	}
	defer unlock()
	ctx = lctx

	var (
		outMu sync.Mutex // guards the fields below and serialises the output of findings
		// suggestRepairIndex and suggestPrune say which advice to print.
		suggestRepairIndex, suggestPrune bool
		// holding diverts ReadPacks's findings to held: the read phase
		// starts before the structure check, but its findings are printed
		// after the structure check's, as if it ran afterwards.
		holding bool
		held    []checker.Problem
	)
	emit := func(p checker.Problem) {
		switch p.Kind {
		case checker.KindDuplicatePack, checker.KindIncompletePack, checker.KindIndexDamaged:
			suggestRepairIndex = true
		case checker.KindOrphanedPack, checker.KindMixedPack:
			suggestPrune = true
		}
		if g.JSON {
			_ = g.printJSON(checkProblemJSON{
				MessageType: string(p.Severity), Kind: string(p.Kind),
				Index: jsonID(p.Index), Pack: jsonID(p.Pack), Snapshot: jsonID(p.Snapshot),
				Tree: jsonID(p.Tree), Blob: jsonID(p.Blob), Path: p.Path, Message: p.Message,
			})
			return
		}
		if p.IsError() {
			g.warnf("error: %s\n", p.Message)
		} else {
			g.printf("%s\n", p.Message)
		}
	}
	report := func(p checker.Problem) {
		outMu.Lock()
		defer outMu.Unlock()
		if holding && (p.Kind == checker.KindPackDamaged || p.Kind == checker.KindPackReadTransient) {
			held = append(held, p)
			return
		}
		emit(p)
	}
	// libzstd's decoding is a long cgo call: a spare P (see spareProc)
	cpus, restoreProcs := spareProc()
	defer restoreProcs()
	c := checker.New(r, checker.Options{Report: report, ReadParallel: max(cpus, r.Connections())})
	finish := func() error {
		outMu.Lock()
		defer outMu.Unlock()
		return g.finishCheck(c, suggestRepairIndex, suggestPrune)
	}

	if _, err := c.ListSnapshots(ctx); err != nil {
		return err
	}
	if testHookCheckListed != nil {
		testHookCheckListed()
	}
	g.printf("load indexes\n")
	if err := c.LoadIndex(ctx); err != nil {
		if !errors.Is(err, checker.ErrIndexDamaged) {
			return err
		}
		g.printf("%v\n", checker.ErrIndexDamaged)
		return finish()
	}
	g.printf("check all packs\n")
	if err := c.CheckPacks(ctx); err != nil {
		return err
	}

	// The read phase (if any) runs alongside the structure check: the two
	// share no state but the index, and together they keep every core and
	// the backend busy where one alone leaves them idle part of the time.
	var ids core.IDs
	var readDone chan error
	rctx, cancelRead := context.WithCancel(ctx)
	defer cancelRead()
	if sub != nil {
		ids = c.SelectPacks(*sub, nil)
	}
	defer limitCheckMemory(c.WorkingMemory(ids))()
	if sub != nil {
		outMu.Lock()
		holding = true
		outMu.Unlock()
		readDone = make(chan error, 1)
		go func() { readDone <- c.ReadPacks(rctx, ids) }()
	}
	g.printf("check snapshots, trees and blobs\n")
	if err := c.CheckStructure(ctx); err != nil {
		if readDone != nil {
			cancelRead()
			<-readDone
		}
		return err
	}
	if sub != nil {
		switch sub.Kind {
		case checker.SubsetAll:
			g.printf("read all data\n")
		default:
			g.printf("read %s of data packs (%d packs)\n", sub, len(ids))
		}
		outMu.Lock()
		holding = false
		for _, p := range held {
			emit(p)
		}
		held = nil
		outMu.Unlock()
		stop := g.startCountProgress("packs", uint64(len(ids)), func() (uint64, uint64) {
			st := c.Stats()
			return uint64(st.PacksRead), uint64(st.BytesRead)
		})
		err := <-readDone
		stop()
		if err != nil {
			return err
		}
	}
	return finish()
}

// limitCheckMemory sets a soft memory limit for the rest of a check, once
// the index is loaded: the live heap (mostly the index) twice, the working
// memory of the phases to come (read buffers, trees being decoded), and
// some headroom. Without it the heap grows to twice its working set, read
// buffers included, before a collection runs. GOMEMLIMIT, if the user set
// it, wins. The returned function restores the previous limit.
func limitCheckMemory(working int64) (restore func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	prev := debug.SetMemoryLimit(int64(ms.HeapAlloc)*2 + working + checkHeadroom)
	return func() { debug.SetMemoryLimit(prev) }
}

// checkHeadroom is memory beyond the index and the working memory that a
// check may use before the collector works harder.
const checkHeadroom = 16 << 20

// finishCheck prints the summary, advice and verdict.
func (g *globalOptions) finishCheck(c *checker.Checker, suggestRepairIndex, suggestPrune bool) error {
	st := c.Stats()
	broken := make([]string, 0, len(st.DamagedPack))
	for _, id := range st.DamagedPack {
		broken = append(broken, id.String())
	}
	if g.JSON {
		if err := g.printJSON(checkSummaryJSON{
			MessageType: "summary", NumErrors: st.Errors, NumHints: st.Hints,
			Snapshots: st.Snapshots, IndexFiles: st.IndexFiles, Packs: st.Packs, OrphanedPacks: st.OrphanedPacks, Trees: st.Trees,
			PacksRead: st.PacksRead, BytesRead: st.BytesRead, BrokenPacks: broken,
			SuggestRepairIndex: suggestRepairIndex, SuggestPrune: suggestPrune,
		}); err != nil {
			return err
		}
	} else {
		if suggestRepairIndex {
			g.printf("run `cairn repair index` to rebuild the index files\n")
		}
		if st.OrphanedPacks > 0 {
			g.printf("%d additional files were found in the repo, which likely contain duplicate data\n"+
				"or the uploads of a backup that is still running or was interrupted.\n"+
				"This is non-critical, you can run `cairn prune` to correct this.\n", st.OrphanedPacks)
		} else if suggestPrune && st.Errors == 0 {
			g.printf("run `cairn prune` to remove unneeded data\n")
		}
		if len(broken) > 0 {
			g.printf("\nThe repository contains damaged pack files. They must be removed to repair the\n" +
				"repository, and the snapshots that refer to their blobs must be repaired:\n\n")
			g.printf("cairn repair packs %s\ncairn repair snapshots --forget\n\n", strings.Join(broken, " "))
			g.printf("Damaged pack files can come from storage or hardware faults or from bugs.\n" +
				"Back up the repository before repairing it, and find the cause first.\n\n")
		}
	}
	if st.Errors > 0 {
		return errRepoContainsErrors
	}
	g.printf("no errors were found\n")
	return nil
}
