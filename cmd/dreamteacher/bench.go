package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/bench"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/imagefolder"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
)

func init() {
	register("bench", "time a training workload here and in PyTorch, side by side", runBench)
}

func runBench(args []string) error {
	fs, backendFlag := flagSet("bench")
	workload := fs.String("workload", "resnet18-cifar", "workload: "+strings.Join(bench.Names(), ", ")+", or loader (JPEG decoding + augmentation)")
	data := fs.String("data", "", "loader: a folder of images (default: generated 320x320 JPEG scenes)")
	sizesFlag := fs.String("sizes", "", "comma-separated image sizes, WIDTH or WIDTHxHEIGHT (default: the workload's: resnet18-cifar 32,64; adm 64x48; distill 128x96)")
	batch := fs.Int("batch", 0, "batch size (default: the workload's: resnet18-cifar 8, adm and distill 16; loader 8)")
	warmup := fs.Int("warmup", 2, "untimed steps first (the first one compiles)")
	steps := fs.Int("steps", 5, "timed steps (the median is reported)")
	torch := fs.Bool("torch", true, "also run the PyTorch peer (scripts/bench_torch.py, Debian's python3-torch), in its faster memory layout")
	threads := fs.Int("threads", 2, "PyTorch threads")
	verify := fs.Bool("verify", false, "first compare the loss and gradients on this backend with the Go backend (same weights and inputs)")
	peak := fs.Float64("peak-tflops", 0, "the device's peak TFLOP/s, to print the model FLOPs utilisation (MFU)")
	jsonOut := fs.String("json", "", "also write the rows (ours and PyTorch's) to this JSON file")
	baseline := fs.String("baseline", "", "a --json file of an earlier run: fail if a row's peak RSS grew by more than 10%")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *workload == "loader" {
		if *batch == 0 {
			*batch = 8
		}
		return benchLoader(*data, *batch)
	}
	w, ok := bench.Workloads[*workload]
	if !ok {
		return usagef("--workload: unknown %q (known: %s)", *workload, strings.Join(bench.Names(), ", "))
	}
	sizes := w.Sizes
	if *sizesFlag != "" {
		sizes = nil
		for _, f := range strings.Split(*sizesFlag, ",") {
			size, err := bench.ParseSize(f)
			if err != nil {
				return usagef("--sizes: %v", err)
			}
			sizes = append(sizes, size)
		}
	}
	if *batch == 0 {
		*batch = w.Batch
	}
	if *batch <= 0 || *steps <= 0 || *warmup < 0 {
		return usagef("--batch and --steps must be > 0 and --warmup >= 0")
	}
	var base []bench.Result
	if *baseline != "" {
		raw, err := os.ReadFile(*baseline)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &base); err != nil {
			return fmt.Errorf("--baseline %s: %w", *baseline, err)
		}
	}
	b, choice, err := newBackend(*backendFlag)
	if err != nil {
		return err
	}
	if *verify {
		v, err := bench.Verify(backend.Go(), b, *workload, sizes[0], *batch)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "verify %s at %s px, batch %d: loss %s %.6g vs go %.6g (rel. diff %.2e); gradients of %d variables: max relative error %.2e (%s)\n",
			v.Workload, sizes[0], *batch, v.TestName, v.LossGot, v.LossRef, math.Abs(v.LossGot-v.LossRef)/math.Abs(v.LossRef),
			v.NumGradsCompared, v.MaxGradRelErr, v.WorstVariable)
	}
	host, _ := os.Hostname()
	fmt.Fprintf(stdout, "machine: %s, %s; backend %s (%s)\n", host, cpuModel(), choice.Config, b.Description())
	fmt.Fprintf(stdout, "workload %s: %s\n", *workload, w.About)
	var ours []bench.Result
	for _, size := range sizes {
		r, err := bench.Run(b, *workload, size, *batch, *warmup, *steps)
		if err != nil {
			return err
		}
		ours = append(ours, r)
	}
	var peers []bench.Result
	var torchErr error
	if *torch {
		peers, torchErr = bench.RunTorch("scripts/bench_torch.py", *workload, sizes, *batch, *warmup, *steps, *threads)
		for i := range peers {
			for _, o := range ours {
				if o.Size() == peers[i].Size() {
					peers[i].GFLOPPerStep = o.GFLOPPerStep
				}
			}
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tsize\tbatch\timplementation\tstep (s)\timages/s\tGFLOP/step\tGFLOP/s\tpeak RSS (MiB)\tratio\t")
	for _, o := range ours {
		row(tw, o, "")
		for _, p := range peers {
			if p.Size() == o.Size() {
				row(tw, p, fmt.Sprintf("%.2fx", o.MedianStep/p.MedianStep))
			}
		}
	}
	tw.Flush()
	if *peak > 0 {
		for _, o := range ours {
			fmt.Fprintf(stdout, "MFU at %s px: %.1f%% of %.0f TFLOP/s\n", o.Size(), 100*o.GFLOPPerS()/(*peak*1e3), *peak)
		}
	}
	if len(peers) > 0 {
		fmt.Fprintln(stdout, "ratio = our step time / PyTorch's step time (lower is better; 1.0 is parity)")
	}
	for _, o := range ours {
		for _, p := range peers {
			if p.Size() == o.Size() {
				printPeerCheck(o, p)
			}
		}
	}
	if torchErr != nil {
		fmt.Fprintf(stdout, "PyTorch peer not run: %v\n", torchErr)
	}
	all := append(append([]bench.Result{}, ours...), peers...)
	if *jsonOut != "" {
		raw, err := json.MarshalIndent(all, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(raw, '\n'), 0o644); err != nil {
			return err
		}
	}
	if *baseline != "" {
		return compareRSS(all, base, *baseline)
	}
	return nil
}

// printPeerCheck prints the parameter counts and forward GFLOP of our step and of its PyTorch
// peer, and the layouts PyTorch tried.
func printPeerCheck(o, p bench.Result) {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(o.Params)) {
		mark := ""
		if p.Params[name] != o.Params[name] {
			mark = " MISMATCH"
		}
		parts = append(parts, fmt.Sprintf("%s %s (PyTorch %s)%s", name, thousands(o.Params[name]), thousands(p.Params[name]), mark))
	}
	mark := ""
	if math.Abs(o.FwdGFLOP-p.FwdGFLOP) > 0.01*o.FwdGFLOP {
		mark = " MISMATCH"
	}
	fmt.Fprintf(stdout, "at %s: parameters %s; forward %.2f GFLOP (PyTorch %.2f)%s\n", o.Size(), strings.Join(parts, ", "), o.FwdGFLOP, p.FwdGFLOP, mark)
	if len(p.Layouts) > 0 {
		var ls []string
		for _, l := range slices.Sorted(maps.Keys(p.Layouts)) {
			ls = append(ls, fmt.Sprintf("%s %.3f s", l, p.Layouts[l]))
		}
		fmt.Fprintf(stdout, "at %s: PyTorch step by layout: %s (the faster is in the table)\n", o.Size(), strings.Join(ls, ", "))
	}
}

