package train

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Stepper runs one training step on a batch: a Trainer, or a composite such as a GAN's
// discriminator and generator steps. Result.Step must count the steps taken (the store's
// StepVar).
type Stepper interface {
	Step(batch ...*tensors.Tensor) (Result, error)
}

// Batches yields the training batches: the inputs of the LossFn, in order. Its position must be
// restorable for exact resumption (see LoopConfig.Position).
type Batches func() ([]*tensors.Tensor, error)

// LoopConfig configures Run.
type LoopConfig struct {
	Steps           int64  // train until this many steps have been taken
	Dir             string // output folder: checkpoints, metrics.jsonl, loss.png
	CheckpointEvery int64  // steps between checkpoints (0: only at the end)
	Keep            int    // checkpoints kept (0: 3)
	LogEvery        int64  // steps between metrics lines (0: 10)
	ImagesPerStep   int    // for the images/s column
	Title           string // of the loss plot
	// Meta returns metadata stored with each checkpoint.
	Meta func() map[string]string
	// Exclude lists scopes not saved in checkpoints (a frozen teacher with its own checkpoint).
	Exclude []string
	// Out receives the progress (a bar on a terminal, plain lines otherwise); nil: stderr.
	Out io.Writer
}

// TrainSecondsParam is the store setting that carries a run's training time (seconds, all its
// segments up to the checkpoint) from one checkpoint to the next.
const TrainSecondsParam = "/train/seconds"

// Summary of a finished run.
type Summary struct {
	Steps      int64
	Last       Result
	Checkpoint string
	Elapsed    time.Duration // training time of the whole run, earlier segments of a resumed run included
	Metrics    string
	Plot       string
}

// NonFiniteError reports a step whose loss, gradient or updated variables held a NaN or an
// Inf: the step was not applied and no checkpoint was written after it.
type NonFiniteError struct {
	Step           int64
	Terms          map[string]float64
	Variables      []string // updated variables that would have held non-finite values
	LastCheckpoint string
}

func (e *NonFiniteError) Error() string {
	last := e.LastCheckpoint
	if last == "" {
		last = "none was written yet"
	}
	what := fmt.Sprintf("the loss is not finite (%s)", formatTerms(e.Terms))
	if len(e.Variables) > 0 {
		names := e.Variables
		if len(names) > 5 {
			names = append(append([]string{}, names[:5]...), fmt.Sprintf("and %d more", len(e.Variables)-5))
		}
		what = fmt.Sprintf("the update would make %d variables non-finite (%s; loss terms %s)",
			len(e.Variables), strings.Join(names, ", "), formatTerms(e.Terms))
	}
	return fmt.Sprintf("step %d: %s; the step was not applied, training stopped, the last good checkpoint is %s",
		e.Step, what, last)
}

