// Package interpret trains DreamTeacher's interpreter (PAPER.md, "Interpreter" and "Label
// distillation"): a BigDatasetGAN-style segmentation head (models/heads/interpreter) on the
// multi-scale features of a FROZEN diffusion teacher, with few labels. Its soft labels are what
// label distillation (and mixed distillation) distils into the student.
//
// Each training step encodes the labelled images with the teacher — noise to step t with fresh
// noise, one UNet pass, read the decoder taps — and trains only the interpreter, with
// cross-entropy + 3.0 x Dice, AdamW (lr 4e-3, weight decay 0.05, betas 0.9/0.95), cosine decay
// after a linear warm-up of 20 of 100 epochs, and horizontal flips as the only augmentation.
// Teacher encoding, interpreter, losses, backward and update are one compiled graph.
//
// The teacher is the checkpoint of pretrain-diffusion: its EMA weights (/ema/unet) are loaded
// strictly into /teacher/unet, made non-trainable, and run as in inference (nn.Freeze: no
// dropout) inside the training graph; its ADM configuration and diffusion process are read from
// the checkpoint's stored settings. The checkpoint Run writes holds the interpreter under
// /interpreter (not the teacher, which has its own checkpoint) and, in its settings, the
// resolved teacher, adm, t, taps and size; LoadInterpreter loads it for label distillation.
package interpret

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	"github.com/dreamteacher-go/dreamteacher/eval/semseg"
	"github.com/dreamteacher-go/dreamteacher/losses/seg"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/heads/interpreter"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/dreamteacher-go/dreamteacher/train/teachers"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// InterpreterScope is where the interpreter is trained (the teacher is under teachers.Scope).
const InterpreterScope = "/interpreter"

// metaClasses is the checkpoint metadata key holding the class names (JSON).
const metaClasses = "interpreter_classes"

// Defaults are the settings of interpreter training: the paper's recipe, except the CPU-sized
// batch and dataset; configs/*.conf set them per experiment.
func Defaults() map[string]any {
	return map[string]any{
		// teacher is the checkpoint of pretrain-diffusion (or its folder: the newest checkpoint).
		"teacher":       "",
		"teacher_scope": pretrain.EMAScope, // the EMA weights
		// adm is the teacher's ADM configuration: empty takes the checkpoint's; set, it must
		// agree with the checkpoint's (a conflict is an error naming both).
		"adm":  "",
		"t":    50,         // the encoding timestep (paper: 150 ImageNet, 50 LSUN/FFHQ/BDD100K)
		"taps": []string{}, // teacher taps (empty: the last decoder block of each level, strides 32..4)
		// size (height, width) of the images, resized to cover and centre-cropped; empty: the
		// size the teacher was pre-trained at.
		"size":             []int{},
		"flip":             true, // random horizontal flips, the only augmentation
		"dataset":          "camvid",
		"data":             "",
		"train_split":      "train",
		"val_split":        "val",
		"keep_zero_label":  false, // keep label 0 as a class (ADE20K layout: the generated scenes' background)
		"label_fraction":   1.0,   // labelled training images: a fraction ...
		"label_count":      0,     // ... or a number (> 0 takes precedence), drawn with seed
		"seed":             0,
		"skip_bad":         false, // leave out training images that fail to load (listed in Skipped)
		"width":            interpreter.DefaultWidth,
		"dropout":          interpreter.DefaultDropout, // 0: none
		"dice_weight":      seg.DefaultDiceWeight,
		"batch":            8,
		"epochs":           100,
		"warmup_epochs":    20,
		"optimizer":        "adamw",
		"lr":               4e-3,
		"weight_decay":     0.05,
		"beta1":            0.9,
		"beta2":            0.95,
		"schedule":         "cosine",
		"min_lr":           0.0,
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        10,
		"overlays":         6, // validation images drawn with their predictions
	}
}

// Result is what an interpreter training run produced.
type Result struct {
	Skipped       []string      // training images left out under skip_bad, "path: error"
	Metrics       semseg.Result // on the val split
	Classes       []string
	LabeledImages int
	Steps         int64
	LastLoss      float64
	Checkpoint    string
	Overlays      string // PNG: validation images, predictions, ground truth
	Teacher       string // the teacher's ADM configuration
	Taps          []adm.TapInfo
	TrainTime     time.Duration
	EvalTime      time.Duration
}

// setup holds what training and evaluation share.
type setup struct {
	teacher    *teachers.Diffusion
	cfg        interpreter.Config
	numClasses int
	size       []int
}

