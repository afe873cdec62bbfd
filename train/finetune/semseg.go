// Package finetune fine-tunes a backbone — distilled by DreamTeacher, randomly initialised, or
// converted from supervised weights — on the downstream dense tasks: semantic segmentation
// with UperNet (this file) and instance segmentation with Mask R-CNN, including the
// label-efficient protocol (a deterministic subset of the labelled images).
package finetune

import (
	"fmt"
	"image"
	"image/color"
	"io"
	"path/filepath"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	"github.com/dreamteacher-go/dreamteacher/eval/semseg"
	"github.com/dreamteacher-go/dreamteacher/losses/seg"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/heads/upernet"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/viz"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// SemsegDefaults are the settings of semantic segmentation fine-tuning; configs/*.conf set them
// per experiment (ADE20K 160k, BDD100K, CamVid, the demo).
func SemsegDefaults() map[string]any {
	return map[string]any{
		"dataset":     "camvid", // registered dataset name
		"data":        "",       // its root folder
		"train_split": "train",
		"val_split":   "val",
		// keep_zero_label keeps label 0 as a class where a dataset ignores it by default
		// (ADE20K layout: the generated scenes' background).
		"keep_zero_label": false,
		"backbone":        "resnet18",
		"small_stem":      false,
		// init is "random" or a checkpoint whose init_scope holds the backbone (a distilled
		// student: /student/backbone; a converted supervised model: /model/backbone).
		"init":       "random",
		"init_scope": "/student/backbone",
		// freeze_backbone trains the head only, on the backbone's features as they are (BatchNorm
		// with its running statistics): a probe of what pre-training put into the features.
		"freeze_backbone": false,
		// backbone_lr_mult scales the backbone's learning rate (and so its weight decay) against
		// the new head's, as mmseg's lr_mult: below 1 keeps more of a pre-trained backbone.
		"backbone_lr_mult": 1.0,
		"crop":             []int{128, 128},   // training crop (height, width)
		"scale":            []int{512, 128},   // rescale base (long, short edge), scaled by ratio
		"ratio":            []float64{0.5, 2}, // random rescale range
		"eval_size":        []int{},           // (height, width) images are fitted into, and padded; empty: native size
		"batch":            8,
		"steps":            1000,
		"optimizer":        "adamw",
		"lr":               2e-4,
		"weight_decay":     0.01,
		"schedule":         "poly",
		"warmup":           50,
		"min_lr":           0.0,
		"head_channels":    256,
		"aux_weight":       0.4,
		"label_fraction":   1.0, // label-efficient protocol: fraction of labelled train images ...
		"label_count":      0,   // ... or their number (> 0 takes precedence)
		"seed":             0,
		"skip_bad":         false, // leave out training images that fail to load (listed in Skipped)
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        10,
		"overlays":         6, // validation images drawn with predictions
	}
}

// SemsegResult is what a fine-tuning run produced.
type SemsegResult struct {
	Skipped       []string // training images left out under skip_bad, "path: error"
	Metrics       semseg.Result
	Classes       []string
	LabeledImages int
	Checkpoint    string
	Overlays      string // PNG of predictions on validation images
	TrainTime     time.Duration
	EvalTime      time.Duration
}

// semsegSetup holds what training and evaluation share.
type semsegSetup struct {
	store      *model.Store
	backbone   backbones.Entry
	numClasses int
	headCfg    upernet.Config
	smallStem  bool
	frozen     bool // the backbone is frozen (freeze_backbone)
}

// newSemsegSetup reads the model's settings from the store (backbone, small_stem,
// freeze_backbone, head_channels).
func newSemsegSetup(store *model.Store, numClasses int) (*semsegSetup, error) {
	entry, err := backbones.Get(configs.Get[string](store, "backbone"))
	if err != nil {
		return nil, err
	}
	head := configs.Get[int](store, "head_channels")
	return &semsegSetup{store: store, backbone: entry, numClasses: numClasses, smallStem: configs.Get[bool](store, "small_stem"),
		frozen: configs.Get[bool](store, "freeze_backbone"), headCfg: upernet.Config{Channels: head, AuxChannels: head / 2}}, nil
}

// forward builds the model on images in [0, 1] and returns UperNet's output.
func (s *semsegSetup) forward(scope *model.Scope, images *Node) upernet.Output {
	bscope := scope.In("backbone")
	if s.frozen {
		nn.Freeze(bscope)
	}
	feats := s.backbone.Build(bscope, backbones.Normalize(images), backbones.Options{SmallInputStem: s.smallStem}).Features
	return upernet.Build(scope.In("head"), feats, s.numClasses, s.headCfg)
}

// Semseg fine-tunes and evaluates UperNet on the store's settings (see SemsegDefaults), writing
// checkpoints, metrics, loss curves and overlays under outDir. A store restored from a
// checkpoint of outDir resumes at its step.
func Semseg(b compute.Backend, store *model.Store, outDir string, log io.Writer) (SemsegResult, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	ints := func(k string) []int { return configs.Get[[]int](store, k) }

	dsOpts := datasets.Options{Task: "semantic", KeepZeroLabel: configs.Get[bool](store, "keep_zero_label")}
	trainDS, err := datasets.Open(str("dataset"), str("data"), str("train_split"), dsOpts)
	if err != nil {
		return SemsegResult{}, err
	}
	valDS, err := datasets.Open(str("dataset"), str("data"), str("val_split"), dsOpts)
	if err != nil {
		return SemsegResult{}, err
	}
	classes := trainDS.Classes()
	if len(classes) == 0 {
		return SemsegResult{}, fmt.Errorf("dataset %s has no classes: not a segmentation dataset", trainDS.Name())
	}
	labeled, err := datasets.LabeledSubset(trainDS.Len(), flt("label_fraction"), num("label_count"), uint64(num("seed")))
	if err != nil {
		return SemsegResult{}, fmt.Errorf("label_fraction/label_count: %w", err)
	}
	if len(labeled) < trainDS.Len() {
		trainDS, err = datasets.NewSubset(trainDS, labeled, fmt.Sprintf("%s[%d labelled]", trainDS.Name(), len(labeled)))
		if err != nil {
			return SemsegResult{}, err
		}
	}
	crop, scale := ints("crop"), ints("scale")
	if len(crop) != 2 || len(scale) != 2 {
		return SemsegResult{}, fmt.Errorf("crop and scale must be (height, width) and (long, short) pairs, got %v and %v", crop, scale)
	}
	ratio := configs.Get[[]float64](store, "ratio")
	trainLoader, err := loader.New(trainDS, loader.Config{
		BatchSize: num("batch"), Shuffle: true, Seed: int64(num("seed")), Workers: num("workers"),
		SkipBad: configs.Get[bool](store, "skip_bad"),
		Transform: transforms.Compose(
			transforms.RandomRescale{Scale: [2]int{scale[0], scale[1]}, RatioRange: [2]float64{ratio[0], ratio[1]}},
			transforms.RandomCrop{W: crop[1], H: crop[0], CatMaxRatio: 0.75},
			transforms.HFlip{P: 0.5},
			transforms.Pad{W: crop[1], H: crop[0]},
		),
	})
	if err != nil {
		return SemsegResult{}, err
	}
	setup, err := newSemsegSetup(store, len(classes))
	if err != nil {
		return SemsegResult{}, err
	}
	store.SetParam(ClassesParam, classes)

	lossFn := func(scope *model.Scope, in []*Node) map[string]*Node {
		images, labels, valid := in[0], in[1], in[2]
		// Padding samples of the last batch of an epoch are ignored.
		ignore := Scalar(labels.Graph(), labels.DType(), datasets.IgnoreLabel)
		validMask := BroadcastToShape(Reshape(GreaterThan(valid, ZerosLike(valid)), valid.Shape().Dim(0), 1, 1), labels.Shape())
		labels = Where(validMask, labels, BroadcastToShape(ignore, labels.Shape()))
		out := setup.forward(scope.In("model"), images)
		h, w := labels.Shape().Dim(1), labels.Shape().Dim(2)
		ce := seg.CrossEntropy(nn.ResizeBilinear(out.Logits, h, w), labels, datasets.IgnoreLabel)
		terms := map[string]*Node{"ce": ce, "loss": ce}
		if out.AuxLogits != nil && flt("aux_weight") > 0 {
			aux := seg.CrossEntropy(nn.ResizeBilinear(out.AuxLogits, h, w), labels, datasets.IgnoreLabel)
			terms["aux_ce"] = aux
			terms["loss"] = Add(ce, MulScalar(aux, flt("aux_weight")))
		}
		return terms
	}

	// Create the variables, then load the initial backbone (only at the start of a run).
	bs := num("batch")
	inShapes := []shapes.Shape{shapes.Make(dtypes.Float32, bs, crop[0], crop[1], 3), shapes.Make(dtypes.Int32, bs, crop[0], crop[1]), shapes.Make(dtypes.Float32, bs)}
	if err := train.Seed(store, int64(num("seed"))); err != nil {
		return SemsegResult{}, err
	}
	if err := train.Declare(b, store, inShapes, func(scope *model.Scope, in []*Node) { lossFn(scope, in) }); err != nil {
		return SemsegResult{}, err
	}
	if train.CurrentStep(store) == 0 && str("init") != "random" {
		n, err := train.LoadScope(store, str("init"), train.LoadSpec{From: str("init_scope"), To: "/model/backbone", Skip: []string{"head/*"}, Strict: true})
		if err != nil {
			return SemsegResult{}, fmt.Errorf("init: %w", err)
		}
		fmt.Fprintf(log, "initialised the backbone from %s (%d variables of %s)\n", str("init"), n, str("init_scope"))
	}

	steps := int64(num("steps"))
	tr, err := train.NewTrainer(b, store, train.Config{
		Optimizer: train.OptimizerConfig{Name: str("optimizer"), WeightDecay: flt("weight_decay")},
		Schedule:  train.Schedule{Kind: str("schedule"), BaseLR: flt("lr"), MinLR: flt("min_lr"), WarmupSteps: num("warmup"), TotalSteps: int(steps)},
		Train:     []string{"/model"},
		Frozen:    frozenBackbone(setup.frozen),
		LRMult:    backboneLRMult(flt("backbone_lr_mult")),
	}, lossFn)
	if err != nil {
		return SemsegResult{}, err
	}
	it := trainLoader.IterateFrom(train.CurrentStep(store))
	defer it.Close()
	sum, err := train.Run(tr, store, it.Feed(loader.ImagesAndMasks), train.LoopConfig{
		Steps: steps, Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: bs, Title: fmt.Sprintf("UperNet %s on %s", str("backbone"), trainDS.Name()), Out: log,
	})
	if err != nil {
		return SemsegResult{}, err
	}
	res := SemsegResult{Classes: classes, LabeledImages: trainDS.Len(), Checkpoint: sum.Checkpoint, TrainTime: sum.Elapsed, Skipped: trainLoader.SkippedLines()}
	if skipped := trainLoader.Skipped(); len(skipped) > 0 {
		fmt.Fprintf(log, "skipped %d bad training samples, e.g. %s: %v\n", len(skipped), skipped[0].Path, skipped[0].Err)
	}

	t1 := time.Now()
	res.Metrics, res.Overlays, err = evaluateSemseg(b, store, setup, valDS, ints("eval_size"), num("workers"), num("overlays"), outDir)
	res.EvalTime = time.Since(t1)
	return res, err
}

// evaluateSemseg runs the model of the store on every image of ds and returns the mIoU
// metrics against the labels as read, drawing the first `overlays` images with their
// predictions into outDir. The images are fed as predict does (native size, or fitted into
// evalSize and padded, the prediction mapped back to the image's size), so the masks that
// predict writes score exactly as this: with eval_size the metric is taken at the labels'
// own size, as mmseg does.
func evaluateSemseg(b compute.Backend, store *model.Store, setup *semsegSetup, ds datasets.Dataset, evalSize []int,
	workers, overlays int, outDir string) (semseg.Result, string, error) {
	ev := semseg.New(setup.numClasses, datasets.IgnoreLabel)
	palette := viz.Palette(setup.numClasses)
	var drawn []image.Image
	_, err := setup.predict(b, ds, evalSize, workers, false, func(p SemsegPrediction) error {
		if p.Label == nil {
			return fmt.Errorf("semseg: %s has no semantic label", p.Path)
		}
		label := make([]int32, len(p.Label))
		for i, v := range p.Label {
			label[i] = int32(v)
		}
		if err := ev.Process(p.Classes, label); err != nil {
			return fmt.Errorf("%s: %w", p.Path, err)
		}
		if len(drawn) < 3*overlays {
			drawn = append(drawn, SemsegOverlays(p, palette, 0.6)...)
		}
		return nil
	})
	if err != nil {
		return semseg.Result{}, "", err
	}
	path := ""
	if len(drawn) > 0 {
		path = filepath.Join(outDir, "predictions.png")
		b := drawn[0].Bounds()
		for i, im := range drawn {
			if im.Bounds().Size() != b.Size() { // images of another size, drawn at the first's
				drawn[i] = viz.Resize(im, b.Dx(), b.Dy())
			}
		}
		if err := viz.SavePNG(path, viz.Grid(drawn, 3, 2)); err != nil {
			return semseg.Result{}, "", err
		}
	}
	return ev.Evaluate(), path, nil
}

// SemsegOverlays draws an image, its prediction and (when it has one) its label, the classes
// blended into the image with weight alpha.
func SemsegOverlays(p SemsegPrediction, palette []color.RGBA, alpha float64) []image.Image {
	img := p.Image.ToRGBA()
	w, h := p.Image.W, p.Image.H
	out := []image.Image{img, viz.Overlay(img, p.Classes, w, h, palette, alpha)}
	if p.Label != nil {
		label := make([]int32, len(p.Label))
		for i, v := range p.Label {
			label[i] = int32(v)
		}
		out = append(out, viz.Overlay(img, label, w, h, palette, alpha))
	}
	return out
}

// frozenBackbone is the trainer's frozen scopes: the backbone under freeze_backbone, else none.
func frozenBackbone(frozen bool) []string {
	if !frozen {
		return nil
	}
	return []string{"/model/backbone"}
}

// backboneLRMult is the trainer's learning-rate multiplier of the backbone (nil for 1).
func backboneLRMult(mult float64) map[string]float64 {
	if mult == 1 {
		return nil
	}
	return map[string]float64{"/model/backbone": mult}
}
