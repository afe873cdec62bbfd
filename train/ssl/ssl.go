// Package ssl pre-trains a backbone with a self-supervised baseline of the paper's tables (MoCo
// v2, BYOL), on the same unlabeled images and with the same registry backbone as the
// distillation, so that `dreamteacher finetune --set init=<checkpoint>` compares it with
// DreamTeacher directly.
//
// MoCo v2 (He et al. 2020, "Momentum Contrast"; Chen et al. 2020, "Improved Baselines with
// Momentum Contrastive Learning"; facebookresearch/moco): two augmented views x_q, x_k of each
// image; the query encoder f_q (backbone, global average pool, 2-layer MLP projector, L2
// normalisation) embeds x_q, the key encoder f_k — the same network with other weights —
// embeds x_k; the loss is InfoNCE (losses/contrastive) of each query against its key and a
// queue of K keys of earlier batches:
//
//	L_q = -log exp(q·k₊/τ) / (exp(q·k₊/τ) + Σ_{i=1..K} exp(q·k_i/τ)),  τ = 0.2
//	θ_k ← m θ_k + (1 - m) θ_q,  m = 0.999
//
// the momentum update coming before the keys are computed, with θ_q as it is before this
// step's SGD update (MoCo's forward); then the batch's N keys replace the N oldest of the queue
// (a ring buffer: pointer ← (pointer + N) mod K).
//
// SGD, lr 0.03 × batch/256, momentum 0.9, weight decay 1e-4, cosine decay (200 or 800 ImageNet
// epochs in MoCo v2); augmentation transforms.SSLView (MoCoV2View) per view. One compiled graph per step
// holds the momentum update, both encoders, the loss, the backward pass, the SGD update and
// the enqueue.
//
// What the papers leave to the code, and what we do:
//
//   - The key encoder starts as a copy of the query encoder (MoCo copies the parameters): the
//     first step's momentum update sets θ_k = θ_q exactly (a flag under MoCoScope says
//     whether it has started), after which θ_k follows the formula. Only trainable weights
//     follow θ_q: the key encoder's BatchNorm running statistics are its own (MoCo updates
//     parameters(), not buffers). Keys get no gradient; the trainer optimises StudentScope only
//     and the key variables are not trainable.
//   - Shuffle BN. MoCo computes BatchNorm per GPU (8 GPUs of 32) and, for the key encoder,
//     shuffles the batch across GPUs, so that a query's and its positive key's batch
//     statistics come from different subsets; with plain BatchNorm the network "cheats" by
//     recognising the statistics of its own batch (MoCo §3.3): the positive shares them, the
//     queue's keys do not. One device still has that leak (the query batch and the key batch
//     are the same images), so we emulate the GPUs: bn_splits = G splits the batch into G
//     parts, each normalised with its own statistics (nn.SplitBatchNorm), in both encoders; the
//     key encoder's batch is reordered by a fixed interleave (part g gets images g, g+G,
//     g+2G, ...), where the query's parts are contiguous, and put back in order after. The
//     loader draws a new random order every epoch, so a fixed interleave of a random order is a
//     random shuffle; a query's and its key's parts share 1/G of their images, as with G GPUs.
//     bn_splits = 1 is plain per-batch BatchNorm (SyncBN in effect), without the emulation.
//   - Queue size. K = 65536 keys is 5% of an ImageNet epoch: a query's own image is almost
//     never among its negatives. The queue must stay well below the dataset (CamVid has 367
//     training frames: configs/camvid_mocov2.conf uses K = 256) or it holds earlier views of the
//     query's own image as negatives. The queue starts as random unit vectors (MoCo's randn,
//     normalised). K need not be a multiple of the batch (MoCo asserts it is): the enqueue wraps
//     around the end of the ring.
//   - The projector's hidden width is the backbone's pooled width (MoCo's dim_mlp: 2048 for
//     ResNet-50, 512 for ResNet-18), output 128 (models/heads/projector).
//   - lr 0 means MoCo's 0.03 per 256 images, scaled linearly to the batch. The cosine decays
//     per step, not per epoch as main_moco.py does (the same curve, without its steps).
//     Weight decay skips biases and normalisation parameters (train.Decays, as every recipe
//     here); MoCo decays them too.
//   - The Gaussian blur's sigma is in pixels (0.1-2 at 224x224); configs at other sizes scale
//     it with the crop.
//
// BYOL (Grill et al. 2020, "Bootstrap your own latent"; deepmind-research/byol), ssl_method
// byol: the online network (backbone, projector fc-BN-ReLU-fc 4096→256, predictor of the same
// shape) predicts, from each view, the target network's projection of the other view; the
// target is the online backbone and projector under a moving average whose momentum rises
// from τ_base = 0.996 to 1 along a cosine over the run (Tau); the loss is byol.Symmetric
// (2 − 2 cos per pair, both directions); LARS, lr 0.2 × batch/256, weight decay 1.5e-6 (biases
// and normalisation parameters excluded from it and from the trust ratio), cosine decay with
// warm-up; the two views are augmented differently (transforms.BYOLViews: blur 1.0 and 0.1,
// solarisation 0 and 0.2). What we do where the paper leaves it open, or differs:
//
//   - The target is updated at the start of each step from the online weights before the
//     step's update, with τ of that step: the same sequence as BYOL's update after each step.
//     The first step's update is the copy (as MoCo's).
//   - BatchNorm: BYOL's is synchronised over the whole batch, so bn_splits = 1; each view goes
//     through the online and the target network separately (two passes each), so the running
//     statistics move twice per step.
//   - key_momentum is τ_base; queue and temperature are unused.
//
// Checkpoint scopes: the query encoder's backbone is under BackboneScope, which is
// distill.BackboneScope — the scope fine-tuning's init_scope reads by default, so a MoCo
// checkpoint initialises `finetune --set init=<checkpoint>` exactly as a distilled one does;
// the projector under ProjectorScope, BYOL's predictor under PredictorScope, the key (target)
// encoder under KeyScope, MoCo's queue under MoCoScope. All of them are saved: a run resumes
// exactly.
package ssl

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	"github.com/dreamteacher-go/dreamteacher/losses/byol"
	"github.com/dreamteacher-go/dreamteacher/losses/contrastive"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/heads/projector"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/distill"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Scopes of the checkpoint.
