package finetune

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	cocodata "github.com/dreamteacher-go/dreamteacher/datasets/coco"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	"github.com/dreamteacher-go/dreamteacher/eval/coco"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/heads/maskrcnn"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// InstsegDefaults are the settings of instance segmentation fine-tuning with Mask R-CNN (FPN):
// the CPU demo on the generated scenes, with maskrcnn.Small's head. The comments give
// detectron2's COCO values (mask_rcnn_R_50_FPN_1x.yaml), which configs/*.conf set for the
// COCO and BDD100K experiments (BDD100K: schedule 3x).
func InstsegDefaults() map[string]any {
	return map[string]any{
		"dataset":     "scenes", // registered dataset name, opened with Task "instance"
		"data":        "",       // its root folder
		"train_split": "train",
		"val_split":   "val",
		"backbone":    "resnet18",
		"small_stem":  false,
		// init is "random" or a checkpoint whose init_scope holds the backbone (a distilled
		// student: /student/backbone; a converted supervised model: /model/backbone).
		"init":       "random",
		"init_scope": "/student/backbone",
		// Input: detectron2's ResizeShortestEdge (the shorter side drawn from min_size_train per
		// image, the longer one at most max_size_train), then padding to the fixed canvas; the
		// resized size is passed to the model (image_sizes). An image larger than the canvas is
		// shrunk to fit it.
		"min_size_train": []int{80, 88, 96}, // COCO: 640,672,704,736,768,800
		"max_size_train": 96,                // COCO: 1333
		"min_size_test":  96,                // COCO: 800
		"max_size_test":  96,                // COCO: 1333
		"canvas":         []int{96, 96},     // (height, width); COCO: 1344,1344
		"hflip":          0.5,
		"max_instances":  16, // ground-truth slots per image; COCO: 100
		// Mask R-CNN (maskrcnn.Config; the classes come from the dataset).
		"fpn_channels":       16,                          // COCO: 256
		"anchor_sizes":       []float64{4, 8, 16, 32, 64}, // one per level P2..P6; COCO: 32,64,128,256,512
		"rpn_batch":          64,                          // anchors sampled per image; COCO: 256
		"rpn_pre_nms_topk":   []int{48, 32},               // (train, test) per level; COCO: 2000,1000
		"rpn_post_nms_topk":  []int{32, 24},               // (train, test) per image; COCO: 1000,1000
		"roi_batch":          16,                          // RoIs sampled per image; COCO: 512
		"canonical_box_size": 28.0,                        // COCO: 224
		"box_fc_dim":         32,                          // COCO: 1024
		"mask_conv_dim":      16,                          // COCO: 256
		"detections":         8,                           // per image; COCO: 100
		"test_candidates":    32,                          // (proposal, class) pairs entering NMS; COCO: 4000
		// Optimisation. schedule "1x", "2x" or "3x" is detectron2's (maskrcnn.Schedules) scaled
		// to the batch: it sets the iterations, decay steps and warm-up (steps, warmup and
		// min_lr are then unused); "cosine", "poly" or "constant" run `steps` steps.
		"schedule": "cosine",
		"steps":    300,
		"warmup":   20,
		"min_lr":   0.0,
		"batch":    4, // COCO: 16
		// lr 0 is detectron2's 0.02 at 16 images scaled linearly to the batch (SGD only).
		"lr":           0.0,
		"optimizer":    "sgd",
		"momentum":     0.9,
		"weight_decay": 1e-4,
		// freeze_backbone trains the heads only (FPN, RPN, RoI heads), on the backbone's features
		// as they are, BatchNorm statistics included (as semseg).
		"freeze_backbone": false,
		// backbone_lr_mult scales the backbone's learning rate against the heads' (as semseg).
		"backbone_lr_mult": 1.0,
		"clip_norm":        0.0,
		"label_fraction":   1.0, // label-efficient protocol: fraction of labelled train images ...
		"label_count":      0,   // ... or their number (> 0 takes precedence)
		"seed":             0,
		"skip_bad":         false, // leave out training images that fail to load (listed in Skipped)
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        10,
		"eval_batch":       4,
		"overlays":         6,   // validation images drawn with predictions
		"vis_threshold":    0.5, // score of the detections drawn
	}
}

