// Package distill pre-trains a backbone by DreamTeacher's feature distillation: a frozen
// generative teacher encodes each real image (the ADM diffusion UNet: noise the image to step t
// with fresh noise, one UNet pass, read its decoder taps), and the student — a backbone plus the
// PPM+FPN feature regressor — regresses the teacher's multi-scale features with the
// LayerNorm-whitened MSE plus 10x attention transfer. Teacher encoding, student forward, losses,
// backward and update are one compiled graph per step.
//
// The checkpoint it writes holds the student under /student (backbone under
// /student/backbone), which fine-tuning loads; the teacher is not saved (it has its own
// checkpoint).
package distill

import (
	"fmt"
	"image"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	distillloss "github.com/dreamteacher-go/dreamteacher/losses/distill"
	"github.com/dreamteacher-go/dreamteacher/losses/feature"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/heads/interpreter"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/models/regressor"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/interpret"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/dreamteacher-go/dreamteacher/train/teachers"
	"github.com/dreamteacher-go/dreamteacher/viz"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Scopes of the distillation graph (the teacher is under teachers.Scope).
const (
	LabelScope     = "/label/interpreter" // the frozen interpreter of label distillation
	StudentScope   = "/student"
	BackboneScope  = "/student/backbone"
	RegressorScope = "/student/regressor"
)

// Defaults are the settings of feature distillation (a CPU-sized run; configs/*.conf give the
// paper's recipes).
func Defaults() map[string]any {
	return map[string]any{
		"dataset": "imagefolder",
		"data":    "",
		"split":   "train",
		"size":    []int{64, 64}, // images (height, width): resized to cover, centre-cropped
		// teacher_size, when set, is the (smaller) input of the teacher: the batch is resized to
		// it for the teacher only, e.g. half the student's size so that the teacher's strides
		// 16..2 line up with the student's 32..4.
		"teacher_size": []int{},
		"flip":         true,
		// teacher is the checkpoint of `dreamteacher pretrain-diffusion`; its UNet configuration
		// and diffusion process are read from it. "random:<adm configuration>" is that UNet with
		// random weights: it times the same (--dry-run before the weights are downloaded) and
		// is the random-teacher baseline.
		"teacher":         "",
		"teacher_scope":   pretrain.EMAScope, // the EMA weights
		"t":               50,                // the noising step of the encoder (paper: 150 ImageNet, 50 others)
		"taps":            []string{},        // teacher taps (default: the decoder's last block per level, strides 32..4)
		"backbone":        "resnet18",
		"small_stem":      false,
		"regressor_width": 256,
		"at_weight":       feature.DefaultATWeight,
		// mode is "feature" (L_feat), "label" (L_ld: the interpreter's soft labels through a
		// logit head on the regressor's outputs) or "mixed" (L_feat + ld_weight * L_ld).
		"mode":             "feature",
		"truncation":       0.0,     // GAN teachers: latents from the normal truncated to ±truncation (0: none)
		"teacher_classes":  []int{}, // class-conditional GAN teachers: each image's class drawn uniformly from these (empty: all)
		"interpreter":      "",      // checkpoint of interpreter training (label and mixed modes)
		"tau":              4.0,
		"ld_weight":        1.0,
		"batch":            16,
		"steps":            1000,
		"optimizer":        "adamw",
		"lr":               1e-3,
		"weight_decay":     0.05,
		"schedule":         "cosine",
		"warmup":           50,
		"min_lr":           0.0,
		"clip":             0.0,
		"seed":             0,
		"skip_bad":         false, // leave out training images that fail to load (listed in Skipped)
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        10,
		"feature_images":   4, // images drawn in features.png (teacher vs student PCA per level)
	}
}

// Result is what a distillation run produced.
type Result struct {
	Skipped    []string // training images left out under skip_bad, "path: error"
	Checkpoint string
	Features   string // PNG: teacher and student features, first 3 PCA components per level
	Steps      int64
	FirstLoss  float64
	LastLoss   float64
	TrainTime  time.Duration
	Targets    []regressor.Target // the teacher's features the student regresses
}

// source gives, at each step, the images the student sees and the teacher's features on them:
// real images encoded by a diffusion teacher, or a GAN's own samples.
type source struct {
	describe string
	title    string // the data, for the loss plot
	targets  []regressor.Target
	load     func(store *model.Store) error
	inShape  shapes.Shape
	// encode builds, from the step's input, the student's images in [0, 1] and the teacher's
	// features by tap name.
	encode func(scope *model.Scope, in *Node) (images *Node, feats map[string]*Node)
	next   func(step int64) (func() (*tensors.Tensor, error), func()) // the step inputs from a step on, and a stop
	diff   *teachers.Diffusion                                        // nil for a GAN
	// skipped lists the images left out under skip_bad (nil for a GAN: it reads no files).
	skipped func() []string
}

// diffusionSource encodes the real images of the store's dataset with an ADM teacher.
func diffusionSource(store *model.Store, teacher *teachers.Diffusion) (*source, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	size, tsize, err := inputSizes(store, teacher)
	if err != nil {
		return nil, err
	}
	ds, err := datasets.Open(str("dataset"), str("data"), str("split"), datasets.Options{})
	if err != nil {
		return nil, err
	}
	tf := pretrain.Cover(size[0], size[1])
	if configs.Get[bool](store, "flip") {
		tf = transforms.Compose(tf, transforms.HFlip{P: 0.5})
	}
	bs := num("batch")
	ld, err := loader.New(ds, loader.Config{BatchSize: bs, Transform: tf, Shuffle: true, Seed: int64(num("seed")), Workers: num("workers"),
		SkipBad: configs.Get[bool](store, "skip_bad")})
	if err != nil {
		return nil, err
	}
	return &source{
		describe: teacher.Describe(), title: ds.Name(), diff: teacher, skipped: ld.SkippedLines,
		targets: teacher.Targets(tsize[0], tsize[1]),
		load:    teacher.Load,
		inShape: shapes.Make(dtypes.Float32, bs, size[0], size[1], 3),
		encode:  diffusionEncode(teacher, size, tsize),
		next: func(step int64) (func() (*tensors.Tensor, error), func()) {
			it := ld.IterateFrom(step)
			return func() (*tensors.Tensor, error) {
				batch, err := it.Next()
				if err != nil {
					return nil, err
				}
				return batch.Images, nil
			}, it.Close
		},
	}, nil
}

// inputSizes are the (height, width) of the student's images and of the teacher's input.
func inputSizes(store *model.Store, teacher *teachers.Diffusion) (size, tsize []int, err error) {
	size = configs.Get[[]int](store, "size")
	if len(size) != 2 {
		return nil, nil, fmt.Errorf("size must be (height, width), got %v", size)
	}
	tsize = configs.Get[[]int](store, "teacher_size")
	if len(tsize) == 0 {
		tsize = size
	}
	if len(tsize) != 2 {
		return nil, nil, fmt.Errorf("teacher_size must be (height, width), got %v", tsize)
	}
	if err := teacher.Config.CheckInputSize(tsize[0], tsize[1]); err != nil {
		return nil, nil, fmt.Errorf("teacher input %v for the teacher %s: %w", tsize, teacher.Name, err)
	}
	return size, tsize, nil
}

// diffusionEncode is the source's encode of a diffusion teacher: the student sees the images
// (size), the teacher the images resized to tsize.
func diffusionEncode(teacher *teachers.Diffusion, size, tsize []int) func(*model.Scope, *Node) (*Node, map[string]*Node) {
	return func(scope *model.Scope, images *Node) (*Node, map[string]*Node) {
		x := images
		if tsize[0] != size[0] || tsize[1] != size[1] {
			x = nn.ResizeBilinear(images, tsize[0], tsize[1])
		}
		return images, teacher.Features(scope, x)
	}
}

// ganSource is DreamTeacher's "synthesized dataset": a GAN teacher generates each batch.
func ganSource(store *model.Store, teacher *teachers.GAN) *source {
	bs := configs.Get[int](store, "batch")
	dummy := tensors.FromShape(shapes.Make(dtypes.Float32, bs))
	return &source{
		describe: teacher.Describe(), title: "samples of " + teacher.Name,
		targets: teacher.Targets(),
		load:    teacher.Load,
		inShape: dummy.Shape(),
		encode: func(scope *model.Scope, in *Node) (*Node, map[string]*Node) {
			return teacher.Generate(scope, in.Graph(), bs, in)
		},
		next: func(int64) (func() (*tensors.Tensor, error), func()) {
			return func() (*tensors.Tensor, error) { return dummy, nil }, func() {}
		},
	}
}

// Run distils the teacher into the backbone on the store's settings (see Defaults), writing
// checkpoints, metrics, loss curves and features.png under outDir. A store restored from a
// checkpoint of outDir resumes. The teacher is a pre-training checkpoint of either kind: an
// ADM (it encodes the dataset's images) or a BigGAN (it generates the images; the dataset
// settings are then unused).
func Run(b compute.Backend, store *model.Store, outDir string, log io.Writer) (Result, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }

	taps := configs.Get[[]string](store, "taps")
	var src *source
	if str("teacher") != "" && teachers.IsGAN(str("teacher")) {
		scope := str("teacher_scope")
		if scope == pretrain.EMAScope { // the diffusion default
			scope = "/generator"
		}
		gan, err := teachers.LoadGAN(str("teacher"), scope, taps, flt("truncation"))
		if err != nil {
			return Result{}, err
		}
		if err := gan.SetClasses(configs.Get[[]int](store, "teacher_classes")); err != nil {
			return Result{}, fmt.Errorf("teacher_classes: %w", err)
		}
		if str("mode") != "feature" {
			return Result{}, fmt.Errorf("mode %s: label distillation needs an interpreter of a diffusion teacher; a GAN teacher distils features only", str("mode"))
		}
		src = ganSource(store, gan)
	} else {
		if classes := configs.Get[[]int](store, "teacher_classes"); len(classes) > 0 {
			return Result{}, fmt.Errorf("teacher_classes %v: only a class-conditional GAN teacher draws classes; the teacher %q is not a BigGAN checkpoint", classes, str("teacher"))
		}
		var teacher *teachers.Diffusion
		var err error
		if name, random := strings.CutPrefix(str("teacher"), "random:"); random {
			teacher, err = teachers.NewDiffusion(name, nil, num("t"), taps)
		} else {
			teacher, err = teachers.LoadDiffusion(str("teacher"), str("teacher_scope"), "", num("t"), taps)
		}
		if err != nil {
			return Result{}, err
		}
		if src, err = diffusionSource(store, teacher); err != nil {
			return Result{}, err
		}
	}
	student, err := newStudent(store, src.targets)
	if err != nil {
		return Result{}, err
	}
	mode := str("mode")
	var interp *interpret.Interpreter
	switch mode {
	case "feature":
	case "label", "mixed":
		if interp, err = interpret.LoadInterpreter(store, str("interpreter"), LabelScope); err != nil {
			return Result{}, fmt.Errorf("mode %s: %w", mode, err)
		}
		if err := interp.CheckTeacher(src.diff); err != nil {
			return Result{}, err
		}
	default:
		return Result{}, fmt.Errorf("mode %q: want feature, label or mixed", mode)
	}
	lossFn := distillLoss(store, src.encode, student, interp)

	if err := train.Seed(store, int64(num("seed"))); err != nil {
		return Result{}, err
	}
	if err := train.Declare(b, store, []shapes.Shape{src.inShape}, func(scope *model.Scope, in []*Node) { lossFn(scope, in) }); err != nil {
		return Result{}, err
	}
	if err := src.load(store); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(log, "%s -> student %s\n", src.describe, str("backbone"))

	steps := int64(num("steps"))
	tr, err := train.NewTrainer(b, store, trainerConfig(store), lossFn)
	if err != nil {
		return Result{}, err
	}
	input, stop := src.next(train.CurrentStep(store))
	defer stop()
	var first *tensors.Tensor
	next := func() ([]*tensors.Tensor, error) {
		x, err := input()
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = x
		}
		return []*tensors.Tensor{x}, nil
	}
	sum, err := train.Run(tr, store, next, train.LoopConfig{
		Steps: steps, Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: num("batch"), Title: fmt.Sprintf("%s <- teacher on %s", str("backbone"), src.title), Out: log,
		Exclude: []string{teachers.Scope, "/label"},
	})
	if err != nil {
		return Result{}, err
	}
	res := Result{Checkpoint: sum.Checkpoint, Steps: sum.Steps, LastLoss: sum.Last.Loss(), TrainTime: sum.Elapsed, Targets: src.targets}
	if src.skipped != nil {
		res.Skipped = src.skipped()
	}
	if records, err := train.ReadMetrics(sum.Metrics); err == nil && len(records) > 0 {
		res.FirstLoss = records[0]["loss"]
	}
	if n := num("feature_images"); n > 0 && first != nil {
		res.Features = filepath.Join(outDir, "features.png")
		if err := FeaturePNG(b, store, src, student, first, n, res.Features); err != nil {
			return res, err
		}
	}
	return res, nil
}