const (
	StudentScope   = distill.StudentScope  // the query encoder, trained
	BackboneScope  = distill.BackboneScope // its backbone: what fine-tuning loads
	ProjectorScope = StudentScope + "/projector"
	PredictorScope = StudentScope + "/predictor" // BYOL's
	KeyScope       = "/key"                      // MoCo's key encoder, BYOL's target: backbone and projector, and "started"
	MoCoScope      = "/moco"                     // MoCo's queue and queue_ptr
)

// Defaults are the settings of MoCo v2 pre-training (a CPU-sized run; configs/*_mocov2.conf and
// *_byol.conf give the experiments). Settings that one method does not use: queue and
// temperature (MoCo's only).
func Defaults() map[string]any {
	return map[string]any{
		"ssl_method": "mocov2", // or "byol"
		"dataset":    "imagefolder",
		"data":       "",
		"split":      "train",
		"size":       []int{64, 64}, // each view (height, width)
		// The augmentation of each view (transforms.SSLView): MoCo v2's; blur_p and
		// solarize_p per view (BYOL's views differ: 1,0.1 and 0,0.2).
		"crop_scale": []float64{0.2, 1},             // RandomResizedCrop area fraction
		"jitter":     []float64{0.4, 0.4, 0.4, 0.1}, // brightness, contrast, saturation, hue
		"jitter_p":   0.8,
		"gray_p":     0.2,
		"blur_sigma": []float64{0.1, 2}, // pixels (MoCo's at 224x224)
		"blur_p":     []float64{0.5, 0.5},
		"solarize_p": []float64{0, 0},
		"flip":       true,
		"backbone":   "resnet18",
		"small_stem": false,
		// The projector: hidden width (0: the backbone's pooled width, MoCo's dim_mlp; BYOL:
		// 4096, its predictor's too) and output dimension (BYOL: 256).
		"proj_hidden":      0,
		"proj_dim":         128,
		"queue":            4096,  // K negative keys (paper: 65536 on ImageNet)
		"key_momentum":     0.999, // MoCo's m; BYOL's τ_base (0.996), raised to 1 by a cosine
		"temperature":      contrastive.MoCoV2Tau,
		"bn_splits":        2, // BatchNorm parts of the batch: shuffle BN on one device (1: plain BN)
		"batch":            32,
		"steps":            1000,
		"optimizer":        "sgd",
		"lr":               0.0, // 0: 0.03 (MoCo, SGD) or 0.2 (BYOL, LARS) per 256 images, scaled to the batch
		"momentum":         0.9, // the optimiser's
		"weight_decay":     1e-4,
		"schedule":         "cosine",
		"warmup":           0,
		"min_lr":           0.0,
		"clip":             0.0,
		"seed":             0,
		"skip_bad":         false, // leave out training images that fail to load (listed in Skipped)
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        10,
	}
}

