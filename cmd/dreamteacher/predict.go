package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/imagefolder"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/eval/coco"
	"github.com/dreamteacher-go/dreamteacher/eval/semseg"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/finetune"
	"github.com/dreamteacher-go/dreamteacher/viz"
	"github.com/gomlx/compute"
)

func init() {
	register("predict", "run a fine-tuned model on images: a label PNG per image (semseg) or COCO results json (instseg), optional overlays", runPredict)
}

// The commands whose checkpoints predict takes, as checkpoints record them (commandParam).
const (
	semsegCommand  = "finetune --task semseg"
	instsegCommand = "finetune --task instseg"
)

// runPredict is `predict`: the model of a fine-tuning run, rebuilt from its checkpoint's
// settings, on a folder of images, a list file or a split of a dataset, preprocessed and resized
// exactly as the run's own evaluation (finetune shares that code), so that the masks it writes
// score with `eval --predictions` as the run's result.json.
func runPredict(args []string) error {
	fs, backendFlag := flagSet("predict")
	ckpt := fs.String("checkpoint", "", "a run folder of finetune --task semseg or instseg (its newest checkpoint), or one of its checkpoint files")
	images := fs.String("images", "", "the images: a folder (searched recursively for .jpg, .jpeg, .png) or a list file, one image per line "+
		"(its first field; entries found as CamVid's lists are, e.g. $CAMVID/test.txt)")
	split := fs.String("split", "", "instead of --images: this split of the run's dataset (e.g. val)")
	dataset := fs.String("dataset", "", "with --split: a registered dataset (default: the run's): "+strings.Join(datasets.Names(), ", "))
	data := fs.String("data", "", "with --split: the dataset's root folder (default: the run's)")
	out := fs.String("out", "", "output folder: semseg writes <image base name>.png per image (class indices, 8-bit grey, the image's size: "+
		"what eval --predictions reads); instseg writes coco_instances_results.json and coco_images.json (the images' COCO entries and the categories)")
	overlays := fs.Bool("overlays", false, "also draw each image with its prediction into <out>/overlays/<image base name>.png")
	skipBad := fs.Bool("skip-bad", false, "leave out images that fail to load, listing them, instead of stopping at the first")
	workers := fs.Int("workers", 2, "images decoded in parallel")
	if err := parse(fs, args); err != nil {
		return err
	}
	path, err := checkpointPath("checkpoint", *ckpt)
	if err != nil {
		return err
	}
	command, settings, err := predictCommand(path)
	if err != nil {
		return err
	}
	switch {
	case *out == "":
		return usagef("--out is required")
	case (*images == "") == (*split == ""):
		return usagef("give the images: --images (a folder or a list file) or --split (of the run's dataset)")
	case *images != "" && (*dataset != "" || *data != ""):
		return usagef("--dataset and --data go with --split")
	case *workers < 1:
		return usagef("--workers must be >= 1")
	}
	ds, err := predictImages(command, settings, *images, *split, *dataset, *data)
	if err != nil {
		return err
	}
	b, _, err := newBackend(*backendFlag)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var skipped []loader.Skip
	if command == semsegCommand {
		skipped, err = predictSemseg(b, path, ds, *out, *overlays, *workers, *skipBad)
	} else {
		skipped, err = predictInstseg(b, path, ds, *out, *overlays, *workers, *skipBad)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(stdout, "skipped %d images that failed to load (--skip-bad):\n", len(skipped))
		for _, s := range skipped {
			fmt.Fprintf(stdout, "  %s: %v\n", s.Path, s.Err)
		}
	}
	return err
}

// predictCommand returns the recorded command and the settings of the checkpoint at path, after
// checking that a fine-tuning run wrote it.
func predictCommand(path string) (string, map[string]any, error) {
	settings, err := train.ReadSettings(path)
	if err != nil {
		return "", nil, err
	}
	command, _ := settings[strings.TrimPrefix(commandParam, "/")].(string)
	if command == "" {
		// Checkpoints from before the command was recorded: the settings tell which run it was.
		for c, defaults := range map[string]map[string]any{semsegCommand: finetune.SemsegDefaults(), instsegCommand: finetune.InstsegDefaults()} {
			if hasKeys(settings, defaults) {
				command = c
			}
		}
	}
	if command != semsegCommand && command != instsegCommand {
		what := fmt.Sprintf("recorded command %q", command)
		if command == "" {
			what = "no recorded command, and not the settings of a fine-tuning run"
		}
		return "", nil, usagef("--checkpoint: %s is not a fine-tuning checkpoint (%s): predict takes a run of `%s` or `%s`",
			path, what, semsegCommand, instsegCommand)
	}
	return command, settings, nil
}

// hasKeys reports whether settings has every key of defaults.
func hasKeys(settings, defaults map[string]any) bool {
	for k := range defaults {
		if _, ok := settings[k]; !ok {
			return false
		}
	}
	return true
}