// FeatureStep is one training step of feature distillation from a diffusion teacher, as Run
// builds it.
type FeatureStep struct {
	Input   shapes.Shape       // the batch: images [batch, height, width, 3] in [0, 1]
	Targets []regressor.Target // the teacher's features that the student regresses
	Loss    train.LossFn
	Trainer train.Config // trains StudentScope only
}

// NewFeatureStep builds the step of mode "feature" on the store's settings (see Defaults: size,
// teacher_size, batch, backbone, small_stem, regressor_width, at_weight, optimizer, lr,
// weight_decay, schedule, ...) for the teacher, without a dataset: `dreamteacher bench` times
// it. The teacher's weights are whatever the store holds under teachers.Scope (Run loads them
// from the teacher's checkpoint; fresh ones cost the same).
func NewFeatureStep(store *model.Store, teacher *teachers.Diffusion) (*FeatureStep, error) {
	if mode := configs.Get[string](store, "mode"); mode != "feature" {
		return nil, fmt.Errorf("mode %s: NewFeatureStep builds feature distillation only", mode)
	}
	size, tsize, err := inputSizes(store, teacher)
	if err != nil {
		return nil, err
	}
	targets := teacher.Targets(tsize[0], tsize[1])
	student, err := newStudent(store, targets)
	if err != nil {
		return nil, err
	}
	return &FeatureStep{
		Input:   shapes.Make(dtypes.Float32, configs.Get[int](store, "batch"), size[0], size[1], 3),
		Targets: targets,
		Loss:    distillLoss(store, diffusionEncode(teacher, size, tsize), student, nil),
		Trainer: trainerConfig(store),
	}, nil
}