// Result is what a pre-training run produced.
type Result struct {
	Skipped    []string // training images left out under skip_bad, "path: error"
	Checkpoint string
	Steps      int64
	FirstLoss  float64
	LastLoss   float64
	LastAcc    float64 // MoCo: instance-discrimination top-1 accuracy of the last step
	TrainTime  time.Duration
	LR         float64 // the peak learning rate (lr, or the method's rule)
}

// LR is the peak learning rate of the store's settings: lr, or with lr = 0 the method's base
// rate per 256 images scaled linearly to the batch (MoCo v2: 0.03 with SGD; BYOL: 0.2 with
// LARS).
func LR(store *model.Store) float64 {
	if lr := configs.Get[float64](store, "lr"); lr > 0 {
		return lr
	}
	base := 0.03
	if configs.Get[string](store, "ssl_method") == "byol" {
		base = 0.2
	}
	return base * float64(configs.Get[int](store, "batch")) / 256
}

// Augmentation makes the two views of each image on the store's settings (size, crop_scale,
// jitter, jitter_p, gray_p, blur_sigma, blur_p and solarize_p per view, flip).
func Augmentation(store *model.Store) (transforms.Views, error) {
	size := configs.Get[[]int](store, "size")
	two := func(k string) ([2]float64, error) {
		v := configs.Get[[]float64](store, k)
		if len(v) != 2 {
			return [2]float64{}, fmt.Errorf("setting %s = %v: want two numbers", k, v)
		}
		return [2]float64{v[0], v[1]}, nil
	}
	scale, err := two("crop_scale")
	if err != nil {
		return nil, err
	}
	sigma, err := two("blur_sigma")
	if err != nil {
		return nil, err
	}
	j := configs.Get[[]float64](store, "jitter")
	if len(j) != 4 {
		return nil, fmt.Errorf("setting jitter = %v: want brightness,contrast,saturation,hue", j)
	}
	blur, err := two("blur_p")
	if err != nil {
		return nil, err
	}
	solarize, err := two("solarize_p")
	if err != nil {
		return nil, err
	}
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	views := make(transforms.Views, 2)
	for v := range views {
		cfg := transforms.SSLViewConfig{Scale: scale, Jitter: [4]float64{j[0], j[1], j[2], j[3]}, JitterP: flt("jitter_p"),
			GrayP: flt("gray_p"), BlurSigma: sigma, BlurP: blur[v], SolarizeP: solarize[v]}
		if configs.Get[bool](store, "flip") {
			cfg.FlipP = 0.5
		}
		views[v] = transforms.SSLView(size[1], size[0], cfg)
	}
	return views, nil
}

