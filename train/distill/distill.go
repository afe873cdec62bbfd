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
	"sort"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	distillloss "github.com/dreamteacher-go/dreamteacher/losses/distill"
	"github.com/dreamteacher-go/dreamteacher/losses/feature"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
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
		// and diffusion process are read from it.
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
		"interpreter":      "", // checkpoint of interpreter training (label and mixed modes)
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
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        10,
		"feature_images":   4, // images drawn in features.png (teacher vs student PCA per level)
	}
}

// Result is what a distillation run produced.
type Result struct {
	Checkpoint string
	Features   string // PNG: teacher and student features, first 3 PCA components per level
	Steps      int64
	FirstLoss  float64
	LastLoss   float64
	TrainTime  time.Duration
	Taps       []adm.TapInfo
}

// Run distils the teacher into the backbone on the store's settings (see Defaults), writing
// checkpoints, metrics, loss curves and features.png under outDir. A store restored from a
// checkpoint of outDir resumes.
func Run(b compute.Backend, store *model.Store, outDir string, log io.Writer) (Result, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }

	teacher, err := teachers.LoadDiffusion(str("teacher"), str("teacher_scope"), "", num("t"), configs.Get[[]string](store, "taps"))
	if err != nil {
		return Result{}, err
	}
	size := configs.Get[[]int](store, "size")
	if len(size) != 2 {
		return Result{}, fmt.Errorf("size must be (height, width), got %v", size)
	}
	tsize := configs.Get[[]int](store, "teacher_size")
	if len(tsize) == 0 {
		tsize = size
	}
	if len(tsize) != 2 {
		return Result{}, fmt.Errorf("teacher_size must be (height, width), got %v", tsize)
	}
	if err := teacher.Config.CheckInputSize(tsize[0], tsize[1]); err != nil {
		return Result{}, fmt.Errorf("teacher input %v for the teacher %s: %w", tsize, teacher.Name, err)
	}
	teacherInput := func(images *Node) *Node {
		if tsize[0] == size[0] && tsize[1] == size[1] {
			return images
		}
		return nn.ResizeBilinear(images, tsize[0], tsize[1])
	}
	entry, err := backbones.Get(str("backbone"))
	if err != nil {
		return Result{}, err
	}
	ds, err := datasets.Open(str("dataset"), str("data"), str("split"), datasets.Options{})
	if err != nil {
		return Result{}, err
	}
	tf := pretrain.Cover(size[0], size[1])
	if configs.Get[bool](store, "flip") {
		tf = transforms.Compose(tf, transforms.HFlip{P: 0.5})
	}
	bs := num("batch")
	ld, err := loader.New(ds, loader.Config{BatchSize: bs, Transform: tf, Shuffle: true, Seed: int64(num("seed")), Workers: num("workers")})
	if err != nil {
		return Result{}, err
	}
	student := func(scope *model.Scope, images *Node) map[string]*Node {
		feats := entry.Build(scope.In("backbone"), backbones.Normalize(images), backbones.Options{SmallInputStem: configs.Get[bool](store, "small_stem")}).Features
		return regressor.New(scope.In("regressor"), feats, teacher.Targets(tsize[0], tsize[1])).Width(num("regressor_width")).Done()
	}
	mode := str("mode")
	var interp *interpret.Interpreter
	switch mode {
	case "feature":
	case "label", "mixed":
		if interp, err = interpret.LoadInterpreter(store, str("interpreter"), LabelScope); err != nil {
			return Result{}, fmt.Errorf("mode %s: %w", mode, err)
		}
		if err := interp.CheckTeacher(teacher); err != nil {
			return Result{}, err
		}
	default:
		return Result{}, fmt.Errorf("mode %q: want feature, label or mixed", mode)
	}
	lossFn := func(scope *model.Scope, in []*Node) map[string]*Node {
		feats := teacher.Features(scope.In("teacher"), teacherInput(in[0]))
		preds := student(scope.In("student"), in[0])
		terms := map[string]*Node{}
		if mode != "label" {
			terms = feature.Loss(preds, byTargetName(feats), feature.Config{ATWeight: flt("at_weight"), LNEps: feature.DefaultLNEps})
		}
		if interp != nil {
			ld := labelLoss(scope, interp, feats, preds, flt("tau"))
			terms["ld"] = ld
			if mode == "label" {
				terms["loss"] = ld
			} else {
				terms["feat"] = terms["loss"]
				terms["loss"] = Add(terms["loss"], MulScalar(ld, flt("ld_weight")))
			}
		}
		return terms
	}

	inShape := []shapes.Shape{shapes.Make(dtypes.Float32, bs, size[0], size[1], 3)}
	if err := train.Declare(b, store, inShape, func(scope *model.Scope, in []*Node) { lossFn(scope, in) }); err != nil {
		return Result{}, err
	}
	if err := teacher.Load(store); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(log, "%s -> student %s\n", teacher.Describe(), str("backbone"))

	steps := int64(num("steps"))
	tr, err := train.NewTrainer(b, store, train.Config{
		Optimizer: train.OptimizerConfig{Name: str("optimizer"), WeightDecay: flt("weight_decay")},
		Schedule:  train.Schedule{Kind: str("schedule"), BaseLR: flt("lr"), MinLR: flt("min_lr"), WarmupSteps: num("warmup"), TotalSteps: int(steps)},
		ClipNorm:  flt("clip"),
		Train:     []string{StudentScope},
	}, lossFn)
	if err != nil {
		return Result{}, err
	}
	it := ld.IterateFrom(train.CurrentStep(store))
	defer it.Close()
	var first []*tensors.Tensor
	next := func() ([]*tensors.Tensor, error) {
		batch, err := it.Next()
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = []*tensors.Tensor{batch.Images}
		}
		return []*tensors.Tensor{batch.Images}, nil
	}
	t0 := time.Now()
	sum, err := train.Run(tr, store, next, train.LoopConfig{
		Steps: steps, Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: bs, Title: fmt.Sprintf("%s <- %s on %s", str("backbone"), teacher.Name, ds.Name()), Out: log,
		Exclude: []string{teachers.Scope, "/label"},
	})
	if err != nil {
		return Result{}, err
	}
	res := Result{Checkpoint: sum.Checkpoint, Steps: sum.Steps, LastLoss: sum.Last.Loss(), TrainTime: time.Since(t0), Taps: teacher.Taps}
	if records, err := train.ReadMetrics(sum.Metrics); err == nil && len(records) > 0 {
		res.FirstLoss = records[0]["loss"]
	}
	if n := num("feature_images"); n > 0 && first != nil {
		res.Features = filepath.Join(outDir, "features.png")
		if err := FeaturePNG(b, store, teacher, teacherInput, student, first[0], n, res.Features); err != nil {
			return res, err
		}
	}
	return res, nil
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

