package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"
)

// A dry run (--dry-run N) answers what a researcher asks before committing a GPU week: the
// resolved settings, the backend, the steps per epoch, and the time per step measured over N
// steps of the real data pipeline, with the projected time of the whole run. It runs the
// recipe as a real run would, at --dry-run-batch, into a temporary folder: train.Run takes the
// N steps and returns (train.DryRunParam), before any checkpoint, evaluation or sample. The step
// time at the run's batch is projected linearly from the dry run's batch: right where the
// backend is already busy at the small batch (a CPU), an upper bound where it is not (a GPU
// fills up with the batch: dry-run there with a batch near the real one).
//
// Nothing needs the pre-trained weights: `--set init=random` and `--set teacher=random:<adm>`
// time the same as the real ones.
type dryRun struct {
	out      string // the run's --out, untouched
	settings string
	backend  string
	batch    int // the run's batch
	dataLen  int // training images (0: none read, e.g. a GAN teacher's synthesized data)
	dataName string
	tempDir  string
}

// startDryRun reduces the store to a dry run: the batch, the step count, a temporary folder.
func (e *experiment) startDryRun(b compute.Backend, store *model.Store) error {
	if *e.dryBatch < 1 {
		return usagef("--dry-run-batch: want >= 1, got %d", *e.dryBatch)
	}
	d := &dryRun{out: *e.out, settings: configs.Format(store, e.defaults), backend: b.Description(),
		batch: configs.Get[int](store, "batch")}
	d.dataLen, d.dataName = trainingImages(store, e.defaults, e.command)
	store.SetParam("/batch", min(d.batch, *e.dryBatch))
	store.SetParam(train.DryRunParam, *e.dryRun)
	for _, k := range []string{"samples", "overlays", "feature_images", "checkpoint_every"} {
		if _, ok := e.defaults[k]; ok {
			store.SetParam("/"+k, 0)
		}
	}
	dir, err := os.MkdirTemp("", "dreamteacher-dry-run-")
	if err != nil {
		return err
	}
	d.tempDir, *e.out = dir, dir
	e.dry = d
	return nil
}

// finish ends a command: a dry run's timing becomes the printed plan; other errors pass.
func (e *experiment) finish(err error) error {
	var dr *train.DryRunError
	if e.dry == nil {
		return err
	}
	defer os.RemoveAll(e.dry.tempDir)
	if !errors.As(err, &dr) {
		if err == nil {
			return fmt.Errorf("dry run: the command ended without reaching its training loop")
		}
		return err
	}
	d := e.dry
	small := min(d.batch, *e.dryBatch)
	fmt.Fprintf(stdout, "dry run of `dreamteacher %s` (--out %s: nothing written)\n\nsettings:\n  %s\n\n",
		e.command, d.out, strings.ReplaceAll(strings.TrimSpace(d.settings), "\n", "\n  "))
	fmt.Fprintf(stdout, "backend: %s\n", d.backend)
	if d.dataLen > 0 {
		perStep := d.batch * max(1, dr.ImagesPerStep/small) // GAN pre-training reads d_steps batches a step
		perEpoch := (d.dataLen + perStep - 1) / perStep
		fmt.Fprintf(stdout, "data:    %s, %d images; %d images a step: %d steps per epoch; the run's %d steps are %.1f epochs\n",
			d.dataName, d.dataLen, perStep, perEpoch, dr.TotalSteps, float64(dr.TotalSteps)/float64(perEpoch))
	} else {
		fmt.Fprintf(stdout, "data:    the run's %d steps of batch %d\n", dr.TotalSteps, d.batch)
	}
	step := dr.StepTime()
	fmt.Fprintf(stdout, "timing:  %d steps at batch %d: the first %s (it compiles the graph), then %s per step\n",
		len(dr.Steps), small, dr.Steps[0].Round(time.Millisecond), step.Round(time.Millisecond))
	if len(dr.Steps) == 1 {
		fmt.Fprintf(stdout, "         (one step: its time includes the compilation; --dry-run 2 or more measures a step alone)\n")
	}
	full := step.Seconds() * float64(d.batch) / float64(small)
	fmt.Fprintf(stdout, "plan:    %s per step at batch %d (x%d/%d: linear in the batch); %d steps: %s on this backend\n",
		human(full), d.batch, d.batch, small, dr.TotalSteps, human(full*float64(dr.TotalSteps)))
	return nil
}

// trainingImages counts the images the run trains on (0 when it reads none or they cannot be
// opened; the dry run itself then reports the error).
func trainingImages(store *model.Store, defaults map[string]any, command string) (int, string) {
	get := func(k string) string {
		if _, ok := defaults[k]; !ok {
			return ""
		}
		return configs.Get[string](store, k)
	}
	split := get("train_split")
	if split == "" {
		split = get("split")
	}
	if get("dataset") == "" || get("data") == "" || split == "" {
		return 0, ""
	}
	opts := datasets.Options{}
	if command == "finetune --task instseg" {
		opts.Task = "instance"
	}
	ds, err := datasets.Open(get("dataset"), get("data"), split, opts)
	if err != nil {
		return 0, ""
	}
	return ds.Len(), ds.Name()
}

// human writes a duration in seconds as days, hours, minutes or seconds.
func human(seconds float64) string {
	switch {
	case seconds >= 2*86400:
		return fmt.Sprintf("%.1f days", seconds/86400)
	case seconds >= 3600:
		return fmt.Sprintf("%.1f hours", seconds/3600)
	case seconds >= 60:
		return fmt.Sprintf("%.1f min", seconds/60)
	}
	return fmt.Sprintf("%.3g s", seconds)
}