// Run pre-trains the backbone on the store's settings (see Defaults), writing checkpoints,
// metrics and the loss curves under outDir. A store restored from a checkpoint of outDir
// resumes.
func Run(b compute.Backend, store *model.Store, outDir string, log io.Writer) (Result, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	step, err := NewStep(store)
	if err != nil {
		return Result{}, err
	}
	ds, err := datasets.Open(str("dataset"), str("data"), str("split"), datasets.Options{})
	if err != nil {
		return Result{}, err
	}
	views, err := Augmentation(store)
	if err != nil {
		return Result{}, err
	}
	bs := num("batch")
	ld, err := loader.New(ds, loader.Config{BatchSize: bs, Transform: views, Shuffle: true,
		Seed: int64(num("seed")), Workers: num("workers"), SkipBad: configs.Get[bool](store, "skip_bad")})
	if err != nil {
		return Result{}, err
	}

	if err := train.Seed(store, int64(num("seed"))); err != nil {
		return Result{}, err
	}
	if err := train.Declare(b, store, []shapes.Shape{step.Input}, func(scope *model.Scope, in []*Node) { step.Loss(scope, in) }); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(log, "%s: %s, BatchNorm in %d parts, lr %.4g, on %s (%d images)\n", step.Describe, str("backbone"),
		num("bn_splits"), LR(store), ds.Name(), ds.Len())

	tr, err := train.NewTrainer(b, store, step.Trainer, step.Loss)
	if err != nil {
		return Result{}, err
	}
	it := ld.IterateFrom(train.CurrentStep(store))
	defer it.Close()
	sum, err := train.Run(tr, store, it.Feed(loader.ImagesOnly), train.LoopConfig{
		Steps: int64(num("steps")), Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: bs, Title: fmt.Sprintf("%s %s on %s", str("ssl_method"), str("backbone"), ds.Name()), Out: log,
	})
	if err != nil {
		return Result{}, err
	}
	res := Result{Checkpoint: sum.Checkpoint, Steps: sum.Steps, LastLoss: sum.Last.Loss(), LastAcc: sum.Last.Terms[contrastive.KeyAcc],
		TrainTime: sum.Elapsed, LR: LR(store), Skipped: ld.SkippedLines()}
	if records, err := train.ReadMetrics(sum.Metrics); err == nil && len(records) > 0 {
		res.FirstLoss = records[0]["loss"]
	}
	return res, nil
}

// Step is one training step as Run builds it.
type Step struct {
	Input    shapes.Shape // the batch: two views stacked, [batch, 2·height, width, 3] in [0, 1]
	Loss     train.LossFn // MoCo.Loss or BYOL.Loss
	Trainer  train.Config // the optimiser on StudentScope
	Describe string       // the method and its parameters, for the log
}

// NewStep builds the step of the store's ssl_method on its settings, without a dataset (the
// tests check it on their own batches).
func NewStep(store *model.Store) (*Step, error) {
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	size := configs.Get[[]int](store, "size")
	if len(size) != 2 {
		return nil, fmt.Errorf("size must be (height, width), got %v", size)
	}
	bs, splits := num("batch"), max(num("bn_splits"), 1)
	if bs%splits != 0 {
		return nil, fmt.Errorf("batch %d does not split into bn_splits = %d equal parts", bs, splits)
	}
	entry, err := backbones.Get(configs.Get[string](store, "backbone"))
	if err != nil {
		return nil, err
	}
	enc := Encoder{Backbone: entry, Options: backbones.Options{SmallInputStem: configs.Get[bool](store, "small_stem")},
		Hidden: num("proj_hidden"), Dim: num("proj_dim")}
	var loss train.LossFn
	var describe string
	switch method := configs.Get[string](store, "ssl_method"); method {
	case "mocov2":
		if k := num("queue"); k < bs {
			return nil, fmt.Errorf("queue %d is smaller than the batch %d: one step's keys would overwrite each other", k, bs)
		}
		m := MoCo{Encoder: enc, QueueSize: num("queue"), Momentum: flt("key_momentum"), Tau: flt("temperature"), Splits: splits}
		loss, describe = m.Loss, fmt.Sprintf("MoCo v2 (queue %d, m %g, τ %g)", m.QueueSize, m.Momentum, m.Tau)
	case "byol":
		enc.BatchNorm = true
		b := BYOL{Encoder: enc, TauBase: flt("key_momentum"), Steps: num("steps"), Splits: splits}
		loss, describe = b.Loss, fmt.Sprintf("BYOL (τ_base %g)", b.TauBase)
	default:
		return nil, fmt.Errorf("ssl_method %q: known methods are mocov2, byol", method)
	}
	return &Step{
		Input:    shapes.Make(dtypes.Float32, bs, 2*size[0], size[1], 3),
		Loss:     loss,
		Describe: describe,
		Trainer: train.Config{
			Optimizer: train.OptimizerConfig{Name: configs.Get[string](store, "optimizer"), WeightDecay: flt("weight_decay"), Momentum: flt("momentum")},
			Schedule: train.Schedule{Kind: configs.Get[string](store, "schedule"), BaseLR: LR(store), MinLR: flt("min_lr"),
				WarmupSteps: num("warmup"), TotalSteps: num("steps")},
			ClipNorm: flt("clip"),
			Train:    []string{StudentScope},
		},
	}, nil
}