// InstsegResult is what an instance segmentation fine-tuning run produced.
type InstsegResult struct {
	Skipped []string // training images left out under skip_bad, "path: error"
	// APbb and APmk are box and mask AP@[.50:.95] in percent, as the paper's tables give them
	// (NaN when the validation split has no ground truth).
	APbb, APmk float64
	// Box and Mask hold pycocotools' summaries (Summary.Text: its 12 lines) and per-category AP.
	Box, Mask coco.Report
	// Detections is the number of COCO results; Overflowed the validation images whose
	// detections may differ from detectron2's (raise test_candidates).
	Detections, Overflowed int
	Images                 int // validation images evaluated
	Classes                []string
	LabeledImages          int
	Checkpoint             string
	Overlays               string // PNG of predictions beside the ground truth on validation images
	Results                string // the detections as COCO results json (coco_instances_results.json)
	TrainTime              time.Duration
	EvalTime               time.Duration
}

// instsegSetup holds what training and evaluation share.
type instsegSetup struct {
	store       *model.Store
	backbone    backbones.Entry
	smallStem   bool
	frozen      bool // the backbone is frozen (freeze_backbone)
	cfg         maskrcnn.Config
	classes     []string
	categoryIDs []int64 // COCO category id of each class
	canvas      [2]int  // (height, width) of every input
	testSize    [2]int  // ResizeShortestEdge at test time: (short edge, max size)
	evalBatch   int
	visThresh   float64
}

// newInstsegSetup reads the model's settings from the store for the classes (of category ids
// categoryIDs).
func newInstsegSetup(store *model.Store, classes []string, categoryIDs []int64) (*instsegSetup, error) {
	num := func(k string) int { return configs.Get[int](store, k) }
	entry, err := backbones.Get(configs.Get[string](store, "backbone"))
	if err != nil {
		return nil, err
	}
	cfg, err := instsegConfig(store, len(classes))
	if err != nil {
		return nil, err
	}
	canvas := configs.Get[[]int](store, "canvas")
	if len(canvas) != 2 || canvas[0] <= 0 || canvas[1] <= 0 {
		return nil, fmt.Errorf("canvas must be (height, width), got %v", canvas)
	}
	return &instsegSetup{store: store, backbone: entry, smallStem: configs.Get[bool](store, "small_stem"),
		frozen: configs.Get[bool](store, "freeze_backbone"), cfg: cfg,
		classes: classes, categoryIDs: categoryIDs, canvas: [2]int(canvas), testSize: [2]int{num("min_size_test"), num("max_size_test")},
		evalBatch: num("eval_batch"), visThresh: configs.Get[float64](store, "vis_threshold")}, nil
}

// features builds the backbone on images in [0, 1] padded to the canvas, with sizes [N, 2]
// (height, width) of their content. As detectron2, the padding is zero after normalisation.
func (s *instsegSetup) features(scope *model.Scope, images, sizes *Node) backbones.Features {
	x := backbones.Normalize(images)
	n, h, w := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2)
	g := x.Graph()
	sizes = ConvertDType(sizes, dtypes.Int32)
	rows := Iota(g, shapes.Make(dtypes.Int32, n, h, w), 1)
	cols := Iota(g, shapes.Make(dtypes.Int32, n, h, w), 2)
	hs := BroadcastToDims(Reshape(SliceAxis(sizes, 1, AxisElem(0)), n, 1, 1), n, h, w)
	ws := BroadcastToDims(Reshape(SliceAxis(sizes, 1, AxisElem(1)), n, 1, 1), n, h, w)
	inside := LogicalAnd(LessThan(rows, hs), LessThan(cols, ws))
	inside = BroadcastToDims(Reshape(inside, n, h, w, 1), n, h, w, 3)
	x = Where(inside, x, ZerosLike(x))
	bscope := scope.In("backbone")
	if s.frozen {
		nn.Freeze(bscope)
	}
	return s.backbone.Build(bscope, x, backbones.Options{SmallInputStem: s.smallStem}).Features
}