// logits builds the teacher and the interpreter on images in [0, 1] under the root scope and
// returns the interpreter's logits at the images' resolution.
func (s *setup) logits(root *model.Scope, images *Node) *Node {
	feats := s.teacher.Features(root.In("teacher"), images)
	logits := interpreter.Build(root.In("interpreter"), feats, s.numClasses, s.cfg)
	if h, w := images.Shape().Dim(1), images.Shape().Dim(2); logits.Shape().Dim(1) != h || logits.Shape().Dim(2) != w {
		logits = nn.ResizeBilinear(logits, h, w)
	}
	return logits
}

// interpreterConfig is the head's configuration from the settings (dropout 0 means none).
func interpreterConfig(width int, dropout float64) interpreter.Config {
	if dropout <= 0 {
		dropout = -1
	}
	return interpreter.Config{Width: width, Dropout: dropout}
}

// Run trains the interpreter on the store's settings (see Defaults) and evaluates its mIoU on
// the val split, writing checkpoints, metrics, loss curves and predictions.png under outDir. A
// store restored from a checkpoint of outDir resumes at its step (the teacher is reloaded from
// its own checkpoint).
func Run(b compute.Backend, store *model.Store, outDir string, log io.Writer) (Result, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }

	teacher, err := teachers.LoadDiffusion(str("teacher"), str("teacher_scope"), str("adm"), num("t"), configs.Get[[]string](store, "taps"))
	if err != nil {
		return Result{}, err
	}
	size := configs.Get[[]int](store, "size")
	if len(size) == 0 {
		size = teacher.Size
		if size == nil {
			h, w := teacher.Config.InputSize()
			size = []int{h, w}
		}
	}
	if len(size) != 2 {
		return Result{}, fmt.Errorf("size must be (height, width), got %v", size)
	}
	if err := teacher.Config.CheckInputSize(size[0], size[1]); err != nil {
		return Result{}, fmt.Errorf("size %v for the teacher %s: %w", size, teacher.Name, err)
	}
	// Record what was resolved: the checkpoint then says which teacher (file, not folder),
	// configuration, taps and size the interpreter was trained on, and a resumed run checks
	// them again.
	store.SetParam("/teacher", teacher.Checkpoint)
	store.SetParam("/adm", teacher.Name)
	store.SetParam("/taps", teacher.TapNames())
	store.SetParam("/size", size)

	dsOpts := datasets.Options{Task: "semantic", KeepZeroLabel: configs.Get[bool](store, "keep_zero_label")}
	trainDS, err := datasets.Open(str("dataset"), str("data"), str("train_split"), dsOpts)
	if err != nil {
		return Result{}, err
	}
	valDS, err := datasets.Open(str("dataset"), str("data"), str("val_split"), dsOpts)
	if err != nil {
		return Result{}, err
	}
	classes := trainDS.Classes()
	if len(classes) == 0 {
		return Result{}, fmt.Errorf("dataset %s has no classes: not a segmentation dataset", trainDS.Name())
	}
	labeled, err := datasets.LabeledSubset(trainDS.Len(), flt("label_fraction"), num("label_count"), uint64(num("seed")))
	if err != nil {
		return Result{}, fmt.Errorf("label_fraction/label_count: %w", err)
	}
	if len(labeled) < trainDS.Len() {
		trainDS, err = datasets.NewSubset(trainDS, labeled, fmt.Sprintf("%s[%d labelled]", trainDS.Name(), len(labeled)))
		if err != nil {
			return Result{}, err
		}
	}
	tf := pretrain.Cover(size[0], size[1])
	if configs.Get[bool](store, "flip") {
		tf = transforms.Compose(tf, transforms.HFlip{P: 0.5})
	}
	bs := num("batch")
	trainLoader, err := loader.New(trainDS, loader.Config{BatchSize: bs, Transform: tf, Shuffle: true, Seed: int64(num("seed")), Workers: num("workers"),
		SkipBad: configs.Get[bool](store, "skip_bad")})
	if err != nil {
		return Result{}, err
	}
	perEpoch := trainLoader.BatchesPerEpoch()
	epochs, warmup := num("epochs"), num("warmup_epochs")
	if epochs < 1 || warmup < 0 || (warmup > 0 && warmup >= epochs) {
		return Result{}, fmt.Errorf("epochs = %d, warmup_epochs = %d: want epochs >= 1 and 0 <= warmup_epochs < epochs", epochs, warmup)
	}
	steps := int64(epochs * perEpoch)

	s := &setup{teacher: teacher, cfg: interpreterConfig(num("width"), flt("dropout")), numClasses: len(classes), size: size}
	lossFn := func(scope *model.Scope, in []*Node) map[string]*Node {
		images, labels, valid := in[0], in[1], in[2]
		// Padding samples of the last batch of an epoch are ignored.
		ignore := Scalar(labels.Graph(), labels.DType(), datasets.IgnoreLabel)
		validMask := BroadcastToShape(Reshape(GreaterThan(valid, ZerosLike(valid)), valid.Shape().Dim(0), 1, 1), labels.Shape())
		labels = Where(validMask, labels, BroadcastToShape(ignore, labels.Shape()))
		return seg.CEDice(s.logits(scope, images), labels, flt("dice_weight"), datasets.IgnoreLabel)
	}

	// Declare every variable, then load the teacher (at every start: it is not in our
	// checkpoints) and freeze it.
	inShapes := []shapes.Shape{shapes.Make(dtypes.Float32, bs, size[0], size[1], 3), shapes.Make(dtypes.Int32, bs, size[0], size[1]), shapes.Make(dtypes.Float32, bs)}
	if err := train.Seed(store, int64(num("seed"))); err != nil {
		return Result{}, err
	}
	if err := train.Declare(b, store, inShapes, func(scope *model.Scope, in []*Node) { lossFn(scope, in) }); err != nil {
		return Result{}, err
	}
	if err := teacher.Load(store); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(log, "%s -> interpreter (width %d, %d classes) on %s: %d epochs x %d steps\n",
		teacher.Describe(), num("width"), len(classes), trainDS.Name(), epochs, perEpoch)

	tr, err := train.NewTrainer(b, store, train.Config{
		Optimizer: train.OptimizerConfig{Name: str("optimizer"), WeightDecay: flt("weight_decay"), Beta1: flt("beta1"), Beta2: flt("beta2")},
		Schedule: train.Schedule{Kind: str("schedule"), BaseLR: flt("lr"), MinLR: flt("min_lr"),
			WarmupSteps: warmup * perEpoch, TotalSteps: int(steps)},
		Train: []string{InterpreterScope},
	}, lossFn)
	if err != nil {
		return Result{}, err
	}
	it := trainLoader.IterateFrom(train.CurrentStep(store))
	defer it.Close()
	classesJSON, _ := json.Marshal(classes)
	sum, err := train.Run(tr, store, it.Feed(loader.ImagesAndMasks), train.LoopConfig{
		Steps: steps, Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: bs, Title: fmt.Sprintf("interpreter on %s (%s, t=%d) on %s", teacher.Name, strings.Join(teacher.TapNames(), ","), teacher.Step, trainDS.Name()),
		Meta:    func() map[string]string { return map[string]string{metaClasses: string(classesJSON)} },
		Exclude: []string{teachers.Scope},
		Out:     log,
	})
	if err != nil {
		return Result{}, err
	}
	res := Result{Skipped: trainLoader.SkippedLines(), Classes: classes, LabeledImages: trainDS.Len(), Steps: sum.Steps, LastLoss: sum.Last.Loss(), Checkpoint: sum.Checkpoint,
		Teacher: teacher.Name, Taps: teacher.Taps, TrainTime: sum.Elapsed}
	if skipped := trainLoader.Skipped(); len(skipped) > 0 {
		fmt.Fprintf(log, "skipped %d bad training samples, e.g. %s: %v\n", len(skipped), skipped[0].Path, skipped[0].Err)
	}

	t1 := time.Now()
	res.Metrics, res.Overlays, err = s.evaluate(b, store, valDS, bs, num("workers"), num("overlays"), outDir)
	res.EvalTime = time.Since(t1)
	if err == nil {
		m := res.Metrics.Metrics()
		fmt.Fprintf(log, "%s: mIoU %.2f, aAcc %.2f\n", valDS.Name(), m["mIoU"], m["aAcc"])
	}
	return res, err
}