// Encoder is MoCo's f_q and f_k, BYOL's online and target networks without the predictor: the
// backbone on ImageNet-normalised images, the global average pool of its last level, the
// projector.
type Encoder struct {
	Backbone  backbones.Entry
	Options   backbones.Options
	Hidden    int  // projector hidden width (0: the pooled width)
	Dim       int  // output dimension
	BatchNorm bool // BatchNorm in the projector (BYOL's)
}

// Build projects images [N, H, W, 3] in [0, 1] under scope (backbone under "backbone",
// projector under "projector"): [N, Dim].
func (e Encoder) Build(scope *model.Scope, images *Node) *Node {
	feats := e.Backbone.Build(scope.In("backbone"), backbones.Normalize(images), e.Options).Features
	return projector.New(scope.In("projector"), nn.GlobalAvgPool(feats.Last()), e.Dim).Hidden(e.Hidden).BatchNorm(e.BatchNorm).Done()
}

// splitViews cuts the stacked views [N, 2H, W, 3] (transforms.Views) into view 0 and view 1.
func splitViews(x *Node) (*Node, *Node) {
	n, h2, w := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2)
	views := Reshape(x, n, 2, h2/2, w, 3)
	return Reshape(Slice(views, AxisRange(), AxisRange(0, 1)), n, h2/2, w, 3),
		Reshape(Slice(views, AxisRange(), AxisRange(1, 2)), n, h2/2, w, 3)
}

// started is the flag of the momentum encoder's first update (the copy): false until the first
// step, true after.
func started(store *model.Store, g *Graph) *Node {
	v := store.VariableWithValue(KeyScope+"/started", false).SetTrainable(false)
	s := v.NodeValue(g)
	v.SetNodeValue(OnesLike(s))
	return s
}

// MoCo is the MoCo v2 step's graph (see the package doc).
type MoCo struct {
	Encoder   Encoder
	QueueSize int     // K
	Momentum  float64 // m
	Tau       float64 // τ
	Splits    int     // BatchNorm parts (shuffle BN); <= 1: plain BatchNorm
}

// Loss is the train.LossFn of the step: in[0] holds the two views stacked vertically, [N,
// 2H, W, 3] (transforms.Views). In order: the query encoder on view 0; the momentum update
// of the key encoder from the query encoder's current weights; the key encoder on view 1
// (interleaved into its BatchNorm parts and back); InfoNCE against the queue; the keys
// enqueued. Terms: "loss", contrastive.KeyAcc.
func (m MoCo) Loss(scope *model.Scope, in []*Node) map[string]*Node {
	g := in[0].Graph()
	store := scope.Store()
	xq, xk := splitViews(in[0])

	qScope := scope.In("%s", strings.TrimPrefix(StudentScope, "/"))
	kScope := scope.In("%s", strings.TrimPrefix(KeyScope, "/"))
	if m.Splits > 1 {
		nn.SplitBatchNorm(qScope, m.Splits)
		nn.SplitBatchNorm(kScope, m.Splits)
	}
	q := L2Normalize(m.Encoder.Build(qScope, xq), -1)

	MomentumUpdate(store, g, StudentScope, KeyScope, Scalar(g, dtypes.Float64, m.Momentum), started(store, g))
	k := StopGradient(L2Normalize(Deinterleave(m.Encoder.Build(kScope, Interleave(xk, m.Splits)), m.Splits), -1))

	queue := store.VariableWithShape(MoCoScope+"/queue", shapes.Make(q.DType(), m.QueueSize, q.Shape().Dim(1)),
		func(g *Graph, shape shapes.Shape) *Node { return L2Normalize(store.RandomNormal(g, shape), -1) }).SetTrainable(false)
	ptr := store.VariableWithValue(MoCoScope+"/queue_ptr", int64(0)).SetTrainable(false)
	terms := contrastive.Loss(q, k, queue.NodeValue(g), m.Tau)
	newQueue, newPtr := Enqueue(queue.NodeValue(g), ptr.NodeValue(g), k)
	queue.SetNodeValue(newQueue)
	ptr.SetNodeValue(newPtr)
	return terms
}