// newStudent is the student of the store's settings (backbone, small_stem, regressor_width):
// the backbone on the (ImageNet-normalised) images, the regressor to the targets.
func newStudent(store *model.Store, targets []regressor.Target) (func(scope *model.Scope, images *Node) map[string]*Node, error) {
	entry, err := backbones.Get(configs.Get[string](store, "backbone"))
	if err != nil {
		return nil, err
	}
	opts := backbones.Options{SmallInputStem: configs.Get[bool](store, "small_stem")}
	width := configs.Get[int](store, "regressor_width")
	return func(scope *model.Scope, images *Node) map[string]*Node {
		feats := entry.Build(scope.In("backbone"), backbones.Normalize(images), opts).Features
		return regressor.New(scope.In("regressor"), feats, targets).Width(width).Done()
	}, nil
}

// distillLoss is the loss of a step on the store's settings (mode, at_weight, tau, ld_weight):
// the teacher's features of the step's input (encode, under /teacher), the student's
// predictions of them (under /student), L_feat, and with an interpreter L_ld.
func distillLoss(store *model.Store, encode func(*model.Scope, *Node) (*Node, map[string]*Node),
	student func(*model.Scope, *Node) map[string]*Node, interp *interpret.Interpreter) train.LossFn {
	mode := configs.Get[string](store, "mode")
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	atWeight, tau, ldWeight := flt("at_weight"), flt("tau"), flt("ld_weight")
	return func(scope *model.Scope, in []*Node) map[string]*Node {
		images, feats := encode(scope.In("teacher"), in[0])
		preds := student(scope.In("student"), images)
		terms := map[string]*Node{}
		if mode != "label" {
			terms = feature.Loss(preds, byTargetName(feats), feature.Config{ATWeight: atWeight, LNEps: feature.DefaultLNEps})
		}
		if interp != nil {
			ld := labelLoss(scope, interp, feats, preds, tau)
			terms["ld"] = ld
			if mode == "label" {
				terms["loss"] = ld
			} else {
				terms["feat"] = terms["loss"]
				terms["loss"] = Add(terms["loss"], MulScalar(ld, ldWeight))
			}
		}
		return terms
	}
}

