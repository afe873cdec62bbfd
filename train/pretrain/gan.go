package pretrain

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	"github.com/dreamteacher-go/dreamteacher/losses/gan"
	"github.com/dreamteacher-go/dreamteacher/models/biggan"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// GANDefaults are the settings of BigGAN pre-training on unlabeled images (unconditional; a
// CPU-sized run).
func GANDefaults() map[string]any {
	d := biggan.DefaultTrainConfig()
	return map[string]any{
		"dataset":          "imagefolder",
		"data":             "",
		"split":            "train",
		"biggan":           "biggan_tiny_uncond", // registered configuration (models/biggan.Configs)
		"flip":             true,
		"batch":            16,
		"steps":            2000, // generator steps
		"d_steps":          d.DSteps,
		"lr_g":             d.GLR,
		"lr_d":             d.DLR,
		"loss":             "hinge",
		"ema":              0.999,
		"samples":          16,
		"seed":             0,
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        20,
	}
}

// ganStepper adapts biggan.Trainer to train.Run: each batch holds d_steps real image batches.
type ganStepper struct{ t *biggan.Trainer }

func (s ganStepper) Step(batch ...*tensors.Tensor) (train.Result, error) {
	real := make([]biggan.Batch, len(batch))
	for i, b := range batch {
		real[i] = biggan.Batch{Images: b}
	}
	r, err := s.t.Step(real...)
	if err != nil {
		return train.Result{}, err
	}
	terms := r.Terms()
	terms["loss"] = r.G.Loss() + r.D[len(r.D)-1].Loss()
	return train.Result{Step: r.Iteration, Terms: terms, LR: r.G.LR, GradNorm: r.G.GradNorm, Finite: r.Finite()}, nil
}

// GAN pre-trains an unconditional BigGAN teacher on the store's settings (see GANDefaults),
// writing checkpoints, metrics, loss curves and samples.png under outDir.
func GAN(b compute.Backend, store *model.Store, outDir string, log io.Writer) (DiffusionResult, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	cfg, err := biggan.Get(str("biggan"))
	if err != nil {
		return DiffusionResult{}, err
	}
	if cfg.Conditional() {
		return DiffusionResult{}, fmt.Errorf("biggan %s is class-conditional: pre-training on unlabeled images needs an unconditional configuration", str("biggan"))
	}
	loss, err := gan.ParseLoss(str("loss"))
	if err != nil {
		return DiffusionResult{}, fmt.Errorf("loss: %w", err)
	}
	tcfg := biggan.DefaultTrainConfig()
	tcfg.Loss, tcfg.DSteps, tcfg.GLR, tcfg.DLR, tcfg.EMADecay = loss, num("d_steps"), flt("lr_g"), flt("lr_d"), flt("ema")
	gt, err := biggan.NewTrainer(b, store, cfg, tcfg)
	if err != nil {
		return DiffusionResult{}, err
	}
	ds, err := datasets.Open(str("dataset"), str("data"), str("split"), datasets.Options{})
	if err != nil {
		return DiffusionResult{}, err
	}
	tf := Cover(cfg.Resolution, cfg.Resolution)
	if configs.Get[bool](store, "flip") {
		tf = transforms.Compose(tf, transforms.HFlip{P: 0.5})
	}
	ld, err := loader.New(ds, loader.Config{BatchSize: num("batch"), Transform: tf, Shuffle: true, Seed: int64(num("seed")), Workers: num("workers"),
		Normalize: &transforms.Normalization{Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5}}})
	if err != nil {
		return DiffusionResult{}, err
	}
	perIter := int64(tcfg.DSteps)
	it := ld.IterateFrom(train.CurrentStep(store) * perIter)
	defer it.Close()
	next := func() ([]*tensors.Tensor, error) {
		out := make([]*tensors.Tensor, tcfg.DSteps)
		for i := range out {
			batch, err := it.Next()
			if err != nil {
				return nil, err
			}
			out[i] = batch.Images
		}
		return out, nil
	}
	t0 := time.Now()
	sum, err := train.Run(ganStepper{gt}, store, next, train.LoopConfig{
		Steps: int64(num("steps")), Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: num("batch") * tcfg.DSteps, Title: fmt.Sprintf("%s on %s", str("biggan"), ds.Name()), Out: log,
	})
	if err != nil {
		return DiffusionResult{}, err
	}
	res := DiffusionResult{Checkpoint: sum.Checkpoint, Steps: sum.Steps, LastLoss: sum.Last.Loss(), TrainTime: time.Since(t0)}
	if n := num("samples"); n > 0 {
		res.Samples = filepath.Join(outDir, "samples.png")
		if err := GANSampleGrid(b, store, cfg, n, res.Samples); err != nil {
			return res, err
		}
	}
	return res, nil
}

// GANSampleGrid draws n samples of the generator (EMA weights when present) into a PNG grid.
func GANSampleGrid(b compute.Backend, store *model.Store, cfg biggan.Config, n int, path string) error {
	useEMA := store.GetVariable("/ema/generator/linear/weights") != nil
	s, err := biggan.NewSampler(b, store, cfg, biggan.SamplerOptions{BatchSize: n, UseEMA: useEMA})
	if err != nil {
		return err
	}
	out, err := s.Sample()
	if err != nil {
		return err
	}
	x := out.Images
	return saveGrid(x, n, x.Shape().Dim(1), x.Shape().Dim(2), 3, path)
}