// Instseg fine-tunes Mask R-CNN on the backbone and evaluates it with COCO AP on the store's
// settings (see InstsegDefaults), writing checkpoints, metrics, loss curves, the COCO results
// and a picture of predictions under outDir, and pycocotools' summaries to log. A store
// restored from a checkpoint of outDir resumes at its step.
func Instseg(b compute.Backend, store *model.Store, outDir string, log io.Writer) (InstsegResult, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	ints := func(k string) []int { return configs.Get[[]int](store, k) }

	dsOpts := datasets.Options{Task: "instance"}
	trainDS, err := datasets.Open(str("dataset"), str("data"), str("train_split"), dsOpts)
	if err != nil {
		return InstsegResult{}, err
	}
	valDS, err := datasets.Open(str("dataset"), str("data"), str("val_split"), dsOpts)
	if err != nil {
		return InstsegResult{}, err
	}
	classes := trainDS.Classes()
	if len(classes) == 0 {
		return InstsegResult{}, fmt.Errorf("dataset %s has no classes: not an instance segmentation dataset", trainDS.Name())
	}
	if !slices.Equal(classes, valDS.Classes()) {
		return InstsegResult{}, fmt.Errorf("datasets %s and %s have different classes: %v and %v", trainDS.Name(), valDS.Name(), classes, valDS.Classes())
	}
	categoryIDs := datasetCategoryIDs(valDS)
	labeled, err := datasets.LabeledSubset(trainDS.Len(), flt("label_fraction"), num("label_count"), uint64(num("seed")))
	if err != nil {
		return InstsegResult{}, fmt.Errorf("label_fraction/label_count: %w", err)
	}
	if len(labeled) < trainDS.Len() {
		trainDS, err = datasets.NewSubset(trainDS, labeled, fmt.Sprintf("%s[%d labelled]", trainDS.Name(), len(labeled)))
		if err != nil {
			return InstsegResult{}, err
		}
	}
	minTrain := ints("min_size_train")
	if len(minTrain) == 0 || slices.Min(minTrain) <= 0 || num("max_size_train") <= 0 || num("min_size_test") <= 0 || num("max_size_test") <= 0 {
		return InstsegResult{}, fmt.Errorf("min_size_train %v, max_size_train %d, min_size_test %d, max_size_test %d must be positive",
			minTrain, num("max_size_train"), num("min_size_test"), num("max_size_test"))
	}
	setup, err := newInstsegSetup(store, classes, categoryIDs)
	if err != nil {
		return InstsegResult{}, err
	}
	cfg, canvas := setup.cfg, setup.canvas
	store.SetParam(ClassesParam, classes)
	store.SetParam(CategoryIDsParam, categoryIDsParam(categoryIDs))
	bs, maxInst := num("batch"), num("max_instances")
	if maxInst <= 0 {
		return InstsegResult{}, fmt.Errorf("max_instances must be > 0, got %d", maxInst)
	}
	trainLoader, err := loader.New(trainDS, loader.Config{
		BatchSize: bs, Shuffle: true, Seed: int64(num("seed")), Workers: num("workers"), MaxInstances: maxInst,
		SkipBad: configs.Get[bool](store, "skip_bad"),
		Transform: transforms.Compose(
			resizeShortestEdge{Sizes: minTrain, MaxSize: num("max_size_train"), Canvas: canvas},
			transforms.HFlip{P: flt("hflip")},
			recordInputSize,
			transforms.Pad{W: canvas[1], H: canvas[0]},
		),
	})
	if err != nil {
		return InstsegResult{}, err
	}
	lossFn := func(scope *model.Scope, in []*Node) map[string]*Node {
		images, boxes, cls, masks, sizes := in[0], in[1], in[2], in[3], in[4]
		scope = scope.In("model")
		gt := maskrcnn.GroundTruth{Boxes: boxes, Classes: cls, Masks: masks, ImageSizes: sizes}
		return maskrcnn.Losses(scope, setup.features(scope, images, sizes), images, gt, cfg)
	}

	// Create the variables, then load the initial backbone (only at the start of a run).
	h, w := canvas[0], canvas[1]
	inShapes := []shapes.Shape{
		shapes.Make(dtypes.Float32, bs, h, w, 3), shapes.Make(dtypes.Float32, bs, maxInst, 4), shapes.Make(dtypes.Int32, bs, maxInst),
		shapes.Make(dtypes.Uint8, bs, maxInst, h, w), shapes.Make(dtypes.Int32, bs, 2),
	}
	if err := train.Seed(store, int64(num("seed"))); err != nil {
		return InstsegResult{}, err
	}
	if err := train.Declare(b, store, inShapes, func(scope *model.Scope, in []*Node) { lossFn(scope, in) }); err != nil {
		return InstsegResult{}, err
	}
	if train.CurrentStep(store) == 0 && str("init") != "random" {
		n, err := train.LoadScope(store, str("init"), train.LoadSpec{From: str("init_scope"), To: "/model/backbone", Skip: []string{"head/*"}, Strict: true})
		if err != nil {
			return InstsegResult{}, fmt.Errorf("init: %w", err)
		}
		fmt.Fprintf(log, "initialised the backbone from %s (%d variables of %s)\n", str("init"), n, str("init_scope"))
	}

	sched, steps, desc, err := instsegSchedule(store, bs)
	if err != nil {
		return InstsegResult{}, err
	}
	fmt.Fprintln(log, desc)
	it := trainLoader.IterateFrom(train.CurrentStep(store))
	defer it.Close()
	next := func() ([]*tensors.Tensor, error) {
		batch, err := it.Next()
		if err != nil {
			return nil, err
		}
		sizes, err := batchSizes(batch)
		if err != nil {
			return nil, err
		}
		// The padding samples of an epoch's last batch repeat real ones and are trained on:
		// detectron2's infinite sampler has no partial batches.
		return []*tensors.Tensor{batch.Images, batch.Boxes, trainingClasses(batch), batch.Masks, sizes}, nil
	}
	tr, err := train.NewTrainer(b, store, train.Config{
		Optimizer: train.OptimizerConfig{Name: str("optimizer"), WeightDecay: flt("weight_decay"), Momentum: flt("momentum")},
		Schedule:  sched,
		ClipNorm:  flt("clip_norm"),
		Train:     []string{"/model"},
		Frozen:    frozenBackbone(setup.frozen),
		LRMult:    backboneLRMult(flt("backbone_lr_mult")),
	}, lossFn)
	if err != nil {
		return InstsegResult{}, err
	}
	sum, err := train.Run(tr, store, next, train.LoopConfig{
		Steps: steps, Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: bs, Title: fmt.Sprintf("Mask R-CNN %s on %s", str("backbone"), trainDS.Name()), Out: log,
	})
	if err != nil {
		return InstsegResult{}, err
	}
	res := InstsegResult{Classes: classes, LabeledImages: trainDS.Len(), Checkpoint: sum.Checkpoint, TrainTime: sum.Elapsed, Skipped: trainLoader.SkippedLines()}
	if st := trainLoader.Stats(); st.TruncatedInstances > 0 {
		fmt.Fprintf(log, "%d training instances beyond max_instances=%d were left out\n", st.TruncatedInstances, maxInst)
	}

	t1 := time.Now()
	ev, err := evaluateInstseg(b, store, setup, valDS, num("workers"), num("overlays"), outDir, log)
	ev.Classes, ev.LabeledImages, ev.Checkpoint, ev.TrainTime, ev.Skipped = res.Classes, res.LabeledImages, res.Checkpoint, res.TrainTime, res.Skipped
	ev.EvalTime = time.Since(t1)
	return ev, err
}