// MomentumUpdate sets, in graph g, every trainable floating-point variable under keyScope to
// m·key + (1-m)·query, query being the variable at the same path under queryScope (its value
// before this step's update), or to query itself while started is false (the copy that starts
// the key encoder). m is a float64 scalar; m and 1-m are rounded to each variable's dtype. The
// query variables must exist (build the query encoder first); the key variables are created,
// not trainable, where missing. No gradient flows through the update.
func MomentumUpdate(store *model.Store, g *Graph, queryScope, keyScope string, m, started *Node) {
	var query []*model.Variable
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), queryScope+"/") && v.Trainable && v.DType().IsFloat() && v.InUseByGraph(g) {
			query = append(query, v)
		}
	}
	if len(query) == 0 {
		exceptions.Panicf("MomentumUpdate: no variable under %s in this graph: build the query encoder first", queryScope)
	}
	sort.Slice(query, func(i, j int) bool { return query[i].Path() < query[j].Path() })
	for _, qVar := range query {
		kVar := store.VariableWithShape(keyScope+strings.TrimPrefix(qVar.Path(), queryScope), qVar.Shape(), Zeros).SetTrainable(false)
		qv, kv := StopGradient(qVar.NodeValue(g)), kVar.NodeValue(g)
		mk, mq := ConvertDType(m, qv.DType()), ConvertDType(OneMinus(m), qv.DType())
		kVar.SetNodeValue(Where(started, Add(Mul(kv, mk), Mul(qv, mq)), qv))
	}
}

// BYOL is the BYOL step's graph (see the package doc).
type BYOL struct {
	Encoder Encoder // the online and target networks' backbone and projector (with BatchNorm)
	TauBase float64 // τ_base
	Steps   int     // K, the steps of the τ schedule
	Splits  int     // BatchNorm parts; <= 1: plain BatchNorm (BYOL's)
}

// Tau is BYOL's target momentum at the 0-based step k of K: 1 - (1 - τ_base)·(cos(πk/K) + 1)/2,
// from τ_base to 1 (a float64 scalar; k is clipped to K).
func Tau(k *Node, tauBase float64, steps int) *Node {
	p := ClipScalar(DivScalar(ConvertDType(k, dtypes.Float64), float64(max(steps, 1))), 0, 1)
	return OneMinus(MulScalar(OnePlus(Cos(MulScalar(p, math.Pi))), (1-tauBase)/2))
}

