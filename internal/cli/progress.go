package cli

import (
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/internal/ui"
)

type countStatusJSON struct {
	MessageType    string  `json:"message_type"`
	SecondsElapsed uint64  `json:"seconds_elapsed"`
	PercentDone    float64 `json:"percent_done"`
	Unit           string  `json:"unit"`
	Done           uint64  `json:"done"`
	Total          uint64  `json:"total"`
	BytesDone      uint64  `json:"bytes_done,omitempty"`
}

// startCountProgress shows progress of a counted job (packs read,
// packs repacked, ...): a bar on a terminal, status lines with --json,
// nothing otherwise. progress returns items done and bytes done.
func (g *globalOptions) startCountProgress(unit string, total uint64, progress func() (uint64, uint64)) func() {
	if g.Quiet || total == 0 {
		return func() {}
	}
	start := time.Now()
	if g.JSON {
		t := ui.StartTicker(time.Second, func(final bool) {
			if final {
				return
			}
			done, b := progress()
			_ = g.printJSON(countStatusJSON{MessageType: "status", SecondsElapsed: uint64(time.Since(start).Seconds()),
				PercentDone: float64(done) / float64(total), Unit: unit, Done: done, Total: total, BytesDone: b})
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
		done, b := progress()
		el := time.Since(start)
		rate := ""
		if b > 0 && el > 0 {
			rate = ui.Bytes(uint64(float64(b)/el.Seconds())) + "/s"
		}
		sl.Set(fmt.Sprintf("[%s] %d/%d %s %s %s %s", ui.Duration(el), done, total, unit, ui.Bar(done, total, 22), rate, ui.ETA(el, done, total)))
	})
	return t.Stop
}
