package pretrain

import (
	"errors"
	"fmt"
	"math"

	"github.com/dreamteacher-go/dreamteacher/losses/gan"
	"github.com/dreamteacher-go/dreamteacher/models/biggan"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// GANTrainConfig configures the adversarial training. Unlike train.OptimizerConfig, a zero field
// means zero: start from DefaultGANTrainConfig.
type GANTrainConfig struct {
	Loss gan.Loss
	// DSteps is the number of discriminator steps per generator step (the reference's
	// num_D_steps): each takes one real batch.
	DSteps int
	// GLR and DLR are the (constant) Adam learning rates of G and D.
	GLR, DLR float64
	// Beta1, Beta2 and Eps are Adam's, shared by both optimisers.
	Beta1, Beta2, Eps float64
	// EMADecay > 0 keeps an exponential moving average of G's weights under "/ema/generator"
	// (the reference's --ema; its ema_decay default 0.9999).
	EMADecay float64
}

// DefaultGANTrainConfig is BigGAN's ImageNet recipe (paper, section 4 and appendix; the
// reference's launch_BigGAN_bs256x8.sh): hinge loss, Adam with lr 1e-4 for G and 4e-4 for D,
// betas (0, 0.999), eps 1e-6, two D steps per G step (the paper's; the launch script uses one
// with 8 gradient accumulations), EMA of G with decay 0.9999.
func DefaultGANTrainConfig() GANTrainConfig {
	return GANTrainConfig{Loss: gan.Hinge, DSteps: 2, GLR: 1e-4, DLR: 4e-4, Beta1: 0, Beta2: 0.999, Eps: 1e-6, EMADecay: 0.9999}
}

// Validate checks the configuration.
func (c GANTrainConfig) Validate() error {
	switch {
	case c.Loss != gan.Hinge && c.Loss != gan.NonSaturating:
		return fmt.Errorf("biggan: unknown GAN loss %s", c.Loss)
	case c.DSteps < 1:
		return fmt.Errorf("biggan: DSteps must be >= 1, got %d", c.DSteps)
	case c.GLR <= 0 || c.DLR <= 0:
		return fmt.Errorf("biggan: learning rates must be > 0, got G %g and D %g", c.GLR, c.DLR)
	case c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1:
		return fmt.Errorf("biggan: Adam betas must be in [0, 1), got %g and %g", c.Beta1, c.Beta2)
	case c.Eps <= 0:
		return fmt.Errorf("biggan: Adam eps must be > 0, got %g", c.Eps)
	case c.EMADecay < 0 || c.EMADecay >= 1:
		return fmt.Errorf("biggan: EMADecay must be in [0, 1), got %g", c.EMADecay)
	}
	return nil
}

// Paths of the step counters of each network (int64), saved in checkpoints. train.StepVar
// holds the number of G steps (iterations) between calls to Step.
const (
	GANDStepVar = "/gan/d_step"
	GANGStepVar = "/gan/g_step"
)

// GANBatch is one batch of real images [N, Resolution, Resolution, 3] (float, in [-1, 1]) and,
// for a conditional model, their labels [N] (integers; nil without classes).
type GANBatch struct {
	Images, Labels *tensors.Tensor
}

// GANStepResult is the outcome of one iteration.
type GANStepResult struct {
	Iteration int64          // G steps taken so far, this one included
	D         []train.Result // one per D step, in order
	G         train.Result
}

// Finite reports whether every step of the iteration was applied (see train.Result.Finite).
func (r GANStepResult) Finite() bool {
	ok := r.G.Finite
	for _, d := range r.D {
		ok = ok && d.Finite
	}
	return ok
}

// Terms are the named terms of the last D step ("d/loss", "d/real", "d/fake", "d/d_real",
// "d/d_fake") and of the G step ("g/loss", "g/d_fake"), for logging.
func (r GANStepResult) Terms() map[string]float64 {
	terms := map[string]float64{}
	if len(r.D) > 0 {
		for k, v := range r.D[len(r.D)-1].Terms {
			terms["d/"+k] = v
		}
	}
	for k, v := range r.G.Terms {
		terms["g/"+k] = v
	}
	return terms
}

// GANTrainer trains a BigGAN: two train.Trainers sharing one store, the D step optimising the
// variables under "/discriminator" on real images and fakes from the current G (held fixed),
// the G step optimising "/generator" through the current D. Latents and fake labels are
// sampled inside the graphs with the store's random generator, so resuming from a checkpoint
// is exact. Both networks run in training mode in both steps (BN batch statistics and
// spectral-norm power iterations update in each), as in the reference.
type GANTrainer struct {
	cfg   biggan.Config
	tcfg  GANTrainConfig
	store *model.Store
	d, g  *train.Trainer
	batch int          // the fixed batch size, set by the first Step
	dtype dtypes.DType // of the images
}

// NewGANTrainer prepares the two training steps of cfg on store (graphs compile at the first
// Step).
func NewGANTrainer(b compute.Backend, store *model.Store, cfg biggan.Config, tcfg GANTrainConfig) (*GANTrainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := tcfg.Validate(); err != nil {
		return nil, err
	}
	t := &GANTrainer{cfg: cfg, tcfg: tcfg, store: store}
	opt := train.OptimizerConfig{Name: "adamw", Beta1: explicit(tcfg.Beta1), Beta2: explicit(tcfg.Beta2), Eps: tcfg.Eps}
	var err error
	t.d, err = train.NewTrainer(b, store, train.Config{
		Optimizer: opt,
		Schedule:  train.Schedule{Kind: "constant", BaseLR: tcfg.DLR},
		Train:     []string{"/" + biggan.DiscriminatorScope},
	}, t.dLoss)
	if err != nil {
		return nil, err
	}
	t.g, err = train.NewTrainer(b, store, train.Config{
		Optimizer: opt,
		Schedule:  train.Schedule{Kind: "constant", BaseLR: tcfg.GLR},
		EMADecay:  tcfg.EMADecay,
		Train:     []string{"/" + biggan.GeneratorScope},
	}, t.gLoss)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// explicit works around train.OptimizerConfig reading a zero beta as "use the default": the
// smallest positive float64 is 0 in every computation of Adam (it underflows to 0 in float32,
// and 1 - it is 1).
func explicit(beta float64) float64 {
	if beta == 0 {
		return math.SmallestNonzeroFloat64
	}
	return beta
}

// Config returns the model configuration.
func (t *GANTrainer) Config() biggan.Config { return t.cfg }

// Step runs one iteration: GANTrainConfig.DSteps discriminator steps, one on each real batch, then
// one generator step on as many samples as a real batch. Every batch must have the size of the
// first one (shapes are static). A step whose loss or gradient is not finite changes nothing
// (train.Result.Finite): check GANStepResult.Finite.
func (t *GANTrainer) Step(real ...GANBatch) (GANStepResult, error) {
	if len(real) != t.tcfg.DSteps {
		return GANStepResult{}, fmt.Errorf("biggan: an iteration takes %d real batches (one per D step), got %d", t.tcfg.DSteps, len(real))
	}
	for i, b := range real {
		if err := t.checkBatch(b); err != nil {
			return GANStepResult{}, fmt.Errorf("biggan: real batch %d: %w", i, err)
		}
	}
	var res GANStepResult
	for _, b := range real {
		args := []*tensors.Tensor{b.Images}
		if t.cfg.Conditional() {
			args = append(args, b.Labels)
		}
		r, err := t.withCounter(GANDStepVar, func() (train.Result, error) { return t.d.Step(args...) })
		if err != nil {
			return res, fmt.Errorf("biggan: D step: %w", err)
		}
		res.D = append(res.D, r)
	}
	// The G step samples everything it needs; its one input only gives the graph a parameter.
	r, err := t.withCounter(GANGStepVar, func() (train.Result, error) { return t.g.Step(tensors.FromValue(int32(0))) })
	if err != nil {
		return res, fmt.Errorf("biggan: G step: %w", err)
	}
	res.G, res.Iteration = r, r.Step
	return res, nil
}

func (t *GANTrainer) checkBatch(b GANBatch) error {
	if b.Images == nil {
		return errors.New("no images")
	}
	r := t.cfg.Resolution
	s := b.Images.Shape()
	if s.Rank() != 4 || s.Dim(1) != r || s.Dim(2) != r || s.Dim(3) != 3 || !s.DType.IsFloat() {
		return fmt.Errorf("images %s, want float [N, %d, %d, 3]", s, r, r)
	}
	if t.batch == 0 {
		t.batch, t.dtype = s.Dim(0), s.DType
	}
	if s.Dim(0) != t.batch || s.DType != t.dtype {
		return fmt.Errorf("images %s, but the first batch was (%s)[%d, ...]: batches have a fixed size", s, t.dtype, t.batch)
	}
	if t.cfg.Conditional() {
		if b.Labels == nil || b.Labels.Shape().Rank() != 1 || b.Labels.Shape().Dim(0) != t.batch ||
			(b.Labels.DType() != dtypes.Int32 && b.Labels.DType() != dtypes.Int64) {
			return fmt.Errorf("%d classes need int32 or int64 labels [%d], got %v", t.cfg.NumClasses, t.batch, b.Labels)
		}
		// A label outside [0, NumClasses) would select no class embedding: reject it here.
		var labels []int64
		if b.Labels.DType() == dtypes.Int32 {
			for _, y := range tensors.MustCopyFlatData[int32](b.Labels) {
				labels = append(labels, int64(y))
			}
		} else {
			labels = tensors.MustCopyFlatData[int64](b.Labels)
		}
		for i, y := range labels {
			if y < 0 || y >= int64(t.cfg.NumClasses) {
				return fmt.Errorf("label %d of image %d is not a class in [0, %d)", y, i, t.cfg.NumClasses)
			}
		}
	} else if b.Labels != nil {
		return errors.New("labels given to an unconditional model")
	}
	return nil
}

// withCounter runs a step of one network with train.StepVar holding that network's own step
// count (train.Trainer has one counter per store, which Adam's bias correction reads), then
// saves the count back.
func (t *GANTrainer) withCounter(path string, step func() (train.Result, error)) (train.Result, error) {
	own, err := t.store.CreateVariable(path, tensors.FromValue(int64(0)))
	if err != nil {
		return train.Result{}, err
	}
	own.SetTrainable(false)
	if shared := t.store.GetVariable(train.StepVar); shared != nil {
		if err := shared.SetValue(tensors.FromValue(own.MustValue().Value().(int64))); err != nil {
			return train.Result{}, err
		}
	}
	r, err := step()
	if err != nil {
		return r, err
	}
	return r, own.SetValue(tensors.FromValue(r.Step))
}

func (t *GANTrainer) dLoss(scope *model.Scope, batch []*Node) map[string]*Node {
	images := batch[0]
	g, n := images.Graph(), images.Shape().Dim(0)
	var realY, fakeY, y *Node
	if t.cfg.Conditional() {
		realY = ConvertDType(batch[1], dtypes.Int32)
		fakeY = biggan.SampleLabels(scope, g, n, t.cfg.NumClasses)
		y = Concatenate([]*Node{fakeY, realY}, 0)
	}
	z := biggan.SampleZ(scope, g, images.DType(), n, t.cfg.DimZ, 0)
	fake := StopGradient(biggan.NewGenerator(scope.In(biggan.GeneratorScope), t.cfg).Taps().Done(z, fakeY).Image)
	// One pass of D on [fake; real], as the reference's G_D.
	logits := biggan.Discriminate(scope.In(biggan.DiscriminatorScope), Concatenate([]*Node{fake, images}, 0), y, t.cfg)
	dFake, dReal := Slice(logits, AxisRange(0, n)), Slice(logits, AxisRange(n, 2*n))
	return gan.DiscriminatorLoss(t.tcfg.Loss, dReal, dFake)
}

func (t *GANTrainer) gLoss(scope *model.Scope, batch []*Node) map[string]*Node {
	g, n := batch[0].Graph(), t.batch
	var y *Node
	if t.cfg.Conditional() {
		y = biggan.SampleLabels(scope, g, n, t.cfg.NumClasses)
	}
	z := biggan.SampleZ(scope, g, t.dtype, n, t.cfg.DimZ, 0)
	fake := biggan.NewGenerator(scope.In(biggan.GeneratorScope), t.cfg).Taps().Done(z, y).Image
	return gan.GeneratorLoss(t.tcfg.Loss, biggan.Discriminate(scope.In(biggan.DiscriminatorScope), fake, y, t.cfg))
}