// trainerConfig is the trainer of the store's settings (optimizer, weight_decay, schedule, lr,
// min_lr, warmup, steps, clip): the student trained, everything else frozen.
func trainerConfig(store *model.Store) train.Config {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	return train.Config{
		Optimizer: train.OptimizerConfig{Name: str("optimizer"), WeightDecay: flt("weight_decay")},
		Schedule:  train.Schedule{Kind: str("schedule"), BaseLR: flt("lr"), MinLR: flt("min_lr"), WarmupSteps: num("warmup"), TotalSteps: num("steps")},
		ClipNorm:  flt("clip"),
		Train:     []string{StudentScope},
	}
}

// byTargetName keys the teacher's features (by tap name) by the regressor's target names.
func byTargetName(feats map[string]*Node) map[string]*Node {
	out := make(map[string]*Node, len(feats))
	for name, f := range feats {
		out[teachers.TargetName(name)] = f
	}
	return out
}

// labelLoss is L_ld: the frozen interpreter's logits z_g on the teacher's features and the
// student's logits z_r from a logit head (an interpreter of the same shape, trained) on the
// regressor's predictions of those features; H(softmax(z_g/tau), softmax(z_r/tau)).
func labelLoss(scope *model.Scope, it *interpret.Interpreter, teacherFeats, preds map[string]*Node, tau float64) *Node {
	zg := it.Logits(scope.In("label").In("interpreter"), teacherFeats)
	studentFeats := map[string]*Node{}
	for name := range teacherFeats {
		studentFeats[name] = preds[teachers.TargetName(name)]
	}
	cfg := it.Config
	cfg.OutHeight, cfg.OutWidth = zg.Shape().Dim(1), zg.Shape().Dim(2)
	zr := interpreter.Build(scope.At("student").In("logit_head"), studentFeats, it.NumClasses, cfg)
	return distillloss.New(zr, zg).Tau(tau).Done()
}