// Run trains until cfg.Steps steps have been taken, starting from the store's current step
// (restore a checkpoint into the store first to resume). It appends metrics to
// Dir/metrics.jsonl, writes checkpoints to Dir and the loss curves to Dir/loss.png.
func Run(tr Stepper, store *model.Store, next Batches, cfg LoopConfig) (Summary, error) {
	if cfg.Keep == 0 {
		cfg.Keep = 3
	}
	if cfg.LogEvery == 0 {
		cfg.LogEvery = 10
	}
	out := cfg.Out
	if out == nil {
		out = os.Stderr
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return Summary{}, err
	}
	sum := Summary{Metrics: filepath.Join(cfg.Dir, "metrics.jsonl"), Plot: filepath.Join(cfg.Dir, "loss.png")}
	start := CurrentStep(store)
	if last, ok, _ := Latest(cfg.Dir); ok {
		sum.Checkpoint = last.Path
	}
	meta := func() map[string]string {
		if cfg.Meta == nil {
			return nil
		}
		return cfg.Meta()
	}
	// The training time of a resumed run counts its earlier segments, up to the checkpoint it
	// resumed from.
	prior := 0.0
	if v, ok := store.GetParam(TrainSecondsParam); ok {
		prior, _ = v.(float64)
	}
	t0 := time.Now()
	elapsed := func() time.Duration { return time.Duration(prior*float64(time.Second)) + time.Since(t0) }
	var savedElapsed time.Duration // the training time the newest checkpoint records
	save := func(step int64) error {
		savedElapsed = elapsed()
		store.SetParam(TrainSecondsParam, savedElapsed.Seconds())
		p, err := Save(store, cfg.Dir, step, meta(), cfg.Keep, cfg.Exclude...)
		if err != nil {
			return err
		}
		sum.Checkpoint = p
		return nil
	}

	dryRun, _ := store.GetParam(DryRunParam)
	if n, ok := dryRun.(int); ok && n > 0 {
		return sum, dryRunSteps(tr, next, cfg, n)
	}
	bar := newProgress(out, start, cfg.Steps)
	lastLog, lastLogTime := start, t0
	var pending []Record
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := AppendMetrics(sum.Metrics, pending...)
		pending = pending[:0]
		return err
	}
	for step := start; step < cfg.Steps; {
		batch, err := next()
		if err != nil {
			flush()
			return sum, fmt.Errorf("step %d: reading the batch: %w", step+1, err)
		}
		res, err := tr.Step(batch...)
		if err != nil {
			flush()
			return sum, fmt.Errorf("step %d: %w", step+1, err)
		}
		if !res.Finite {
			rec := record(step+1, res, time.Since(t0), 0)
			pending = append(pending, rec)
			flush()
			bar.finish()
			return sum, &NonFiniteError{Step: step + 1, Terms: res.Terms, Variables: res.NonFinite, LastCheckpoint: sum.Checkpoint}
		}
		step = res.Step
		sum.Last = res
		bar.update(step, res)
		if step%cfg.LogEvery == 0 || step == cfg.Steps || step == start+1 {
			ips := 0.0
			if dt := time.Since(lastLogTime).Seconds(); dt > 0 && cfg.ImagesPerStep > 0 {
				ips = float64(step-lastLog) * float64(cfg.ImagesPerStep) / dt
			}
			pending = append(pending, record(step, res, time.Since(t0), ips))
			bar.log(step, res, ips)
			lastLog, lastLogTime = step, time.Now()
		}
		if cfg.CheckpointEvery > 0 && step%cfg.CheckpointEvery == 0 && step < cfg.Steps {
			if err := flush(); err != nil {
				return sum, err
			}
			if err := save(step); err != nil {
				return sum, err
			}
		}
	}
	bar.finish()
	if err := flush(); err != nil {
		return sum, err
	}
	sum.Steps = CurrentStep(store)
	sum.Elapsed = elapsed()
	if sum.Steps > start || sum.Checkpoint == "" {
		if err := save(sum.Steps); err != nil {
			return sum, err
		}
		// The run's training time is what its final checkpoint records, so that a run resumed
		// from it counts from there (its own write is not training).
		sum.Elapsed = savedElapsed
	}
	if records, err := ReadMetrics(sum.Metrics); err == nil && len(records) > 1 {
		if err := PlotLosses(records, lossKeys(records), cfg.Title, sum.Plot); err != nil {
			return sum, err
		}
	} else {
		sum.Plot = ""
	}
	return sum, nil
}

