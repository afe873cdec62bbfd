package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/train/distill"
	"github.com/dreamteacher-go/dreamteacher/train/finetune"
	"github.com/dreamteacher-go/dreamteacher/train/interpret"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
)

func init() {
	register("pretrain-diffusion", "train the ADM diffusion teacher on unlabeled images (checkpoints + sample grid)", runPretrainDiffusion)
	register("pretrain-gan", "train the BigGAN teacher: class-conditional on labelled images, or unconditional (checkpoints + sample grid)", runPretrainGAN)
	register("distill", "distil a frozen teacher's features into a backbone (the DreamTeacher pre-training)", runDistill)
	register("interpret", "train the interpreter (label distillation's few-label head) on a frozen teacher's features", runInterpret)
	register("finetune", "fine-tune a backbone on a dense task: --task semseg (UperNet) or instseg (Mask R-CNN)", runFinetune)
}

func runPretrainDiffusion(args []string) error {
	e := newExperiment("pretrain-diffusion", "out/teacher", pretrain.DiffusionDefaults())
	b, store, err := e.prepare(args)
	if err != nil {
		return err
	}
	res, err := pretrain.Diffusion(b, store, *e.out, os.Stderr)
	if err != nil {
		return e.finish(err)
	}
	reportSkipped(res.Skipped)
	fmt.Fprintf(stdout, "teacher: %d steps in %s, final loss %.4f\ncheckpoint: %s\nsamples:    %s\n",
		res.Steps, res.TrainTime.Round(time.Second), res.LastLoss, res.Checkpoint, res.Samples)
	return writeResult(*e.out, map[string]any{"task": "pretrain-diffusion", "steps": res.Steps, "loss": res.LastLoss,
		"train_seconds": res.TrainTime.Seconds(), "checkpoint": res.Checkpoint, "samples": res.Samples, "skipped": res.Skipped, "settings": settingsMap(store, e.defaults)})
}

func runPretrainGAN(args []string) error {
	e := newExperiment("pretrain-gan", "out/gan", pretrain.GANDefaults())
	b, store, err := e.prepare(args)
	if err != nil {
		return err
	}
	res, err := pretrain.GAN(b, store, *e.out, os.Stderr)
	if err != nil {
		return e.finish(err)
	}
	reportSkipped(res.Skipped)
	fmt.Fprintf(stdout, "GAN: %d generator steps in %s\ncheckpoint: %s\nsamples:    %s\n", res.Steps, res.TrainTime.Round(time.Second), res.Checkpoint, res.Samples)
	return writeResult(*e.out, map[string]any{"task": "pretrain-gan", "steps": res.Steps, "train_seconds": res.TrainTime.Seconds(),
		"checkpoint": res.Checkpoint, "samples": res.Samples, "skipped": res.Skipped, "settings": settingsMap(store, e.defaults)})
}

func runDistill(args []string) error {
	e := newExperiment("distill", "out/distill", distill.Defaults())
	b, store, err := e.prepare(args)
	if err != nil {
		return err
	}
	res, err := distill.Run(b, store, *e.out, os.Stderr)
	if err != nil {
		return e.finish(err)
	}
	reportSkipped(res.Skipped)
	fmt.Fprintf(stdout, "distilled: %d steps in %s, loss %.4f -> %.4f\ncheckpoint: %s (backbone under %s)\nfeatures:   %s\n",
		res.Steps, res.TrainTime.Round(time.Second), res.FirstLoss, res.LastLoss, res.Checkpoint, distill.BackboneScope, res.Features)
	return writeResult(*e.out, map[string]any{"task": "distill", "steps": res.Steps, "first_loss": res.FirstLoss, "loss": res.LastLoss,
		"train_seconds": res.TrainTime.Seconds(), "checkpoint": res.Checkpoint, "features": res.Features, "skipped": res.Skipped, "settings": settingsMap(store, e.defaults)})
}

func runInterpret(args []string) error {
	e := newExperiment("interpret", "out/interpreter", interpret.Defaults())
	b, store, err := e.prepare(args)
	if err != nil {
		return err
	}
	res, err := interpret.Run(b, store, *e.out, os.Stderr)
	if err != nil {
		return e.finish(err)
	}
	reportSkipped(res.Skipped)
	fmt.Fprint(stdout, res.Metrics.Format(res.Classes))
	fmt.Fprintf(stdout, "interpreter mIoU %.2f on the val split (%d labelled images, train %s)\ncheckpoint:  %s\npredictions: %s\n",
		res.Metrics.Metrics()["mIoU"], res.LabeledImages, res.TrainTime.Round(time.Second), res.Checkpoint, res.Overlays)
	return writeResult(*e.out, map[string]any{"task": "interpret", "mIoU": 100 * res.Metrics.MIoU, "labeled_images": res.LabeledImages,
		"train_seconds": res.TrainTime.Seconds(), "checkpoint": res.Checkpoint, "skipped": res.Skipped, "settings": settingsMap(store, e.defaults)})
}