// FeaturePNG draws, for the first n images of a batch, the image and then per level the
// teacher's (LayerNorm-whitened) features and the student's predictions, each as its first
// three PCA components — one basis per level, fitted on the teacher's maps, so that colours
// compare directly.
func FeaturePNG(b compute.Backend, store *model.Store, teacher *teachers.Diffusion, teacherInput func(*Node) *Node, student func(*model.Scope, *Node) map[string]*Node,
	images *tensors.Tensor, n int, path string) error {
	names := make([]string, len(teacher.Taps))
	for i, tap := range teacher.Taps {
		names[i] = teachers.TargetName(tap.Name)
	}
	sort.SliceStable(names, func(i, j int) bool { return teacher.Taps[i].Stride > teacher.Taps[j].Stride })
	exec, err := model.NewExec(b, store, func(scope *model.Scope, x *Node) []*Node {
		targets := byTargetName(teacher.Features(scope.In("teacher"), teacherInput(x)))
		preds := student(scope.In("student"), x)
		var out []*Node
		for _, name := range names {
			out = append(out, nn.LayerNormNoParams(targets[name], feature.DefaultLNEps), preds[name])
		}
		return out
	})
	if err != nil {
		return err
	}
	outs, err := exec.Exec(images)
	if err != nil {
		return err
	}
	n = min(n, images.Shape().Dim(0))
	h, w := images.Shape().Dim(1), images.Shape().Dim(2)
	pix := tensors.MustCopyFlatData[float32](images)
	rows := make([][]image.Image, n)
	for i := range n {
		rows[i] = append(rows[i], viz.Image{H: h, W: w, C: 3, Pix: pix[i*h*w*3 : (i+1)*h*w*3]}.ToRGBA(0, 1))
	}
	for l := range names {
		tMaps, sMaps := splitMaps(outs[2*l], n), splitMaps(outs[2*l+1], n)
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
	return viz.SavePNG(path, viz.Grid(cells, 1+2*len(names), 2))
}

func splitMaps(t *tensors.Tensor, n int) []viz.Image {
	s := t.Shape()
	flat := tensors.MustCopyFlatData[float32](t)
	return viz.SplitBatch(flat, s.Dim(0), s.Dim(1), s.Dim(2), s.Dim(3))[:n]
}