// Loss is the train.LossFn of the step: in[0] holds the two views stacked vertically, [N, 2H,
// W, 3] (transforms.Views). The online network (backbone, projector, predictor under
// StudentScope) predicts on both views; the target network under KeyScope, updated first by
// Tau of the step from the online backbone and projector, projects both; the loss is
// byol.Symmetric. Terms: "loss".
func (b BYOL) Loss(scope *model.Scope, in []*Node) map[string]*Node {
	g := in[0].Graph()
	store := scope.Store()
	x1, x2 := splitViews(in[0])
	name := func(s string) string { return strings.TrimPrefix(s, "/") }
	online := []*model.Scope{scope.In("%s", name(StudentScope)), scope.At("%s", name(StudentScope))}
	target := []*model.Scope{scope.In("%s", name(KeyScope)), scope.At("%s", name(KeyScope))}
	if b.Splits > 1 {
		nn.SplitBatchNorm(online[0], b.Splits)
		nn.SplitBatchNorm(target[0], b.Splits)
	}
	predict := func(s *model.Scope, x *Node) *Node {
		z := b.Encoder.Build(s, x)
		return projector.New(s.In("predictor"), z, b.Encoder.Dim).Hidden(b.Encoder.Hidden).BatchNorm(true).Done()
	}
	q1, q2 := predict(online[0], x1), predict(online[1], x2)

	step := store.VariableWithValue(train.StepVar, int64(0)).SetTrainable(false).NodeValue(g)
	tau, first := Tau(step, b.TauBase, b.Steps), started(store, g)
	for _, sub := range []string{"/backbone", "/projector"} {
		MomentumUpdate(store, g, StudentScope+sub, KeyScope+sub, tau, first)
	}
	project := func(s *model.Scope, x *Node) *Node {
		return StopGradient(Deinterleave(b.Encoder.Build(s, Interleave(x, b.Splits)), b.Splits))
	}
	z1, z2 := project(target[0], x1), project(target[1], x2)
	return map[string]*Node{"loss": byol.Symmetric(q1, z2, q2, z1)}
}

// Enqueue writes keys [N, D] into the ring queue [K, D] at rows ptr, ptr+1, ..., ptr+N-1
// (mod K, wrapping around the end) over the oldest keys, and returns the new queue and pointer
// (ptr + N) mod K (an int64 scalar). N must not exceed K.
func Enqueue(queue, ptr, keys *Node) (*Node, *Node) {
	k, n := queue.Shape().Dim(0), keys.Shape().Dim(0)
	if n > k || keys.Rank() != 2 || queue.Rank() != 2 || keys.Shape().Dim(1) != queue.Shape().Dim(1) {
		exceptions.Panicf("Enqueue: keys %s into a queue %s: want [N, D] and [K, D] with N <= K", keys.Shape(), queue.Shape())
	}
	g := queue.Graph()
	p := ConvertDType(ptr, dtypes.Int64)
	row := Iota(g, shapes.Make(dtypes.Int64, k), 0)
	offset := ModScalar(AddScalar(Sub(row, p), int64(k)), int64(k)) // row's place in the window from ptr
	inWindow := LessThan(offset, Scalar(g, dtypes.Int64, int64(n)))
	src := Gather(StopGradient(keys), ExpandAxes(Min(offset, Scalar(g, dtypes.Int64, int64(n-1))), -1)) // [K, D]
	mask := BroadcastToDims(ExpandAxes(inWindow, -1), k, queue.Shape().Dim(1))
	newQueue := Where(mask, ConvertDType(src, queue.DType()), queue)
	return newQueue, ConvertDType(ModScalar(AddScalar(p, int64(n)), int64(k)), ptr.DType())
}

// Interleave reorders a batch [N, ...] so that its G contiguous parts hold images g, g+G,
// g+2G, ... (part g, for g < G): the key encoder's shuffle BN (see the package doc). G <= 1
// returns x. Deinterleave puts it back.
func Interleave(x *Node, parts int) *Node {
	if parts <= 1 {
		return x
	}
	n := x.Shape().Dim(0)
	rest := x.Shape().Dimensions[1:]
	y := Reshape(x, append([]int{n / parts, parts}, rest...)...)
	return Reshape(Transpose(y, 0, 1), x.Shape().Dimensions...)
}

// Deinterleave is the inverse of Interleave.
func Deinterleave(x *Node, parts int) *Node {
	if parts <= 1 {
		return x
	}
	n := x.Shape().Dim(0)
	rest := x.Shape().Dimensions[1:]
	y := Reshape(x, append([]int{parts, n / parts}, rest...)...)
	return Reshape(Transpose(y, 0, 1), x.Shape().Dimensions...)
}