// lossKeys are the loss terms found in the metrics ("loss" first).
func lossKeys(records []Record) []string {
	set := map[string]bool{}
	for _, r := range records {
		for k := range r {
			if k == "loss" || strings.HasPrefix(k, "loss/") {
				set[k] = true
			}
		}
	}
	keys := []string{"loss"}
	var rest []string
	for k := range set {
		if k != "loss" {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(keys, rest...)
}

func record(step int64, r Result, elapsed time.Duration, imagesPerSec float64) Record {
	rec := Record{"step": float64(step), "time_s": elapsed.Seconds(), "lr": r.LR, "grad_norm": r.GradNorm}
	if imagesPerSec > 0 {
		rec["images_per_s"] = imagesPerSec
	}
	for k, v := range r.Terms {
		if k == "loss" {
			rec["loss"] = v
		} else {
			rec["loss/"+k] = v
		}
	}
	return rec
}

func formatTerms(terms map[string]float64) string {
	names := make([]string, 0, len(terms))
	for k := range terms {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s=%.4g", k, terms[k])
	}
	return strings.Join(parts, " ")
}

// progress shows a bar on a terminal and plain log lines elsewhere (CI logs stay readable).
type progress struct {
	bar *progressbar.ProgressBar
	out io.Writer
}

func newProgress(out io.Writer, start, total int64) *progress {
	p := &progress{out: out}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(out),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("steps"),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(),
		)
		p.bar.Set64(start)
	}
	return p
}

func (p *progress) update(step int64, r Result) {
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("loss %.4g", r.Loss()))
		p.bar.Set64(step)
	}
}

func (p *progress) log(step int64, r Result, ips float64) {
	if p.bar != nil {
		return
	}
	line := fmt.Sprintf("step %d: %s lr=%.3g grad_norm=%.3g", step, formatTerms(r.Terms), r.LR, r.GradNorm)
	if ips > 0 {
		line += fmt.Sprintf(" %.1f images/s", ips)
	}
	fmt.Fprintln(p.out, line)
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.out)
	}
}

// Seed makes a fresh run reproducible: it seeds the store's random-number generator, which
// draws everything random inside the compiled graphs (the variables' initialisation, diffusion
// noise and timesteps, dropout, RPN and RoI sampling), from the run's seed. A resumed run
// (step > 0) keeps the generator state restored from its checkpoint, so it continues exactly.
// The data order and augmentations are seeded separately, by the loader (loader.Config.Seed).
// Without it GoMLX seeds the generator from the operating system's entropy at the first step.
func Seed(store *model.Store, seed int64) error {
	if CurrentStep(store) > 0 {
		return nil
	}
	return store.SetRNGStateFromSeed(seed)
}

// DryRunParam is the store setting that turns Run into a dry run: with n > 0, Run takes n steps
// (the first compiles the graph), writes nothing (no checkpoint, metrics or plot: the store is
// left in an unsaved state) and returns a *DryRunError with their times and the run's length,
// which the recipe passes up before it evaluates or draws anything. `--dry-run` sets it.
const DryRunParam = "/run/dry_run"

// DryRunError reports a dry run's timing (see DryRunParam): it is how a dry run ends, not a
// failure.
type DryRunError struct {
	Steps         []time.Duration // the time of each step taken, the first including compilation
	TotalSteps    int64           // steps of the whole run (LoopConfig.Steps)
	ImagesPerStep int
}

func (e *DryRunError) Error() string {
	return fmt.Sprintf("dry run: %d steps timed, the run has %d", len(e.Steps), e.TotalSteps)
}

// StepTime is the time of one step after compilation: the mean of the steps after the first
// (the first alone when only one was taken).
func (e *DryRunError) StepTime() time.Duration {
	if len(e.Steps) < 2 {
		return e.Steps[0]
	}
	var sum time.Duration
	for _, d := range e.Steps[1:] {
		sum += d
	}
	return sum / time.Duration(len(e.Steps)-1)
}

func dryRunSteps(tr Stepper, next Batches, cfg LoopConfig, n int) error {
	res := &DryRunError{TotalSteps: cfg.Steps, ImagesPerStep: cfg.ImagesPerStep}
	for range n {
		t0 := time.Now()
		batch, err := next()
		if err != nil {
			return fmt.Errorf("dry run: reading the batch: %w", err)
		}
		if _, err := tr.Step(batch...); err != nil {
			return fmt.Errorf("dry run: %w", err)
		}
		res.Steps = append(res.Steps, time.Since(t0))
	}
	return res
}