// instsegConfig is maskrcnn.Default with the head settings of the store and numClasses.
func instsegConfig(store *model.Store, numClasses int) (maskrcnn.Config, error) {
	num := func(k string) int { return configs.Get[int](store, k) }
	pre, post := configs.Get[[]int](store, "rpn_pre_nms_topk"), configs.Get[[]int](store, "rpn_post_nms_topk")
	if len(pre) != 2 || len(post) != 2 {
		return maskrcnn.Config{}, fmt.Errorf("rpn_pre_nms_topk %v and rpn_post_nms_topk %v must be (train, test) pairs", pre, post)
	}
	cfg := maskrcnn.Default()
	cfg.NumClasses = numClasses
	cfg.FPNChannels = num("fpn_channels")
	cfg.AnchorSizes = slices.Clone(configs.Get[[]float64](store, "anchor_sizes"))
	cfg.RPNBatchSizePerImage = num("rpn_batch")
	cfg.RPNPreNMSTopKTrain, cfg.RPNPreNMSTopKTest = pre[0], pre[1]
	cfg.RPNPostNMSTopKTrain, cfg.RPNPostNMSTopKTest = post[0], post[1]
	cfg.ROIBatchSizePerImage = num("roi_batch")
	cfg.CanonicalBoxSize = configs.Get[float64](store, "canonical_box_size")
	cfg.BoxHeadFCDim = num("box_fc_dim")
	cfg.MaskHeadConvDim = num("mask_conv_dim")
	cfg.DetectionsPerImage = num("detections")
	cfg.TestCandidates = num("test_candidates")
	if cfg.FPNChannels < 1 {
		return cfg, fmt.Errorf("fpn_channels must be >= 1, got %d", cfg.FPNChannels)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("Mask R-CNN settings (fpn_channels, anchor_sizes, rpn_*, roi_batch, ...): %w", err)
	}
	return cfg, nil
}