func runFinetune(args []string) error {
	task, args, err := extractFlag(args, "task", "semseg")
	if err != nil {
		return err
	}
	switch task {
	case "semseg":
		e := newExperiment("finetune --task semseg", "out/finetune-semseg", finetune.SemsegDefaults())
		e.fs.String("task", "semseg", "semseg (UperNet) or instseg (Mask R-CNN)")
		b, store, err := e.prepare(args)
		if err != nil {
			return err
		}
		res, err := finetune.Semseg(b, store, *e.out, os.Stderr)
		if err != nil {
			return e.finish(err)
		}
		reportSkipped(res.Skipped)
		fmt.Fprint(stdout, res.Metrics.Format(res.Classes))
		fmt.Fprintf(stdout, "mIoU %.2f (%d labelled images, train %s, eval %s)\ncheckpoint:  %s\npredictions: %s\n",
			res.Metrics.Metrics()["mIoU"], res.LabeledImages, res.TrainTime.Round(time.Second), res.EvalTime.Round(time.Second), res.Checkpoint, res.Overlays)
		return writeResult(*e.out, semsegResult(res, settingsMap(store, e.defaults)))
	case "instseg":
		e := newExperiment("finetune --task instseg", "out/finetune-instseg", finetune.InstsegDefaults())
		e.fs.String("task", "instseg", "semseg (UperNet) or instseg (Mask R-CNN)")
		b, store, err := e.prepare(args)
		if err != nil {
			return err
		}
		res, err := finetune.Instseg(b, store, *e.out, os.Stderr)
		if err != nil {
			return e.finish(err)
		}
		reportSkipped(res.Skipped)
		fmt.Fprintf(stdout, "bbox:\n%s\nsegm:\n%s\n", res.Box.Summary.Text(), res.Mask.Summary.Text())
		fmt.Fprintf(stdout, "APbb %.2f  APmk %.2f (%d val images, %d labelled train images, train %s, eval %s)\ncheckpoint:  %s\npredictions: %s\nresults:     %s\n",
			res.APbb, res.APmk, res.Images, res.LabeledImages, res.TrainTime.Round(time.Second), res.EvalTime.Round(time.Second),
			res.Checkpoint, res.Overlays, res.Results)
		return writeResult(*e.out, instsegResult(res, settingsMap(store, e.defaults)))
	default:
		return usagef("--task: unknown %q (known: semseg, instseg)", task)
	}
}

// semsegResult is the result.json of a semantic segmentation run.
func semsegResult(res finetune.SemsegResult, settings map[string]any) map[string]any {
	return map[string]any{"task": "semseg", "mIoU": 100 * res.Metrics.MIoU, "mAcc": 100 * res.Metrics.MAcc,
		"aAcc": 100 * res.Metrics.AAcc, "per_class_iou": perClass(res.Classes, res.Metrics.IoU), "classes": res.Classes, "labeled_images": res.LabeledImages,
		"train_seconds": res.TrainTime.Seconds(), "eval_seconds": res.EvalTime.Seconds(), "checkpoint": res.Checkpoint,
		"predictions": res.Overlays, "skipped": res.Skipped, "settings": settings}
}

// instsegResult is the result.json of an instance segmentation run.
func instsegResult(res finetune.InstsegResult, settings map[string]any) map[string]any {
	return map[string]any{"task": "instseg", "APbb": nanToNil(res.APbb), "APmk": nanToNil(res.APmk),
		"labeled_images": res.LabeledImages, "train_seconds": res.TrainTime.Seconds(), "eval_seconds": res.EvalTime.Seconds(),
		"checkpoint": res.Checkpoint, "predictions": res.Overlays, "results": res.Results, "skipped": res.Skipped, "settings": settings}
}

// reportSkipped lists the training images left out under --skip-bad (result.json keeps them too).
func reportSkipped(skipped []string) {
	if len(skipped) == 0 {
		return
	}
	fmt.Fprintf(stdout, "skipped %d training images that failed to load (--skip-bad):\n", len(skipped))
	for _, s := range skipped {
		fmt.Fprintf(stdout, "  %s\n", s)
	}
}

func nanToNil(v float64) any {
	if v != v {
		return nil
	}
	return v
}

func perClass(names []string, values []float64) map[string]any {
	out := map[string]any{}
	for i, v := range values {
		name := fmt.Sprint(i)
		if i < len(names) {
			name = names[i]
		}
		if v != v { // NaN: class absent
			out[name] = nil
		} else {
			out[name] = 100 * v
		}
	}
	return out
}

// extractFlag removes --name value / --name=value from args (a flag that selects which other
// flags exist) and returns its value, or def.
func extractFlag(args []string, name, def string) (string, []string, error) {
	value := def
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--"+name || a == "-"+name:
			if i+1 >= len(args) {
				return "", nil, usagef("flag needs an argument: --%s", name)
			}
			value = args[i+1]
			i++
		case strings.HasPrefix(a, "--"+name+"="):
			value = strings.TrimPrefix(a, "--"+name+"=")
		case strings.HasPrefix(a, "-"+name+"="):
			value = strings.TrimPrefix(a, "-"+name+"=")
		default:
			rest = append(rest, a)
		}
	}
	return value, rest, nil
}
