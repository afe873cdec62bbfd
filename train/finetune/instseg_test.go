package finetune

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/eval/coco"
	"github.com/dreamteacher-go/dreamteacher/models/heads/maskrcnn"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// tinyInstanceScenes generates 64x64 scenes: 8 train and 4 val images.
func tinyInstanceScenes(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "scenes")
	if err := scenes.Generate(dir, scenes.Config{Train: 8, Val: 4, Size: 64, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func instsegStore(t *testing.T, data string, set ...string) *model.Store {
	store, err := configs.NewStore(InstsegDefaults(), nil, append([]string{"dataset=scenes", "data=" + data,
		"min_size_train=56,64", "max_size_train=64", "min_size_test=64", "max_size_test=64", "canvas=64,64",
		"batch=2", "eval_batch=2", "steps=2", "warmup=0", "workers=1", "overlays=2", "vis_threshold=0"}, set...)...)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func TestInstsegFineTuneStepAndEval(t *testing.T) {
	data := tinyInstanceScenes(t)
	out := t.TempDir()
	var log strings.Builder
	res, err := Instseg(backend.Go(), instsegStore(t, data, "label_count=6"), out, &log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", log.String())
	if res.LabeledImages != 6 || len(res.Classes) != len(scenes.Classes) || res.Images != 4 {
		t.Errorf("labelled %d images, %d classes, %d val images; want 6, %d, 4", res.LabeledImages, len(res.Classes), res.Images, len(scenes.Classes))
	}
	for name, ap := range map[string]float64{"APbb": res.APbb, "APmk": res.APmk} {
		if math.IsNaN(ap) || ap < 0 || ap > 100 {
			t.Errorf("%s = %v", name, ap)
		}
	}
	for _, r := range []coco.Report{res.Box, res.Mask} {
		for i, v := range r.Summary.Stats.Values() {
			if v != -1 && (v < 0 || v > 1) {
				t.Errorf("%v stat %d = %v", r.IoUType, i, v)
			}
		}
		if n := strings.Count(r.Summary.Text(), "\n"); n != 12 || !strings.Contains(log.String(), r.Summary.Text()) {
			t.Errorf("%v summary of %d lines not in the log", r.IoUType, n)
		}
	}
	for _, p := range []string{res.Checkpoint, res.Overlays, res.Results, filepath.Join(out, "metrics.jsonl")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	records, err := train.ReadMetrics(filepath.Join(out, "metrics.jsonl"))
	if err != nil || len(records) == 0 {
		t.Fatalf("metrics: %v (%d records)", err, len(records))
	}
	for _, r := range records {
		if l := r["loss"]; math.IsNaN(l) || math.IsInf(l, 0) || l <= 0 {
			t.Errorf("loss %v", l)
		}
	}
	results, err := coco.LoadResultsFile(res.Results)
	if err != nil || len(results) != res.Detections {
		t.Errorf("results json: %v, %d results, want %d", err, len(results), res.Detections)
	}
	for _, r := range results {
		if r.ImageID < 9 || r.ImageID > 12 || r.Segmentation == nil || !r.Segmentation.IsRLE() {
			t.Errorf("result %+v: want val image ids 9..12 and an RLE mask", r)
			break
		}
	}

	// Initialising the backbone from that checkpoint (as from a distilled student) loads every
	// backbone variable; a wrong scope fails loudly, before any training.
	store := instsegStore(t, data, "init="+res.Checkpoint, "init_scope=/model/backbone", "steps=1", "overlays=0")
	log.Reset()
	if _, err := Instseg(backend.Go(), store, t.TempDir(), &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "initialised the backbone") {
		t.Errorf("no init line in the log:\n%s", log.String())
	}
	store = instsegStore(t, data, "init="+res.Checkpoint, "init_scope=/student/backbone", "steps=1")
	if _, err := Instseg(backend.Go(), store, t.TempDir(), io.Discard); err == nil || !strings.Contains(err.Error(), "/student/backbone") {
		t.Errorf("init from a scope the checkpoint lacks must fail naming it, got %v", err)
	}
	if train.CurrentStep(store) != 0 {
		t.Error("a failed init must not train")
	}
}

// TestInstsegScheduleResumes trains under a detectron2-style schedule (warm-up, one decay
// step), checks its learning rates, then resumes from the checkpoint after the
// first step in a fresh store: the next losses are the uninterrupted run's.
// With freeze_backbone only the heads train (as semseg): the backbone, BatchNorm's running
// statistics included, keeps its initial values.
func TestInstsegFrozenBackbone(t *testing.T) {
	data := tinyInstanceScenes(t)
	first, err := Instseg(backend.Go(), instsegStore(t, data, "steps=1", "overlays=0"), t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	store := instsegStore(t, data, "init="+first.Checkpoint, "init_scope=/model/backbone", "freeze_backbone=true", "overlays=0")
	res, err := Instseg(backend.Go(), store, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkFrozenBackbone(t, first.Checkpoint, res.Checkpoint)
}

func TestInstsegScheduleResumes(t *testing.T) {
	sched := maskrcnn.Schedule{MaxIter: 3, Steps: []int{2}, BaseLR: 0.01, ImsPerBatch: 2, WarmupIters: 1, WarmupFactor: 0.5,
		Gamma: 0.1, Momentum: 0.9, WeightDecay: 1e-4}
	maskrcnn.Schedules["test"] = sched
	t.Cleanup(func() { delete(maskrcnn.Schedules, "test") })
	data := tinyInstanceScenes(t)
	set := []string{"schedule=test", "log_every=1", "overlays=0", "checkpoint_every=1"}
	outA := t.TempDir()
	if _, err := Instseg(backend.Go(), instsegStore(t, data, set...), outA, io.Discard); err != nil {
		t.Fatal(err)
	}
	recA, err := train.ReadMetrics(filepath.Join(outA, "metrics.jsonl"))
	if err != nil || len(recA) != 3 {
		t.Fatalf("metrics: %v, %d records", err, len(recA))
	}
	for i, r := range recA {
		if want := sched.LR(i); math.Abs(r["lr"]-want) > 1e-9 {
			t.Errorf("step %d: lr %g, want %g", i+1, r["lr"], want)
		}
	}

	store := model.NewStore()
	if _, err := train.Restore(store, filepath.Join(outA, "ckpt-00000001.safetensors")); err != nil {
		t.Fatal(err)
	}
	defaults := InstsegDefaults()
	configs.SetDefaults(store, defaults)
	outB := t.TempDir()
	if _, err := Instseg(backend.Go(), store, outB, io.Discard); err != nil {
		t.Fatal(err)
	}
	recB, err := train.ReadMetrics(filepath.Join(outB, "metrics.jsonl"))
	if err != nil || len(recB) != 2 {
		t.Fatalf("resumed metrics: %v, %d records", err, len(recB))
	}
	for i, r := range recB {
		// The Go backend's reductions are not bit-reproducible from run to run (the same
		// training twice differs in the loss's last bits); a wrong data position or RNG state
		// changes it by percents.
		if a := recA[i+1]; r["step"] != a["step"] || math.Abs(r["loss"]-a["loss"]) > 1e-5*a["loss"] {
			t.Errorf("resumed step %v: loss %.9g, uninterrupted step %v: %.9g", r["step"], r["loss"], a["step"], a["loss"])
		}
	}
}

// TestInstsegPerfectDetections feeds the ground truth as detections (in input pixels, masks
// as M x M probabilities inside their box, as Detect gives them) through the evaluation: the
// rescaling to the original size, mask pasting and encoding, image and category ids must give
// AP = 1 for boxes and masks, against the ground truth built from the samples and against the
// dataset's own json read as pycocotools does.
func TestInstsegPerfectDetections(t *testing.T) {
	data := tinyInstanceScenes(t)
	store := instsegStore(t, data)
	ds, err := datasets.Open("scenes", data, "val", datasets.Options{Task: "instance"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := instsegConfig(store, len(ds.Classes()))
	if err != nil {
		t.Fatal(err)
	}
	// The 64x64 images are enlarged to 96x96 and padded to 128x112.
	setup := &instsegSetup{cfg: cfg, classes: ds.Classes(), categoryIDs: datasetCategoryIDs(ds), canvas: [2]int{128, 112},
		testSize: [2]int{96, 96}, evalBatch: 3, visThresh: 0.5}
	oracle := func(batch *loader.Batch, sizes *tensors.Tensor) ([]maskrcnn.ImageDetections, []bool, error) {
		hw := tensors.MustCopyFlatData[int32](sizes)
		var out []maskrcnn.ImageDetections
		for i, idx := range batch.Indices {
			s, err := ds.Get(idx)
			if err != nil {
				return nil, nil, err
			}
			if err := (resizeShortestEdge{Sizes: []int{96}, MaxSize: 96, Canvas: setup.canvas}).Apply(&s, nil); err != nil {
				return nil, nil, err
			}
			if s.Image.H != int(hw[2*i]) || s.Image.W != int(hw[2*i+1]) {
				t.Errorf("%s: input %dx%d, recorded size %v", s.Path, s.Image.H, s.Image.W, hw[2*i:2*i+2])
			}
			out = append(out, oracleDetections(s, 128))
		}
		return out, make([]bool, len(out)), nil
	}
	outDir := t.TempDir()
	res, err := evaluateDetector(oracle, setup, ds, 1, 2, outDir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Images != 4 || res.Detections == 0 {
		t.Fatalf("%d images, %d detections", res.Images, res.Detections)
	}
	if res.APbb != 100 || res.APmk != 100 {
		t.Errorf("APbb %v, APmk %v: want 100\n%s%s", res.APbb, res.APmk, res.Box.Format(), res.Mask.Format())
	}
	if _, err := os.Stat(res.Overlays); err != nil {
		t.Error(err)
	}

	// The same results against the annotation file itself.
	gt, err := coco.LoadDataset(filepath.Join(scenes.COCODir(data), "annotations", "instances_val2017.json"))
	if err != nil {
		t.Fatal(err)
	}
	results, err := coco.LoadResultsFile(res.Results)
	if err != nil {
		t.Fatal(err)
	}
	ev := coco.NewEvaluator(gt)
	ev.Process(results...)
	reports, err := ev.Evaluate()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		if r.Summary.Stats.AP != 1 {
			t.Errorf("against the json: %s", r.Format())
		}
	}
}

// oracleDetections turns the non-crowd instances of a sample into detections with score 1:
// each mask sampled on an m x m grid over its box (nearest, at cell centres).
func oracleDetections(s datasets.Sample, m int) maskrcnn.ImageDetections {
	d := maskrcnn.ImageDetections{MaskSize: m}
	for _, inst := range s.Instances {
		if inst.IsCrowd {
			continue
		}
		b := inst.Box
		probs := make([]float32, m*m)
		for r := range m {
			y := int(b[1] + (float32(r)+0.5)*(b[3]-b[1])/float32(m))
			for c := range m {
				x := int(b[0] + (float32(c)+0.5)*(b[2]-b[0])/float32(m))
				if y < s.Image.H && x < s.Image.W {
					probs[r*m+c] = float32(inst.Mask[y*s.Image.W+x])
				}
			}
		}
		d.Boxes = append(d.Boxes, b)
		d.Scores = append(d.Scores, 1)
		d.Classes = append(d.Classes, inst.Class)
		d.Masks = append(d.Masks, probs)
	}
	return d
}

// TestDetectronSchedules checks that detectron2's schedules, as multistep train.Schedules, give
// maskrcnn's learning rate at every iteration, for the reference batch and a scaled one.
func TestDetectronSchedules(t *testing.T) {
	for _, name := range []string{"1x", "3x"} {
		for _, batch := range []int{16, 2} {
			store := instsegStore(t, "unused", "schedule="+name, fmt.Sprintf("batch=%d", batch))
			sched, steps, _, err := instsegSchedule(store, batch)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := maskrcnn.Schedules[name].Scaled(batch)
			if steps != int64(d.MaxIter) {
				t.Errorf("%s batch %d: %d steps, want %d", name, batch, steps, d.MaxIter)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			its := []int{0, 1, d.WarmupIters - 1, d.WarmupIters, d.MaxIter - 1}
			for _, m := range d.Steps {
				its = append(its, m-1, m)
			}
			for range 200 {
				its = append(its, rng.IntN(d.MaxIter))
			}
			for _, it := range its {
				if got, want := sched.At(it), d.LR(it); math.Abs(got-want) > 1e-12*want {
					t.Errorf("%s batch %d iteration %d: lr %g, want %g", name, batch, it, got, want)
				}
			}
		}
	}
}

func TestShortestEdgeShape(t *testing.T) {
	for _, c := range []struct{ h, w, short, max, wantH, wantW int }{
		{480, 640, 800, 1333, 800, 1067},
		{427, 640, 800, 1333, 800, 1199},
		{1000, 300, 800, 1333, 1333, 400},
		{64, 64, 96, 96, 96, 96},
		{64, 32, 96, 96, 96, 48},
	} {
		if h, w := shortestEdgeShape(c.h, c.w, c.short, c.max); h != c.wantH || w != c.wantW {
			t.Errorf("%dx%d to %d (max %d): %dx%d, want %dx%d", c.h, c.w, c.short, c.max, h, w, c.wantH, c.wantW)
		}
	}
}