// instsegSchedule returns the store's learning-rate schedule for a batch size, its number of
// steps and a line describing it. A detectron2 schedule (maskrcnn.Schedules: 1x, 2x, 3x) is
// scaled to the batch and becomes a multistep schedule with detectron2's linear warm-up.
func instsegSchedule(store *model.Store, batch int) (train.Schedule, int64, string, error) {
	name := configs.Get[string](store, "schedule")
	lr := configs.Get[float64](store, "lr")
	if lr < 0 {
		return train.Schedule{}, 0, "", fmt.Errorf("lr must be >= 0, got %g", lr)
	}
	if opt := strings.ToLower(configs.Get[string](store, "optimizer")); lr == 0 && opt != "sgd" {
		return train.Schedule{}, 0, "", fmt.Errorf("lr = 0 (detectron2's SGD learning rate scaled to the batch) is for optimizer sgd: set lr for %s", opt)
	}
	if d, ok := maskrcnn.Schedules[name]; ok {
		d, err := d.Scaled(batch)
		if err != nil {
			return train.Schedule{}, 0, "", err
		}
		if lr > 0 {
			d.BaseLR = lr
		}
		s := train.Schedule{Kind: "multistep", BaseLR: d.BaseLR, Milestones: d.Steps, Gamma: d.Gamma,
			WarmupSteps: d.WarmupIters, WarmupFactor: d.WarmupFactor}
		desc := fmt.Sprintf("schedule %s at batch %d: %d iterations, lr %g, x%g at %v, warm-up %d iterations from x%g (steps, warmup, min_lr unused)",
			name, batch, d.MaxIter, d.BaseLR, d.Gamma, d.Steps, d.WarmupIters, d.WarmupFactor)
		return s, int64(d.MaxIter), desc, s.Validate()
	}
	switch strings.ToLower(name) {
	case "cosine", "poly", "constant":
	default:
		known := []string{"cosine", "poly", "constant"}
		for k := range maskrcnn.Schedules {
			known = append(known, k)
		}
		slices.Sort(known)
		return train.Schedule{}, 0, "", fmt.Errorf("unknown schedule %q: known schedules are %s", name, strings.Join(known, ", "))
	}
	if lr == 0 {
		ref, err := maskrcnn.Schedules["1x"].Scaled(batch)
		if err != nil {
			return train.Schedule{}, 0, "", err
		}
		lr = ref.BaseLR
	}
	steps := configs.Get[int](store, "steps")
	if steps <= 0 {
		return train.Schedule{}, 0, "", fmt.Errorf("steps must be > 0, got %d", steps)
	}
	s := train.Schedule{Kind: name, BaseLR: lr, MinLR: configs.Get[float64](store, "min_lr"), WarmupSteps: configs.Get[int](store, "warmup"), TotalSteps: steps}
	desc := fmt.Sprintf("schedule %s: %d steps, lr %g, warm-up %d", name, steps, lr, s.WarmupSteps)
	return s, int64(steps), desc, s.Validate()
}

// resizeShortestEdge is detectron2's ResizeShortestEdge (sample_style "choice"): the shorter
// side becomes one of Sizes, drawn per image, unless the longer one would then exceed MaxSize
// (then the longer one is MaxSize). An image that would not fit Canvas (height, width) is
// shrunk to fit it.
type resizeShortestEdge struct {
	Sizes   []int
	MaxSize int
	Canvas  [2]int
}