// compareRSS prints each row's peak RSS against the baseline's row of the same implementation,
// workload, size and batch, and fails if one grew by more than 10%.
func compareRSS(rows, base []bench.Result, path string) error {
	kind := func(r bench.Result) string { return strings.Fields(r.Impl + " ?")[0] }
	var worse []string
	for _, r := range rows {
		for _, b := range base {
			if kind(b) != kind(r) || b.Workload != r.Workload || b.Size() != r.Size() || b.Batch != r.Batch || b.PeakRSSMiB == 0 {
				continue
			}
			change := r.PeakRSSMiB/b.PeakRSSMiB - 1
			fmt.Fprintf(stdout, "peak RSS, %s %s at %s: %.0f MiB, baseline %.0f MiB (%+.1f%%)\n", kind(r), r.Workload, r.Size(), r.PeakRSSMiB, b.PeakRSSMiB, 100*change)
			if change > 0.10 {
				worse = append(worse, fmt.Sprintf("%s %s at %s (%+.1f%%)", kind(r), r.Workload, r.Size(), 100*change))
			}
		}
	}
	if len(worse) > 0 {
		return fmt.Errorf("peak RSS grew by more than 10%% over %s: %s", path, strings.Join(worse, ", "))
	}
	return nil
}

// thousands prints n with comma separators: 3,913,862.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func row(tw *tabwriter.Writer, r bench.Result, ratio string) {
	impl := r.Impl
	if r.Threads > 0 {
		impl += fmt.Sprintf(" (%d threads)", r.Threads)
	}
	rss := "-"
	if r.PeakRSSMiB > 0 {
		rss = fmt.Sprintf("%.0f", r.PeakRSSMiB)
	}
	fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.3f\t%.1f\t%.1f\t%.1f\t%s\t%s\t\n", r.Workload, r.Size(), r.Batch, impl,
		r.MedianStep, r.ImagesPerS, r.GFLOPPerStep, r.GFLOPPerS(), rss, ratio)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	n := 0
	model := ""
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "processor") {
			n++
		}
		if model == "" && strings.HasPrefix(line, "model name") {
			model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
		}
	}
	return fmt.Sprintf("%d x %s", n, model)
}

// benchLoader measures the data pipeline: JPEG decoding + ImageNet augmentation to 256x256,
// with 1 and 2 workers.
func benchLoader(data string, batch int) error {
	if data == "" {
		dir, err := os.MkdirTemp("", "dreamteacher-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := scenes.Generate(dir, scenes.Config{Train: 256, Val: 0, Size: 320, Seed: 1}); err != nil {
			return err
		}
		data = filepath.Join(scenes.COCODir(dir), "train2017")
	} else if err := requireDir("data", data); err != nil {
		return err
	}
	ds, err := imagefolder.Open(data, ".", datasets.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loader: %d images of %s, RandomResizedCrop 256 + flip, batch %d, %s\n", ds.Len(), data, batch, cpuModel())
	for _, workers := range []int{1, 2} {
		t, err := loader.MeasureThroughput(ds, loader.Config{BatchSize: batch, Transform: transforms.ImageNetTrain(256), Shuffle: true, Workers: workers}, ds.Len())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  %d worker(s): %.1f images/s (%.1f per worker)\n", workers, t.PerSecond, t.PerWorker)
	}
	return nil
}
