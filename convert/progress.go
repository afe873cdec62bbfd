package convert

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal reports whether w is a terminal, where a download shows a progress bar (tests
// replace it).
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// meter shows a download's progress: a byte progress bar on a terminal, and elsewhere (logs,
// CI) a line each time another tenth of the file has arrived, or one line at the end when the
// size is not known. Its methods do nothing on a nil meter.
type meter struct {
	bar         *progressbar.ProgressBar
	out         io.Writer
	name        string
	total, got  int64
	tenth       int64
	lastPrinted int64
}

// newMeter returns the meter of a download of total bytes (-1: unknown) shown on out, or nil
// when out is nil.
func newMeter(out io.Writer, name string, total int64) *meter {
	if out == nil {
		return nil
	}
	m := &meter{out: out, name: name, total: total}
	if isTerminal(out) {
		m.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(out),
			progressbar.OptionSetDescription(name),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(20),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionFullWidth(),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return m
}

// Write counts b as downloaded.
func (m *meter) Write(b []byte) (int, error) {
	if m != nil {
		m.set(m.got + int64(len(b)))
	}
	return len(b), nil
}

// set records that n bytes have arrived.
func (m *meter) set(n int64) {
	if m == nil || n == m.got {
		return
	}
	m.got = n
	if m.bar != nil {
		m.bar.Set64(n)
		return
	}
	if m.total > 0 {
		if t := min(m.got*10/m.total, 10); t > m.tenth {
			m.tenth = t
			m.lastPrinted = m.got
			fmt.Fprintf(m.out, "%s: %d%% of %.1f MB\n", m.name, 10*t, float64(m.total)/1e6)
		}
	}
}

// finish ends the bar's line, or, when the download succeeded (ok) and no line said that all of
// it arrived, prints one that does.
func (m *meter) finish(ok bool) {
	switch {
	case m == nil:
	case m.bar != nil:
		if ok {
			m.bar.Finish()
		}
		fmt.Fprintln(m.out)
	case ok && m.got > 0 && m.lastPrinted != m.got:
		fmt.Fprintf(m.out, "%s: %.1f MB downloaded\n", m.name, float64(m.got)/1e6)
	}
}
