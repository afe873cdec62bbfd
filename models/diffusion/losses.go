package diffusion

import (
	"math"

	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Model is the denoising network as the diffusion process calls it: on x_t [N, H, W, C], the
// network's timesteps t [N] (float, in x_t's dtype, already mapped to the original process, see
// Diffusion.ModelTimesteps) and class labels y [N] (nil if unconditional), it returns its mean
// output (eps or x_0, per MeanType) and, for a learned variance, its variance values (else nil).
type Model func(scope *model.Scope, xt, t, y *Node) (out, varValues *Node)

// UNet is the Model of an ADM UNet of configuration cfg built under the given scope.
func UNet(cfg adm.Config) Model {
	return func(scope *model.Scope, xt, t, y *Node) (*Node, *Node) {
		o := adm.New(scope, cfg).Taps().Done(xt, t, y)
		return o.Eps, o.Var
	}
}

// NormalKL is KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) element-wise, in nats.
func NormalKL(mean1, logvar1, mean2, logvar2 *Node) *Node {
	t := Add(Sub(logvar2, logvar1), Exp(Sub(logvar1, logvar2)))
	t = Add(t, Mul(Square(Sub(mean1, mean2)), Exp(Neg(logvar2))))
	return MulScalar(AddScalar(t, -1), 0.5)
}

// ApproxStandardNormalCDF is the tanh approximation of the standard normal CDF used by
// guided-diffusion: 0.5 (1 + tanh(sqrt(2/π) (x + 0.044715 x³))).
func ApproxStandardNormalCDF(x *Node) *Node {
	inner := MulScalar(Add(x, MulScalar(Mul(Square(x), x), 0.044715)), math.Sqrt(2/math.Pi))
	return MulScalar(OnePlus(Tanh(inner)), 0.5)
}

// DiscretizedGaussianLogLikelihood is the log-probability (nats, element-wise) that a Gaussian of
// means and log standard deviations logScales gives to the 8-bit bin of each x (x: uint8 values
// rescaled to [-1, 1], bins 2/255 wide). The first and last bins extend to -∞ and +∞.
func DiscretizedGaussianLogLikelihood(x, means, logScales *Node) *Node {
	if !x.Shape().Equal(means.Shape()) || !x.Shape().Equal(logScales.Shape()) {
		exceptions.Panicf("diffusion.DiscretizedGaussianLogLikelihood: x %s, means %s and log scales %s differ",
			x.Shape(), means.Shape(), logScales.Shape())
	}
	g := x.Graph()
	tiny := Scalar(g, x.DType(), 1e-12)
	centered := Sub(x, means)
	invStd := Exp(Neg(logScales))
	cdfPlus := ApproxStandardNormalCDF(Mul(invStd, AddScalar(centered, 1.0/255)))
	cdfMin := ApproxStandardNormalCDF(Mul(invStd, AddScalar(centered, -1.0/255)))
	logCdfPlus := Log(Max(cdfPlus, tiny))
	logOneMinusCdfMin := Log(Max(OneMinus(cdfMin), tiny))
	logCdfDelta := Log(Max(Sub(cdfPlus, cdfMin), tiny))
	low := LessThan(x, Scalar(g, x.DType(), -0.999))
	high := GreaterThan(x, Scalar(g, x.DType(), 0.999))
	return Where(low, logCdfPlus, Where(high, logOneMinusCdfMin, logCdfDelta))
}

// meanFlat averages over every axis but the batch: [N, ...] -> [N].
func meanFlat(x *Node) *Node {
	axes := make([]int, x.Rank()-1)
	for i := range axes {
		axes[i] = i + 1
	}
	return ReduceMean(x, axes...)
}

// VBTerms is one term of the variational lower bound per example [N], in bits per dimension:
// KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0, the decoder's negative discretized
// log-likelihood of x_0 at t = 0. p is the reverse step made by PMeanVariance (unclipped).
func (d *Diffusion) VBTerms(x0, xt, t *Node, p PMeanVariance) *Node {
	trueMean, _, trueLogVar := d.QPosteriorMeanVariance(x0, xt, t)
	kl := DivScalar(meanFlat(NormalKL(trueMean, trueLogVar, p.Mean, p.LogVariance)), math.Ln2)
	nll := DivScalar(meanFlat(Neg(DiscretizedGaussianLogLikelihood(x0, p.Mean, MulScalar(p.LogVariance, 0.5)))), math.Ln2)
	first := Equal(t, ScalarZero(t.Graph(), t.DType()))
	return Where(first, nll, kl)
}

// Loss terms, by name, as returned by LossTerms and TrainingLosses.
const (
	TermMSE  = "mse"  // mean squared error of the mean output (MSE losses)
	TermVB   = "vb"   // the variational bound term (learned variance, or KL losses)
	TermLoss = "loss" // what to minimise
)

// LossTerms are guided-diffusion's training_losses at the given timesteps t [N] (integers) and
// standard normal noise (x0's shape), per example [N]: "mse" and "loss", plus "vb" with a learned
// variance (the hybrid objective: the VLB trains only the variance — the mean output enters it
// through StopGradient, guided-diffusion's frozen_out) or with a KL loss ("loss" only then).
// y are the class labels (nil if unconditional).
func (d *Diffusion) LossTerms(scope *model.Scope, m Model, x0, t, noise, y *Node) map[string]*Node {
	xt := d.QSample(x0, t, noise)
	out, varValues := m(scope, xt, d.ModelTimesteps(t, xt), y)
	if !out.Shape().Equal(x0.Shape()) {
		exceptions.Panicf("diffusion: the model's output %s does not match x0 %s", out.Shape(), x0.Shape())
	}
	terms := map[string]*Node{}
	if d.LossType.IsVB() {
		vb := d.VBTerms(x0, xt, t, d.PMeanVariance(xt, t, out, varValues, false))
		if d.LossType == RescaledKL {
			vb = MulScalar(vb, float64(d.NumTimesteps))
		}
		terms[TermLoss] = vb
		return terms
	}
	if d.VarType.IsLearned() {
		vb := d.VBTerms(x0, xt, t, d.PMeanVariance(xt, t, StopGradient(out), varValues, false))
		if d.LossType == RescaledMSE {
			vb = MulScalar(vb, float64(d.NumTimesteps)/1000)
		}
		terms[TermVB] = vb
	}
	target := noise
	if d.MeanType == StartX {
		target = x0
	}
	terms[TermMSE] = meanFlat(Square(Sub(target, out)))
	terms[TermLoss] = terms[TermMSE]
	if vb, ok := terms[TermVB]; ok {
		terms[TermLoss] = Add(terms[TermMSE], vb)
	}
	return terms
}

// SampleTimesteps draws n timesteps uniformly from [0, NumTimesteps) with the store's RNG, as
// int32 [n] (guided-diffusion's UniformSampler).
func (d *Diffusion) SampleTimesteps(scope *model.Scope, g *Graph, n int) *Node {
	return scope.RandomIntN(g, int32(d.NumTimesteps), shapes.Make(dtypes.Int32, n))
}

// TrainingLosses is one training objective evaluation on a batch x0 [N, H, W, C] in [-1, 1]:
// uniform timesteps and fresh noise from the store's RNG, then LossTerms averaged over the batch.
// It returns scalars by name ("loss", "mse", and "vb" where there is one); minimise "loss".
func (d *Diffusion) TrainingLosses(scope *model.Scope, m Model, x0, y *Node) map[string]*Node {
	g := x0.Graph()
	t := d.SampleTimesteps(scope, g, x0.Shape().Dim(0))
	noise := scope.RandomNormal(g, x0.Shape())
	terms := d.LossTerms(scope, m, x0, t, noise, y)
	for name, v := range terms {
		terms[name] = ReduceAllMean(v)
	}
	return terms
}

// Encode is DreamTeacher's "encoded dataset" teacher: it noises real images x0 [N, H, W, C] in
// [-1, 1] to timesteps t [N] (integers) with FRESH noise from the store's RNG (the noise is a
// feature augmentation), runs ONE pass of the UNet and returns its output, whose Taps are the
// teacher features. y are the class labels (nil if unconditional).
func (d *Diffusion) Encode(scope *model.Scope, unet *adm.UNet, x0, t, y *Node) *adm.Output {
	noise := scope.RandomNormal(x0.Graph(), x0.Shape())
	xt := d.QSample(x0, t, noise)
	return unet.Done(xt, d.ModelTimesteps(t, xt), y)
}

// EncodeAt is Encode with every image at timestep step (the paper: 150 for ImageNet, 50 for
// LSUN, FFHQ and BDD100K).
func (d *Diffusion) EncodeAt(scope *model.Scope, unet *adm.UNet, x0 *Node, step int, y *Node) *adm.Output {
	if step < 0 || step >= d.NumTimesteps {
		exceptions.Panicf("diffusion.EncodeAt: timestep %d is outside the %d-step process", step, d.NumTimesteps)
	}
	t := BroadcastToDims(Scalar(x0.Graph(), dtypes.Int32, step), x0.Shape().Dim(0))
	return d.Encode(scope, unet, x0, t, y)
}