// predictImages opens what predict runs on: a folder or a list file of images, or a split of
// the run's dataset (or of another, with --dataset and --data) read as the run read it.
func predictImages(command string, settings map[string]any, images, split, dataset, data string) (datasets.Dataset, error) {
	var ds datasets.Dataset
	if images != "" {
		st, err := os.Stat(images)
		switch {
		case err != nil:
			return nil, usagef("--images: %s does not exist", images)
		case st.IsDir():
			ds, err = imagefolder.Open(images, "", datasets.Options{})
		default:
			ds, err = imagefolder.FromList(images)
		}
		if err != nil {
			return nil, err
		}
	} else {
		if dataset == "" {
			dataset, _ = settings["dataset"].(string)
		}
		if data == "" {
			data, _ = settings["data"].(string)
		}
		opts := datasets.Options{Task: "semantic"}
		if command == instsegCommand {
			opts.Task = "instance"
		}
		opts.KeepZeroLabel, _ = settings["keep_zero_label"].(bool)
		var err error
		if ds, err = datasets.Open(dataset, data, split, opts); err != nil {
			return nil, fmt.Errorf("--split %s of dataset %s in %s (--dataset, --data to read another): %w", split, dataset, data, err)
		}
	}
	// Outputs are named after the images' base names: two images must not share one.
	if pather, ok := ds.(datasets.Pather); ok {
		byName := map[string]string{}
		for i := range ds.Len() {
			p := pather.Path(i)
			name := datasets.Stem(p)
			if other, dup := byName[name]; dup && other != p {
				return nil, fmt.Errorf("images %s and %s would both be written as %s.png: predict them separately", other, p, name)
			}
			byName[name] = p
		}
	}
	return ds, nil
}

// predictSemseg writes the label PNG of every image of ds (and its overlay).
func predictSemseg(b compute.Backend, path string, ds datasets.Dataset, out string, overlays bool, workers int, skipBad bool) ([]loader.Skip, error) {
	m, err := finetune.LoadSemseg(b, path)
	if err != nil {
		return nil, err
	}
	if err := checkClasses(path, m.NumClasses, m.Classes, ds); err != nil {
		return nil, err
	}
	palette := viz.Palette(m.NumClasses)
	n := 0
	skipped, err := m.Predict(ds, workers, skipBad, func(p finetune.SemsegPrediction) error {
		name := datasets.Stem(p.Path) + ".png"
		if err := semseg.WriteMask(filepath.Join(out, name), p.Classes, p.Image.W, p.Image.H); err != nil {
			return err
		}
		if overlays {
			img := viz.Overlay(p.Image.ToRGBA(), p.Classes, p.Image.W, p.Image.H, palette, 0.6)
			if err := viz.SavePNG(filepath.Join(out, "overlays", name), img); err != nil {
				return err
			}
		}
		n++
		return nil
	})
	if err != nil {
		return skipped, err
	}
	size := "at their native size"
	if len(m.EvalSize) == 2 {
		size = fmt.Sprintf("fitted into %dx%d (height x width), mapped back to their size", m.EvalSize[0], m.EvalSize[1])
	}
	fmt.Fprintf(stdout, "%d label maps of %s (%d classes, %s) -> %s\nmodel: %s\n", n, ds.Name(), m.NumClasses, size, out, path)
	return skipped, nil
}

// predictInstseg writes the detections of every image of ds as COCO results (and overlays).
func predictInstseg(b compute.Backend, path string, ds datasets.Dataset, out string, overlays bool, workers int, skipBad bool) ([]loader.Skip, error) {
	m, err := finetune.LoadInstseg(b, path)
	if err != nil {
		return nil, err
	}
	if err := checkClasses(path, m.NumClasses, m.Classes, ds); err != nil {
		return nil, err
	}
	results := []coco.Result{}
	images := &coco.Dataset{Annotations: []coco.Annotation{}}
	for k, id := range m.CategoryIDs {
		name := fmt.Sprintf("class %d", k)
		if m.Classes != nil {
			name = m.Classes[k]
		}
		images.Categories = append(images.Categories, coco.Category{ID: id, Name: name})
	}
	skipped, err := m.Predict(ds, workers, skipBad, func(p finetune.InstsegPrediction) error {
		results = append(results, p.Results...)
		images.Images = append(images.Images, p.Image)
		if overlays {
			return viz.SavePNG(filepath.Join(out, "overlays", datasets.Stem(p.Path)+".png"), p.Draw())
		}
		return nil
	})
	if err != nil {
		return skipped, err
	}
	for name, v := range map[string]any{"coco_instances_results.json": results, "coco_images.json": images} {
		data, err := json.Marshal(v)
		if err != nil {
			return skipped, err
		}
		if err := datasets.WriteFile(filepath.Join(out, name), data); err != nil {
			return skipped, err
		}
	}
	fmt.Fprintf(stdout, "%d detections on %d images of %s -> %s (coco_instances_results.json, coco_images.json)\nmodel: %s\n",
		len(results), len(images.Images), ds.Name(), out, path)
	return skipped, nil
}

// checkClasses refuses a dataset with classes that the model was not trained for: another
// number of them, or (when the run recorded them) other names.
func checkClasses(path string, n int, names []string, ds datasets.Dataset) error {
	classes := ds.Classes()
	if len(classes) == 0 {
		return nil // images without labels
	}
	if len(classes) != n {
		return fmt.Errorf("%s was trained for %d classes %v; %s has %d: %v", path, n, names, ds.Name(), len(classes), classes)
	}
	if names != nil && strings.Join(names, "\x00") != strings.Join(classes, "\x00") {
		return fmt.Errorf("%s was trained for the classes %v; %s has %v", path, names, ds.Name(), classes)
	}
	return nil
}
