package pretrain

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"

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

// GANDefaults are the settings of BigGAN pre-training (an unconditional, CPU-sized run; set
// biggan = biggan_128 and dataset = imagenet for the paper's class-conditional teacher).
func GANDefaults() map[string]any {
	d := DefaultGANTrainConfig()
	return map[string]any{
		"dataset": "imagefolder",
		"data":    "",
		"split":   "train",
		"biggan":  "biggan_tiny_uncond", // registered configuration (models/biggan.Configs)
		// num_classes > 0 replaces the configuration's number of classes (conditional models
		// train on a labelled dataset with exactly that many classes); 0 keeps it.
		"num_classes":      0,
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
		"skip_bad":         false, // leave out training images that fail to load (listed in Skipped)
		"workers":          2,
		"checkpoint_every": 0,
		"log_every":        20,
	}
}

// GANConfig returns the registered BigGAN configuration name with numClasses classes when
// numClasses > 0 (the num_classes setting), as registered otherwise.
func GANConfig(name string, numClasses int) (biggan.Config, error) {
	cfg, err := biggan.Get(name)
	if err != nil {
		return cfg, err
	}
	if numClasses < 0 {
		return cfg, fmt.Errorf("num_classes = %d: want 0 (the configuration's, %d) or a number of classes", numClasses, cfg.NumClasses)
	}
	if numClasses > 0 {
		cfg.NumClasses = numClasses
	}
	return cfg, cfg.Validate()
}

// GANConfigOf returns the generator configuration of a pre-training checkpoint from its
// settings ("biggan", and "num_classes" when set), and the configuration's name.
func GANConfigOf(settings map[string]any) (biggan.Config, string, error) {
	name, ok := settings["biggan"].(string)
	if !ok {
		return biggan.Config{}, "", fmt.Errorf("not a BigGAN pre-training checkpoint (no \"biggan\" setting)")
	}
	var k int
	switch v := settings["num_classes"].(type) {
	case nil:
	case int:
		k = v
	case int64:
		k = int(v)
	case float64:
		k = int(v)
	default:
		return biggan.Config{}, name, fmt.Errorf("num_classes setting %v (%T) is not a number", v, v)
	}
	cfg, err := GANConfig(name, k)
	return cfg, name, err
}

// checkGANClasses says whether a dataset with the given classes (nil: unlabelled) can train cfg.
func checkGANClasses(cfg biggan.Config, name string, ds datasets.Dataset) error {
	classes := ds.Classes()
	switch {
	case !cfg.Conditional():
		return nil
	case classes == nil:
		var uncond []string
		for _, n := range biggan.Names() {
			if !biggan.Configs[n].Conditional() {
				uncond = append(uncond, n)
			}
		}
		return fmt.Errorf("biggan %s is class-conditional (%d classes), but dataset %s has no class labels: "+
			"train it on a labelled dataset (imagenet: one folder per class) or use an unconditional configuration (%v)",
			name, cfg.NumClasses, ds.Name(), uncond)
	case len(classes) != cfg.NumClasses:
		return fmt.Errorf("dataset %s has %d classes, the generator %d: set num_classes = %d to train biggan %s on them",
			ds.Name(), len(classes), cfg.NumClasses, len(classes), name)
	}
	return nil
}

// ganStepper adapts GANTrainer to train.Run: each batch holds d_steps real image batches,
// each followed by its labels for a conditional model.
type ganStepper struct {
	t           *GANTrainer
	conditional bool
}

func (s ganStepper) Step(batch ...*tensors.Tensor) (train.Result, error) {
	per := 1
	if s.conditional {
		per = 2
	}
	real := make([]GANBatch, len(batch)/per)
	for i := range real {
		real[i].Images = batch[i*per]
		if s.conditional {
			real[i].Labels = batch[i*per+1]
		}
	}
	r, err := s.t.Step(real...)
	if err != nil {
		return train.Result{}, err
	}
	terms := r.Terms()
	terms["loss"] = r.G.Loss() + r.D[len(r.D)-1].Loss()
	return train.Result{Step: r.Iteration, Terms: terms, LR: r.G.LR, GradNorm: r.G.GradNorm, Finite: r.Finite()}, nil
}