// evaluate runs the teacher and the interpreter (in inference) on every image of ds, resized
// to cover the training size and centre-cropped (labels with them, nearest), and returns the
// mIoU metrics, drawing the first `overlays` images with their predictions into outDir.
func (s *setup) evaluate(b compute.Backend, store *model.Store, ds datasets.Dataset, batch, workers, overlays int, outDir string) (semseg.Result, string, error) {
	ld, err := loader.New(ds, loader.Config{BatchSize: batch, Transform: pretrain.Cover(s.size[0], s.size[1]), Workers: workers})
	if err != nil {
		return semseg.Result{}, "", err
	}
	exec, err := model.NewExec(b, store, func(scope *model.Scope, images *Node) *Node {
		return ConvertDType(ArgMax(s.logits(scope, images), -1), dtypes.Int32)
	})
	if err != nil {
		return semseg.Result{}, "", err
	}
	predict := func(images *tensors.Tensor) ([]int32, error) {
		out, err := exec.Exec(images)
		if err != nil {
			return nil, err
		}
		return tensors.MustCopyFlatData[int32](out[0]), nil
	}
	path := ""
	if overlays > 0 {
		path = filepath.Join(outDir, "predictions.png")
	}
	res, err := semseg.EvaluateBatches(ld.Epoch(0), s.numClasses, predict, overlays, path)
	return res, path, err
}