// FeaturePNG draws, for the first n images of a step, the image and then per level the
// teacher's (LayerNorm-whitened) features and the student's predictions, each as its first
// three PCA components — one basis per level, fitted on the teacher's maps, so that colours
// compare directly.
func FeaturePNG(b compute.Backend, store *model.Store, src *source, student func(*model.Scope, *Node) map[string]*Node,
	input *tensors.Tensor, n int, path string) error {
	targets := slices.Clone(src.targets)
	sort.SliceStable(targets, func(i, j int) bool { return targets[i].Height < targets[j].Height })
	exec, err := model.NewExec(b, store, func(scope *model.Scope, x *Node) []*Node {
		images, feats := src.encode(scope.In("teacher"), x)
		byName := byTargetName(feats)
		preds := student(scope.In("student"), images)
		out := []*Node{images}
		for _, t := range targets {
			out = append(out, nn.LayerNormNoParams(byName[t.Name], feature.DefaultLNEps), preds[t.Name])
		}
		return out
	})
	if err != nil {
		return err
	}
	outs, err := exec.Exec(input)
	if err != nil {
		return err
	}
	images := outs[0]
	n = min(n, images.Shape().Dim(0))
	h, w := images.Shape().Dim(1), images.Shape().Dim(2)
	pix := tensors.MustCopyFlatData[float32](images)
	rows := make([][]image.Image, n)
	for i := range n {
		rows[i] = append(rows[i], viz.Image{H: h, W: w, C: 3, Pix: pix[i*h*w*3 : (i+1)*h*w*3]}.ToRGBA(0, 1))
	}
	for l := range targets {
		tMaps, sMaps := splitMaps(outs[1+2*l], n), splitMaps(outs[2+2*l], n)
		pca, err := viz.FitPCA(tMaps, 20000)
		if err != nil {
			return err
		}
		for i := range n {
			rows[i] = append(rows[i], viz.Resize(pca.Apply(tMaps[i]).ToRGBA(0, 1), w, h), viz.Resize(pca.Apply(sMaps[i]).ToRGBA(0, 1), w, h))
		}
	}
	var cells []image.Image
	for _, r := range rows {
		cells = append(cells, r...)
	}
	return viz.SavePNG(path, viz.Grid(cells, 1+2*len(targets), 2))
}

func splitMaps(t *tensors.Tensor, n int) []viz.Image {
	s := t.Shape()
	flat := tensors.MustCopyFlatData[float32](t)
	return viz.SplitBatch(flat, s.Dim(0), s.Dim(1), s.Dim(2), s.Dim(3))[:n]
}