// Apply implements transforms.Transform.
func (t resizeShortestEdge) Apply(s *datasets.Sample, rng *rand.Rand) error {
	size := t.Sizes[0]
	if len(t.Sizes) > 1 {
		size = t.Sizes[rng.IntN(len(t.Sizes))]
	}
	h, w := shortestEdgeShape(s.Image.H, s.Image.W, size, t.MaxSize)
	if h > t.Canvas[0] || w > t.Canvas[1] {
		f := min(float64(t.Canvas[0])/float64(s.Image.H), float64(t.Canvas[1])/float64(s.Image.W))
		h = min(max(1, int(float64(s.Image.H)*f+0.5)), t.Canvas[0])
		w = min(max(1, int(float64(s.Image.W)*f+0.5)), t.Canvas[1])
	}
	if h == s.Image.H && w == s.Image.W {
		return nil
	}
	return transforms.Resize(s, w, h)
}

// shortestEdgeShape is detectron2's ResizeShortestEdge.get_output_shape.
func shortestEdgeShape(h, w, short, maxSize int) (newH, newW int) {
	scale := float64(short) / float64(min(h, w))
	var nh, nw float64
	if h < w {
		nh, nw = float64(short), scale*float64(w)
	} else {
		nh, nw = scale*float64(h), float64(short)
	}
	if m := math.Max(nh, nw); m > float64(maxSize) {
		scale = float64(maxSize) / m
		nh, nw = nh*scale, nw*scale
	}
	return max(1, int(nh+0.5)), max(1, int(nw+0.5))
}

// recordInputSize stores the size of the resized image, before padding to the canvas, in the
// sample's Label (unused by instance segmentation datasets), which the loader carries into the
// batch (Batch.Labels): the model needs it as detectron2's image_sizes.
var recordInputSize = transforms.Func(func(s *datasets.Sample, _ *rand.Rand) error {
	if s.Image.H >= 1<<15 || s.Image.W >= 1<<16 {
		return fmt.Errorf("%s: image of %dx%d is too large", s.Path, s.Image.W, s.Image.H)
	}
	s.Label = s.Image.H<<16 | s.Image.W
	return nil
})

// batchSizes returns the (height, width) recorded by recordInputSize for each sample of the
// batch, as an int32 tensor [N, 2].
func batchSizes(b *loader.Batch) (*tensors.Tensor, error) {
	labels := tensors.MustCopyFlatData[int32](b.Labels)
	out := make([]int32, 2*len(labels))
	for i, l := range labels {
		if l <= 0 {
			return nil, fmt.Errorf("%s: no input size recorded (label %d)", b.Paths[i], l)
		}
		out[2*i], out[2*i+1] = l>>16, l&0xffff
	}
	return tensors.FromFlatDataAndDimensions(out, len(labels), 2), nil
}

// trainingClasses are the batch's instance classes with crowd regions removed (-1), as
// detectron2's dataset mapper drops iscrowd annotations for training.
func trainingClasses(b *loader.Batch) *tensors.Tensor {
	cls := tensors.MustCopyFlatData[int32](b.Classes)
	crowd := tensors.MustCopyFlatData[int32](b.Crowd)
	for i := range cls {
		if crowd[i] != 0 {
			cls[i] = -1
		}
	}
	return tensors.FromFlatDataAndDimensions(cls, b.Classes.Shape().Dimensions...)
}

// datasetCategoryIDs are the COCO category ids of a dataset's classes: its own for COCO-format
// datasets, 1..K otherwise.
func datasetCategoryIDs(ds datasets.Dataset) []int64 {
	if c, ok := ds.(interface{ CategoryIDs() []int64 }); ok {
		return c.CategoryIDs()
	}
	ids := make([]int64, len(ds.Classes()))
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	return ids
}

// datasetImageID is the COCO image id of sample i: the annotation file's for COCO-format
// datasets, i+1 otherwise.
func datasetImageID(ds datasets.Dataset, i int) int64 {
	if c, ok := ds.(interface{ ImageInfo(int) cocodata.Image }); ok {
		return c.ImageInfo(i).ID
	}
	return int64(i + 1)
}
