package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Record is one line of metrics.jsonl.
type Record map[string]float64

// AppendMetrics appends one JSON object per record to path (created if needed).
func AppendMetrics(path string, records ...Record) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, r := range records {
		b, err := json.Marshal(r)
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", path, err)
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// ReadMetrics reads metrics.jsonl. Lines of a resumed run that repeat steps already logged
// replace the earlier ones, so curves stay single-valued.
func ReadMetrics(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	byStep := map[float64]Record{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		byStep[r["step"]] = r
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]Record, 0, len(byStep))
	for _, r := range byStep {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i]["step"] < out[j]["step"] })
	return out, nil
}

// PlotLosses draws the named series of the metrics (default: every key ending in "loss" and
// the other loss terms given) against the step, on a log scale, into a PNG.
func PlotLosses(records []Record, keys []string, title, pngPath string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "value (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	drawn := 0
	for i, key := range keys {
		var pts plotter.XYs
		for _, r := range records {
			if v, ok := r[key]; ok && v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
				pts = append(pts, plotter.XY{X: r["step"], Y: v})
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		if key == "loss" {
			line.Width = vg.Points(2)
			line.Color = color.Black
		}
		p.Add(line)
		p.Legend.Add(key, line)
		drawn++
	}
	if drawn == 0 {
		return fmt.Errorf("plot %s: no positive values for %v", pngPath, keys)
	}
	p.Legend.Top = true
	return p.Save(8*vg.Inch, 5*vg.Inch, pngPath)
}