// GAN pre-trains a BigGAN teacher on the store's settings (see GANDefaults), writing
// checkpoints, metrics, loss curves and samples.png under outDir. A store restored from a
// checkpoint of outDir resumes.
//
// It is the GAN teacher of DreamTeacher's "synthesized dataset" (PAPER.md, "Teacher
// features"). The paper's GAN teacher is BigGAN trained on ImageNet, a class-conditional
// model: G(z, y) makes an image of class y, D(x, y) judges the pair. A conditional
// configuration (biggan_128, biggan_256, biggan_tiny) trains on a labelled dataset, the labels
// of its images feeding D's projection on the real half; an unconditional one
// (biggan_tiny_uncond, biggan_small) on any images, labelled or not. Choices the paper (and
// BigGAN's) leave open, and ours:
//
//   - The classes are the dataset's: the ImageNet loader's (one folder per WordNet id, the
//     class index the position of the wnid among the sorted wnids, as torchvision's
//     ImageFolder and BigGAN-PyTorch's own loader). Their number must be the configuration's
//     NumClasses; num_classes overrides it (the architecture of biggan_128 on a 10-class
//     folder: num_classes = 10). A mismatch is an error that names the setting, never a
//     silent truncation: a label beyond the embedding table would select no class at all.
//   - The fake labels of both steps (the y of G(z, y) and of D's judgement of it) are drawn
//     uniformly over all classes, independently of the real batch's labels, as the
//     reference's prepare_z_y (a categorical over n_classes). The real labels serve only D's
//     real half. ImageNet's classes are nearly balanced, so uniform is also the data's prior.
//   - The checkpoint's settings name the configuration and num_classes: the GAN teacher and
//     the sample command rebuild the generator from them (GANConfigOf).
//   - Unlabelled data trains an unconditional configuration (DreamTeacher's own setting for
//     LSUN, FFHQ or BDD100K, where there are no classes to condition on); a conditional one on
//     a dataset without labels is an error naming the unconditional configurations.
func GAN(b compute.Backend, store *model.Store, outDir string, log io.Writer) (DiffusionResult, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	cfg, err := GANConfig(str("biggan"), num("num_classes"))
	if err != nil {
		return DiffusionResult{}, err
	}
	loss, err := gan.ParseLoss(str("loss"))
	if err != nil {
		return DiffusionResult{}, fmt.Errorf("loss: %w", err)
	}
	if err := train.Seed(store, int64(num("seed"))); err != nil {
		return DiffusionResult{}, err
	}
	tcfg := DefaultGANTrainConfig()
	tcfg.Loss, tcfg.DSteps, tcfg.GLR, tcfg.DLR, tcfg.EMADecay = loss, num("d_steps"), flt("lr_g"), flt("lr_d"), flt("ema")
	gt, err := NewGANTrainer(b, store, cfg, tcfg)
	if err != nil {
		return DiffusionResult{}, err
	}
	ds, err := datasets.Open(str("dataset"), str("data"), str("split"), datasets.Options{})
	if err != nil {
		return DiffusionResult{}, err
	}
	if err := checkGANClasses(cfg, str("biggan"), ds); err != nil {
		return DiffusionResult{}, err
	}
	tf := Cover(cfg.Resolution, cfg.Resolution)
	if configs.Get[bool](store, "flip") {
		tf = transforms.Compose(tf, transforms.HFlip{P: 0.5})
	}
	ld, err := loader.New(ds, loader.Config{BatchSize: num("batch"), Transform: tf, Shuffle: true, Seed: int64(num("seed")), Workers: num("workers"),
		SkipBad:   configs.Get[bool](store, "skip_bad"),
		Normalize: &transforms.Normalization{Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5}}})
	if err != nil {
		return DiffusionResult{}, err
	}
	perIter := int64(tcfg.DSteps)
	it := ld.IterateFrom(train.CurrentStep(store) * perIter)
	defer it.Close()
	next := func() ([]*tensors.Tensor, error) {
		var out []*tensors.Tensor
		for range tcfg.DSteps {
			batch, err := it.Next()
			if err != nil {
				return nil, err
			}
			out = append(out, batch.Images)
			if cfg.Conditional() {
				out = append(out, batch.Labels)
			}
		}
		return out, nil
	}
	sum, err := train.Run(ganStepper{gt, cfg.Conditional()}, store, next, train.LoopConfig{
		Steps: int64(num("steps")), Dir: outDir, CheckpointEvery: int64(num("checkpoint_every")), LogEvery: int64(num("log_every")),
		ImagesPerStep: num("batch") * tcfg.DSteps, Title: fmt.Sprintf("%s on %s", str("biggan"), ds.Name()), Out: log,
	})
	if err != nil {
		return DiffusionResult{}, err
	}
	res := DiffusionResult{Checkpoint: sum.Checkpoint, Steps: sum.Steps, LastLoss: sum.Last.Loss(), TrainTime: sum.Elapsed, Skipped: ld.SkippedLines()}
	if n := num("samples"); n > 0 {
		res.Samples = filepath.Join(outDir, "samples.png")
		if err := GANSampleGrid(b, store, cfg, n, res.Samples); err != nil {
			return res, err
		}
	}
	return res, nil
}

// GANSampleGrid draws n samples of the generator (EMA weights when present) into a PNG grid.
// A conditional generator draws each image's class uniformly from classes (none: all).
func GANSampleGrid(b compute.Backend, store *model.Store, cfg biggan.Config, n int, path string, classes ...int) error {
	useEMA := store.GetVariable("/ema/generator/linear/weights") != nil
	s, err := biggan.NewSampler(b, store, cfg, biggan.SamplerOptions{BatchSize: n, UseEMA: useEMA, Classes: slices.Clone(classes)})
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
