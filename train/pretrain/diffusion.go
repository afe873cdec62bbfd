// Package pretrain trains the generative teachers: the ADM diffusion UNet on unlabeled images
// (this file), and BigGAN (gan.go; its training step, GANTrainer, in gan_step.go),
// class-conditional on a labelled dataset as the paper's ImageNet BigGAN, or unconditional on
// any images. The teacher checkpoint it writes is what distillation loads.
package pretrain

import (
	"fmt"
	"image"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/diffusion"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/viz"
	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Scopes of the teacher checkpoint: the trained UNet and its exponential moving average
// (the weights to sample from and to distil).
const (
	UNetScope = "/unet"
	EMAScope  = "/ema/unet"
)

// DiffusionDefaults are the settings of ADM pre-training (a small CPU-sized run; configs/*.conf
// give the paper's).
func DiffusionDefaults() map[string]any {
	return map[string]any{
		"dataset":          "imagefolder",
		"data":             "",
		"split":            "train",
		"adm":              "adm_tiny",    // registered UNet configuration (models/adm.Configs)
		"size":             []int{64, 64}, // training images (height, width): resized to cover, centre-cropped
		"flip":             true,          // random horizontal flips
		"diffusion_steps":  1000,          // T
		"noise_schedule":   "linear",      // "linear" or "cosine"
		"batch":            16,
		"steps":            2000,
		"lr":               1e-4,
		"weight_decay":     0.0,
		"warmup":           0,
		"ema":              0.999,
		"clip":             1.0,    // gradient norm clipping (0: none)
		"samples":          16,     // images drawn at the end (EMA weights) into samples.png
		"sampler":          "ddpm", // "ddpm" (ancestral, guided-diffusion's default) or "ddim"
		"sample_steps":     100,    // respaced sampling steps
		"seed":             0,
		"skip_bad":         false, // leave out training images that fail to load (listed in Skipped)
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        20,
	}
}

// DiffusionResult is what a pre-training run produced.
type DiffusionResult struct {
	Skipped    []string // training images left out under skip_bad, "path: error"
	Checkpoint string
	Samples    string
	Steps      int64
	LastLoss   float64
	TrainTime  time.Duration
}

// Process returns the diffusion process of the store's settings for UNet configuration cfg.
func Process(store *model.Store, cfg adm.Config) (*diffusion.Diffusion, error) {
	var sched diffusion.Schedule
	switch s := configs.Get[string](store, "noise_schedule"); s {
	case "linear":
		sched = diffusion.Linear
	case "cosine":
		sched = diffusion.Cosine
	default:
		return nil, fmt.Errorf("noise_schedule %q: want linear or cosine", s)
	}
	dc := diffusion.DefaultConfig(cfg.LearnSigma)
	dc.Schedule = sched
	dc.Steps = configs.Get[int](store, "diffusion_steps")
	return diffusion.New(dc)
}

// Cover resizes keeping the aspect ratio so that the image covers h x w, then centre-crops it
// to h x w (guided-diffusion's center_crop_arr for non-square sizes).
func Cover(h, w int) transforms.Transform {
	return transforms.Compose(transforms.Func(func(s *datasets.Sample, _ *rand.Rand) error {
		f := max(float64(w)/float64(s.Image.W), float64(h)/float64(s.Image.H))
		return transforms.Resize(s, max(w, int(float64(s.Image.W)*f+0.5)), max(h, int(float64(s.Image.H)*f+0.5)))
	}), transforms.CenterCrop{W: w, H: h})
}

// Diffusion pre-trains the ADM teacher on the store's settings (see DiffusionDefaults), writing
// checkpoints (the UNet under /unet, its EMA under /ema/unet), metrics, loss curves and a grid
// of samples under outDir. A store restored from a checkpoint of outDir resumes.
func Diffusion(b compute.Backend, store *model.Store, outDir string, log io.Writer) (DiffusionResult, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	step, err := NewDiffusionStep(store)
	if err != nil {
		return DiffusionResult{}, err
	}
	if err := CheckSampler(str("sampler")); err != nil {
		return DiffusionResult{}, err
	}
	cfg, proc, size := step.Config, step.Process, step.Size
	ds, err := datasets.Open(str("dataset"), str("data"), str("split"), datasets.Options{})
	if err != nil {
		return DiffusionResult{}, err
	}
	tf := Cover(size[0], size[1])
	if configs.Get[bool](store, "flip") {
		tf = transforms.Compose(tf, transforms.HFlip{P: 0.5})
	}
	ld, err := loader.New(ds, loader.Config{BatchSize: num("batch"), Transform: tf, Shuffle: true, Seed: int64(num("seed")), Workers: num("workers"),
		SkipBad: configs.Get[bool](store, "skip_bad")})
	if err != nil {
		return DiffusionResult{}, err
	}
	steps := int64(num("steps"))
	if err := train.Seed(store, int64(num("seed"))); err != nil {
		return DiffusionResult{}, err
	}
	tr, err := train.NewTrainer(b, store, step.Trainer, step.Loss)
	if err != nil {
		return DiffusionResult{}, err
	}
	it := ld.IterateFrom(train.CurrentStep(store))
	defer it.Close()
	sum, err := train.Run(tr, store, it.Feed(loader.ImagesOnly), train.LoopConfig{
		Steps: steps, Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: num("batch"), Title: fmt.Sprintf("%s on %s", str("adm"), ds.Name()), Out: log,
	})
	if err != nil {
		return DiffusionResult{}, err
	}
	res := DiffusionResult{Checkpoint: sum.Checkpoint, Steps: sum.Steps, LastLoss: sum.Last.Loss(), TrainTime: sum.Elapsed, Skipped: ld.SkippedLines()}
	if n := num("samples"); n > 0 {
		res.Samples = filepath.Join(outDir, "samples.png")
		if err := SampleGrid(b, store, proc, cfg, ScopedUNet(cfg, "ema/unet"), str("sampler"), n, size[0], size[1], num("sample_steps"), res.Samples); err != nil {
			return res, err
		}
	}
	return res, nil
}

// DiffusionStep is one training step of ADM pre-training, as Diffusion runs it.
type DiffusionStep struct {
	Config  adm.Config // the UNet's
	Process *diffusion.Diffusion
	Size    []int        // the training images' (height, width)
	Loss    train.LossFn // on a batch of images [batch, height, width, 3] in [0, 1]
	Trainer train.Config // AdamW, learning rate, clipping, EMA; trains UNetScope
}

// NewDiffusionStep builds the training step of the store's settings (see DiffusionDefaults:
// adm, size, noise_schedule, diffusion_steps, lr, weight_decay, warmup, steps, clip, ema).
// Diffusion trains with it; `dreamteacher bench` times it.
func NewDiffusionStep(store *model.Store) (*DiffusionStep, error) {
	name := configs.Get[string](store, "adm")
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	cfg, err := adm.GetConfig(name)
	if err != nil {
		return nil, err
	}
	size := configs.Get[[]int](store, "size")
	if len(size) != 2 {
		return nil, fmt.Errorf("size must be (height, width), got %v", size)
	}
	if err := cfg.CheckInputSize(size[0], size[1]); err != nil {
		return nil, fmt.Errorf("size %v: %w", size, err)
	}
	if cfg.NumClasses > 0 {
		return nil, fmt.Errorf("adm %s is class-conditional: pre-training on unlabeled images needs an unconditional configuration", name)
	}
	proc, err := Process(store, cfg)
	if err != nil {
		return nil, err
	}
	return &DiffusionStep{Config: cfg, Process: proc, Size: size, Loss: DiffusionLoss(proc, cfg), Trainer: train.Config{
		Optimizer: train.OptimizerConfig{Name: "adamw", WeightDecay: flt("weight_decay"), Beta1: 0.9, Beta2: 0.999},
		Schedule: train.Schedule{Kind: "constant", BaseLR: flt("lr"), WarmupSteps: configs.Get[int](store, "warmup"),
			TotalSteps: configs.Get[int](store, "steps")},
		ClipNorm: flt("clip"),
		EMADecay: flt("ema"),
		Train:    []string{UNetScope},
	}}, nil
}

// DiffusionLoss is the pre-training objective on a batch of images [N, H, W, C] in [0, 1]:
// the process' training losses (uniform timesteps, fresh noise; with a learned variance the
// hybrid MSE + VB objective) of the UNet of cfg under /unet.
func DiffusionLoss(proc *diffusion.Diffusion, cfg adm.Config) train.LossFn {
	return func(scope *model.Scope, in []*Node) map[string]*Node {
		x0 := AddScalar(MulScalar(in[0], 2), -1) // [0, 1] -> [-1, 1]
		return proc.TrainingLosses(scope, ScopedUNet(cfg, "unet"), x0, nil)
	}
}

// ScopedUNet is the UNet of cfg as a diffusion model whose variables are under prefix
// ("unet" for the trained weights, "ema/unet" for their average).
func ScopedUNet(cfg adm.Config, prefix string) diffusion.Model {
	m := diffusion.UNet(cfg)
	return func(scope *model.Scope, xt, t, y *Node) (*Node, *Node) {
		for _, part := range strings.Split(prefix, "/") {
			scope = scope.At("%s", part)
		}
		return m(scope, xt, t, y)
	}
}

// SampleGrid draws n images from the model m whose variables are in store, with sampler
// "ddpm" (ancestral) or "ddim" (deterministic) over steps respaced timesteps, and writes them as
// a PNG grid. An ancestral sampler is much more forgiving of a briefly trained teacher: DDIM's
// deterministic steps keep the small errors of its noise estimates as visible grain.
func SampleGrid(b compute.Backend, store *model.Store, proc *diffusion.Diffusion, cfg adm.Config, m diffusion.Model,
	sampler string, n, h, w, steps int, path string) error {
	opts := diffusion.SampleOptions{N: n, Height: h, Width: w, Channels: cfg.InChannels, Steps: steps}
	var x *tensors.Tensor
	var err error
	switch sampler {
	case "ddpm":
		x, err = proc.SampleDDPM(b, store, m, opts)
	case "ddim":
		x, err = proc.SampleDDIM(b, store, m, opts)
	default:
		return CheckSampler(sampler)
	}
	if err != nil {
		return err
	}
	return saveGrid(x, n, h, w, cfg.InChannels, path)
}

// CheckSampler reports an error naming sampler unless SampleGrid knows it.
func CheckSampler(sampler string) error {
	if sampler != "ddpm" && sampler != "ddim" {
		return fmt.Errorf("sampler: unknown %q (known: ddpm, ddim)", sampler)
	}
	return nil
}

// saveGrid writes images in [-1, 1] as a square-ish PNG grid.
func saveGrid(x *tensors.Tensor, n, h, w, c int, path string) error {
	flat := tensors.MustCopyFlatData[float32](x)
	var imgs []image.Image
	for _, im := range viz.SplitBatch(flat, n, h, w, c) {
		imgs = append(imgs, im.ToRGBA(-1, 1))
	}
	cols := 1
	for cols*cols < n {
		cols++
	}
	return viz.SavePNG(path, viz.Grid(imgs, cols, 2))
}
