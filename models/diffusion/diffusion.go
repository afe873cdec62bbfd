package diffusion

import (
	"fmt"
	"math"
	"slices"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// MeanType is what the network's mean output predicts.
type MeanType int

const (
	Epsilon MeanType = iota // the noise (guided-diffusion's default)
	StartX                  // x_0 directly (predict_xstart)
)

func (m MeanType) String() string {
	switch m {
	case Epsilon:
		return "epsilon"
	case StartX:
		return "start_x"
	}
	return fmt.Sprintf("MeanType(%d)", int(m))
}

// VarType is how the reverse process' variance is chosen.
type VarType int

const (
	// FixedLarge: beta_t (with the posterior variance at t=0), guided-diffusion's default when
	// sigma is not learned.
	FixedLarge VarType = iota
	// FixedSmall: the posterior variance beta~_t.
	FixedSmall
	// Learned: the network outputs the log variance.
	Learned
	// LearnedRange: the network outputs v in [-1, 1]; the log variance interpolates between
	// log beta~_t (v=-1) and log beta_t (v=1). guided-diffusion's learn_sigma.
	LearnedRange
)

func (v VarType) String() string {
	switch v {
	case FixedLarge:
		return "fixed_large"
	case FixedSmall:
		return "fixed_small"
	case Learned:
		return "learned"
	case LearnedRange:
		return "learned_range"
	}
	return fmt.Sprintf("VarType(%d)", int(v))
}

// IsLearned reports whether the network outputs the variance.
func (v VarType) IsLearned() bool { return v == Learned || v == LearnedRange }

// LossType is the training objective.
type LossType int

const (
	// MSE of the mean output; with a learned variance plus the VLB term for the variance only
	// (the "hybrid" objective of Improved DDPM).
	MSE LossType = iota
	// RescaledMSE is MSE with the VLB term scaled by steps/1000 (guided-diffusion's
	// rescale_learned_sigmas; identical to MSE at 1000 steps).
	RescaledMSE
	// KL is the variational lower bound alone (bits per dimension).
	KL
	// RescaledKL is KL times the number of steps (an estimate of the full VLB; use_kl).
	RescaledKL
)

func (l LossType) String() string {
	switch l {
	case MSE:
		return "mse"
	case RescaledMSE:
		return "rescaled_mse"
	case KL:
		return "kl"
	case RescaledKL:
		return "rescaled_kl"
	}
	return fmt.Sprintf("LossType(%d)", int(l))
}

// IsVB reports whether the loss is the variational bound alone.
func (l LossType) IsVB() bool { return l == KL || l == RescaledKL }

// Config of a Gaussian diffusion process.
type Config struct {
	Steps    int // diffusion steps T
	Schedule Schedule
	MeanType MeanType
	VarType  VarType
	LossType LossType
}

// DefaultConfig is guided-diffusion's process for its ImageNet and LSUN models: 1000 steps,
// linear schedule, epsilon prediction, MSE; the variance learned in range when learnSigma (the
// hybrid loss), else fixed large.
func DefaultConfig(learnSigma bool) Config {
	cfg := Config{Steps: 1000, Schedule: Linear, MeanType: Epsilon, VarType: FixedLarge, LossType: MSE}
	if learnSigma {
		cfg.VarType = LearnedRange
	}
	return cfg
}

// Diffusion is a Gaussian diffusion process: its coefficients, computed in float64 on the host,
// and the graph functions that use them. Timestep arguments t are integer indices [N] into the
// process (0 is the first noising step).
type Diffusion struct {
	MeanType MeanType
	VarType  VarType
	LossType LossType

	NumTimesteps int
	// TimestepMap gives, for each timestep of this process, the timestep of the original
	// process that the network is called with (identity unless respaced).
	TimestepMap []int
	// OriginalSteps is the number of steps of the process the network was trained on.
	OriginalSteps int

	Betas                       []float64
	AlphasCumprod               []float64 // alphā_t = prod_{s<=t} (1 - beta_s)
	AlphasCumprodPrev           []float64 // alphā_{t-1}, 1 at t=0
	AlphasCumprodNext           []float64 // alphā_{t+1}, 0 at the last step
	SqrtAlphasCumprod           []float64
	SqrtOneMinusAlphasCumprod   []float64
	LogOneMinusAlphasCumprod    []float64
	SqrtRecipAlphasCumprod      []float64
	SqrtRecipm1AlphasCumprod    []float64
	PosteriorVariance           []float64 // beta~_t of q(x_{t-1} | x_t, x_0)
	PosteriorLogVarianceClipped []float64 // log beta~_t, with beta~_1 at t=0 where beta~_0 = 0
	PosteriorMeanCoef1          []float64 // of x_0
	PosteriorMeanCoef2          []float64 // of x_t
	// FixedLargeVariance is the variance of FixedLarge: beta~_1 at t=0, beta_t after.
	FixedLargeVariance []float64
}

// New makes the process described by cfg.
func New(cfg Config) (*Diffusion, error) {
	betas, err := Betas(cfg.Schedule, cfg.Steps)
	if err != nil {
		return nil, err
	}
	return NewFromBetas(betas, cfg.MeanType, cfg.VarType, cfg.LossType)
}

// NewFromBetas makes the process of the given betas (each in (0, 1]).
func NewFromBetas(betas []float64, mean MeanType, variance VarType, loss LossType) (*Diffusion, error) {
	n := len(betas)
	if n == 0 {
		return nil, fmt.Errorf("diffusion: no betas")
	}
	for i, b := range betas {
		if !(b > 0 && b <= 1) {
			return nil, fmt.Errorf("diffusion: beta[%d] = %g is not in (0, 1]", i, b)
		}
	}
	d := &Diffusion{MeanType: mean, VarType: variance, LossType: loss, NumTimesteps: n, OriginalSteps: n,
		Betas: slices.Clone(betas)}
	d.TimestepMap = make([]int, n)
	for i := range d.TimestepMap {
		d.TimestepMap[i] = i
	}
	mk := func() []float64 { return make([]float64, n) }
	d.AlphasCumprod, d.AlphasCumprodPrev, d.AlphasCumprodNext = mk(), mk(), mk()
	d.SqrtAlphasCumprod, d.SqrtOneMinusAlphasCumprod, d.LogOneMinusAlphasCumprod = mk(), mk(), mk()
	d.SqrtRecipAlphasCumprod, d.SqrtRecipm1AlphasCumprod = mk(), mk()
	d.PosteriorVariance, d.PosteriorLogVarianceClipped = mk(), mk()
	d.PosteriorMeanCoef1, d.PosteriorMeanCoef2, d.FixedLargeVariance = mk(), mk(), mk()
	prod := 1.0
	for i, b := range betas {
		prod *= 1 - b
		d.AlphasCumprod[i] = prod
	}
	for i, b := range betas {
		ac := d.AlphasCumprod[i]
		prev := 1.0
		if i > 0 {
			prev = d.AlphasCumprod[i-1]
		}
		d.AlphasCumprodPrev[i] = prev
		if i+1 < n {
			d.AlphasCumprodNext[i] = d.AlphasCumprod[i+1]
		}
		d.SqrtAlphasCumprod[i] = math.Sqrt(ac)
		d.SqrtOneMinusAlphasCumprod[i] = math.Sqrt(1 - ac)
		d.LogOneMinusAlphasCumprod[i] = math.Log(1 - ac)
		d.SqrtRecipAlphasCumprod[i] = math.Sqrt(1 / ac)
		d.SqrtRecipm1AlphasCumprod[i] = math.Sqrt(1/ac - 1)
		d.PosteriorVariance[i] = b * (1 - prev) / (1 - ac)
		d.PosteriorMeanCoef1[i] = b * math.Sqrt(prev) / (1 - ac)
		d.PosteriorMeanCoef2[i] = (1 - prev) * math.Sqrt(1-b) / (1 - ac)
	}
	for i := range n {
		// The posterior variance is 0 at t=0: its log is clipped to the value at t=1.
		v := d.PosteriorVariance[i]
		if i == 0 && n > 1 {
			v = d.PosteriorVariance[1]
		}
		d.PosteriorLogVarianceClipped[i] = math.Log(v)
		d.FixedLargeVariance[i] = betas[i]
		if i == 0 && n > 1 {
			d.FixedLargeVariance[i] = d.PosteriorVariance[1]
		}
	}
	return d, nil
}

// Respace returns the process that keeps only the timesteps useTimesteps of d (as
// guided-diffusion's SpacedDiffusion): its betas are chosen so that its alphā at each kept step
// equals d's, and the network is still called with d's timesteps (TimestepMap).
func (d *Diffusion) Respace(useTimesteps []int) (*Diffusion, error) {
	keep := map[int]bool{}
	for _, t := range useTimesteps {
		if t < 0 || t >= d.NumTimesteps {
			return nil, fmt.Errorf("diffusion: cannot keep timestep %d of a %d-step process", t, d.NumTimesteps)
		}
		keep[t] = true
	}
	var betas []float64
	var tmap []int
	last := 1.0
	for i, ac := range d.AlphasCumprod {
		if keep[i] {
			betas = append(betas, 1-ac/last)
			last = ac
			tmap = append(tmap, d.TimestepMap[i])
		}
	}
	s, err := NewFromBetas(betas, d.MeanType, d.VarType, d.LossType)
	if err != nil {
		return nil, err
	}
	s.TimestepMap, s.OriginalSteps = tmap, d.OriginalSteps
	return s, nil
}

// RespaceSteps returns the process with steps timesteps evenly spaced over d's
// (SpaceTimesteps(d.NumTimesteps, "steps")), or d itself when steps is 0 or d.NumTimesteps.
func (d *Diffusion) RespaceSteps(steps int) (*Diffusion, error) {
	if steps == 0 || steps == d.NumTimesteps {
		return d, nil
	}
	kept, err := SpaceTimesteps(d.NumTimesteps, fmt.Sprint(steps))
	if err != nil {
		return nil, err
	}
	return d.Respace(kept)
}

// Extract gathers arr[t] for the timesteps t [N] (integers) and shapes it [N, 1, ..., 1] to
// broadcast against like [N, ...], in like's dtype.
func Extract(arr []float64, t, like *Node) *Node {
	if t.Rank() != 1 || !t.DType().IsInt() {
		exceptions.Panicf("diffusion: want integer timesteps [N], got %s", t.Shape())
	}
	if like.Shape().Dim(0) != t.Shape().Dim(0) {
		exceptions.Panicf("diffusion: %d timesteps for a batch of %s", t.Shape().Dim(0), like.Shape())
	}
	g := t.Graph()
	v := Gather(ConvertDType(Const(g, arr), like.DType()), ExpandAxes(t, -1)) // [N]
	dims := make([]int, like.Rank())
	for i := range dims {
		dims[i] = 1
	}
	dims[0] = t.Shape().Dim(0)
	return Reshape(v, dims...)
}

// ModelTimesteps converts timesteps t [N] of this process to the (float, dtype) timesteps the
// network takes: those of the original process (TimestepMap).
func (d *Diffusion) ModelTimesteps(t *Node, like *Node) *Node {
	g := t.Graph()
	mapped := make([]float64, len(d.TimestepMap))
	for i, m := range d.TimestepMap {
		mapped[i] = float64(m)
	}
	return Gather(ConvertDType(Const(g, mapped), like.DType()), ExpandAxes(t, -1))
}

// QMeanVariance is q(x_t | x_0): mean sqrt(alphā_t) x_0, variance 1 - alphā_t and its log.
func (d *Diffusion) QMeanVariance(x0, t *Node) (mean, variance, logVariance *Node) {
	mean = Mul(Extract(d.SqrtAlphasCumprod, t, x0), x0)
	oneMinus := make([]float64, d.NumTimesteps)
	for i, ac := range d.AlphasCumprod {
		oneMinus[i] = 1 - ac
	}
	variance = Extract(oneMinus, t, x0)
	logVariance = Extract(d.LogOneMinusAlphasCumprod, t, x0)
	return
}

// QSample draws x_t ~ q(x_t | x_0) with the given standard normal noise:
// sqrt(alphā_t) x_0 + sqrt(1 - alphā_t) noise.
func (d *Diffusion) QSample(x0, t, noise *Node) *Node {
	if !x0.Shape().Equal(noise.Shape()) {
		exceptions.Panicf("diffusion.QSample: x0 %s and noise %s differ", x0.Shape(), noise.Shape())
	}
	return Add(Mul(Extract(d.SqrtAlphasCumprod, t, x0), x0), Mul(Extract(d.SqrtOneMinusAlphasCumprod, t, x0), noise))
}

// QPosteriorMeanVariance is q(x_{t-1} | x_t, x_0): its mean, variance and clipped log variance.
func (d *Diffusion) QPosteriorMeanVariance(x0, xt, t *Node) (mean, variance, logVarianceClipped *Node) {
	mean = Add(Mul(Extract(d.PosteriorMeanCoef1, t, xt), x0), Mul(Extract(d.PosteriorMeanCoef2, t, xt), xt))
	variance = BroadcastToShape(Extract(d.PosteriorVariance, t, xt), xt.Shape())
	logVarianceClipped = BroadcastToShape(Extract(d.PosteriorLogVarianceClipped, t, xt), xt.Shape())
	return
}

// PredictXStartFromEps inverts q_sample: x_0 = sqrt(1/alphā_t) x_t - sqrt(1/alphā_t - 1) eps.
func (d *Diffusion) PredictXStartFromEps(xt, t, eps *Node) *Node {
	return Sub(Mul(Extract(d.SqrtRecipAlphasCumprod, t, xt), xt), Mul(Extract(d.SqrtRecipm1AlphasCumprod, t, xt), eps))
}

// PredictEpsFromXStart is the noise that takes x_0 to x_t.
func (d *Diffusion) PredictEpsFromXStart(xt, t, x0 *Node) *Node {
	return Div(Sub(Mul(Extract(d.SqrtRecipAlphasCumprod, t, xt), xt), x0), Extract(d.SqrtRecipm1AlphasCumprod, t, xt))
}

// PMeanVariance is the reverse step p(x_{t-1} | x_t) the network's outputs describe.
type PMeanVariance struct {
	Mean, Variance, LogVariance *Node
	PredXStart                  *Node // the network's estimate of x_0
}

// PMeanVariance turns the network's outputs at (x_t, t) — its mean output (eps or x_0) and, for
// a learned variance, its variance values — into the reverse step. With clip, the x_0 estimate is
// clipped to [-1, 1] before it makes the mean.
func (d *Diffusion) PMeanVariance(xt, t, out, varValues *Node, clip bool) PMeanVariance {
	var p PMeanVariance
	switch d.VarType {
	case Learned:
		p.LogVariance = varValues
		p.Variance = Exp(varValues)
	case LearnedRange:
		minLog := Extract(d.PosteriorLogVarianceClipped, t, xt)
		logBetas := make([]float64, d.NumTimesteps)
		for i, b := range d.Betas {
			logBetas[i] = math.Log(b)
		}
		maxLog := Extract(logBetas, t, xt)
		frac := MulScalar(OnePlus(varValues), 0.5)
		p.LogVariance = Add(Mul(frac, maxLog), Mul(OneMinus(frac), minLog))
		p.Variance = Exp(p.LogVariance)
	case FixedLarge, FixedSmall:
		v, logV := d.FixedLargeVariance, make([]float64, d.NumTimesteps)
		for i, x := range v {
			logV[i] = math.Log(x)
		}
		if d.VarType == FixedSmall {
			v, logV = d.PosteriorVariance, d.PosteriorLogVarianceClipped
		}
		p.Variance = BroadcastToShape(Extract(v, t, xt), xt.Shape())
		p.LogVariance = BroadcastToShape(Extract(logV, t, xt), xt.Shape())
	default:
		exceptions.Panicf("diffusion: unknown variance type %v", d.VarType)
	}
	if d.VarType.IsLearned() && varValues == nil {
		exceptions.Panicf("diffusion: the variance type %v needs the network's variance output", d.VarType)
	}
	switch d.MeanType {
	case Epsilon:
		p.PredXStart = d.PredictXStartFromEps(xt, t, out)
	case StartX:
		p.PredXStart = out
	default:
		exceptions.Panicf("diffusion: unknown mean type %v", d.MeanType)
	}
	if clip {
		p.PredXStart = ClipScalar(p.PredXStart, -1, 1)
	}
	p.Mean, _, _ = d.QPosteriorMeanVariance(p.PredXStart, xt, t)
	return p
}
