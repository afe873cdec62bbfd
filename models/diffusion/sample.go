package diffusion

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// PSample is one DDPM ancestral step (guided-diffusion's p_sample) from x_t [N, H, W, C] at
// timesteps t [N] (integers): the reverse step's mean plus its standard deviation times fresh
// noise from the store's RNG, without noise at t = 0. With clip, x_0 estimates are clipped to
// [-1, 1]. y are the class labels (nil if unconditional).
func (d *Diffusion) PSample(scope *model.Scope, m Model, xt, t, y *Node, clip bool) *Node {
	out, varValues := m(scope, xt, d.ModelTimesteps(t, xt), y)
	p := d.PMeanVariance(xt, t, out, varValues, clip)
	noise := scope.RandomNormal(xt.Graph(), xt.Shape())
	std := Exp(MulScalar(p.LogVariance, 0.5))
	return Add(p.Mean, Mul(nonZeroMask(t, xt), Mul(std, noise)))
}

// DDIMSample is one DDIM step (guided-diffusion's ddim_sample, equation 12 of the DDIM paper)
// from x_t at timesteps t [N]: x_{t-1} = x̂_0 sqrt(alphā_{t-1}) + sqrt(1 - alphā_{t-1} - σ²) ε̂ + σ z
// with σ = eta sqrt((1-alphā_{t-1})/(1-alphā_t)) sqrt(1 - alphā_t/alphā_{t-1}); eta = 0 is
// deterministic. With clip, x̂_0 is clipped to [-1, 1] (and ε̂ re-derived from it).
func (d *Diffusion) DDIMSample(scope *model.Scope, m Model, xt, t, y *Node, eta float64, clip bool) *Node {
	out, varValues := m(scope, xt, d.ModelTimesteps(t, xt), y)
	p := d.PMeanVariance(xt, t, out, varValues, clip)
	eps := d.PredictEpsFromXStart(xt, t, p.PredXStart)
	sigmas := make([]float64, d.NumTimesteps)
	coefEps := make([]float64, d.NumTimesteps)
	sqrtPrev := make([]float64, d.NumTimesteps)
	for i, ac := range d.AlphasCumprod {
		prev := d.AlphasCumprodPrev[i]
		sigmas[i] = eta * math.Sqrt((1-prev)/(1-ac)) * math.Sqrt(1-ac/prev)
		coefEps[i] = math.Sqrt(max(1-prev-sigmas[i]*sigmas[i], 0))
		sqrtPrev[i] = math.Sqrt(prev)
	}
	mean := Add(Mul(p.PredXStart, Extract(sqrtPrev, t, xt)), Mul(Extract(coefEps, t, xt), eps))
	if eta == 0 {
		return mean
	}
	noise := scope.RandomNormal(xt.Graph(), xt.Shape())
	return Add(mean, Mul(nonZeroMask(t, xt), Mul(Extract(sigmas, t, xt), noise)))
}

// nonZeroMask is 1 where t != 0, shaped [N, 1, 1, 1] like x.
func nonZeroMask(t, like *Node) *Node {
	mask := ConvertDType(NotEqual(t, ScalarZero(t.Graph(), t.DType())), like.DType())
	dims := make([]int, like.Rank())
	for i := range dims {
		dims[i] = 1
	}
	dims[0] = t.Shape().Dim(0)
	return Reshape(mask, dims...)
}

// SampleOptions configure SampleDDPM and SampleDDIM.
type SampleOptions struct {
	N, Height, Width, Channels int          // the images to make
	DType                      dtypes.DType // of the computation; default Float32
	// Steps respaces the process to that many evenly spaced timesteps (guided-diffusion's
	// --timestep_respacing N); 0 uses every step of the Diffusion (which may itself be respaced).
	Steps int
	// Eta is DDIM's noise scale (0: deterministic). DDPM ignores it.
	Eta float64
	// NoClip keeps the x_0 estimates unclipped (guided-diffusion's clip_denoised=False).
	NoClip bool
	// Labels are the class labels [N] of a class-conditional model.
	Labels []int32
	// Noise is x_T [N, Height, Width, Channels]; default standard normal from the store's RNG.
	Noise *tensors.Tensor
	// Progress, if set, is called after each step.
	Progress func(done, total int)
}

// SampleDDPM draws opts.N images by ancestral sampling with the network m, whose variables are
// in store (run in inference mode). It loops on the host over one compiled step graph, and
// returns [N, H, W, C] clipped to [-1, 1].
func (d *Diffusion) SampleDDPM(b compute.Backend, store *model.Store, m Model, opts SampleOptions) (*tensors.Tensor, error) {
	return d.sampleLoop(b, store, opts, func(sd *Diffusion, scope *model.Scope, x, t, y *Node) *Node {
		return sd.PSample(scope, m, x, t, y, !opts.NoClip)
	})
}

// SampleDDIM draws opts.N images with DDIM (opts.Eta, opts.Steps; see SampleDDPM).
func (d *Diffusion) SampleDDIM(b compute.Backend, store *model.Store, m Model, opts SampleOptions) (*tensors.Tensor, error) {
	return d.sampleLoop(b, store, opts, func(sd *Diffusion, scope *model.Scope, x, t, y *Node) *Node {
		return sd.DDIMSample(scope, m, x, t, y, opts.Eta, !opts.NoClip)
	})
}

type stepFn func(sd *Diffusion, scope *model.Scope, x, t, y *Node) *Node

func (d *Diffusion) sampleLoop(b compute.Backend, store *model.Store, opts SampleOptions, step stepFn) (result *tensors.Tensor, err error) {
	if opts.N <= 0 || opts.Height <= 0 || opts.Width <= 0 || opts.Channels <= 0 {
		return nil, fmt.Errorf("diffusion: sample shape N=%d H=%d W=%d C=%d must be positive", opts.N, opts.Height, opts.Width, opts.Channels)
	}
	if opts.Labels != nil && len(opts.Labels) != opts.N {
		return nil, fmt.Errorf("diffusion: %d labels for %d samples", len(opts.Labels), opts.N)
	}
	if opts.DType == dtypes.InvalidDType {
		opts.DType = dtypes.Float32
	}
	sd, err := d.RespaceSteps(opts.Steps)
	if err != nil {
		return nil, err
	}
	shape := shapes.Make(opts.DType, opts.N, opts.Height, opts.Width, opts.Channels)
	err = exceptions.TryCatch[error](func() {
		x := opts.Noise
		if x == nil {
			x = model.MustExecOnce(b, store, func(scope *model.Scope, g *Graph) *Node { return scope.RandomNormal(g, shape) })
		} else if !x.Shape().Equal(shape) {
			exceptions.Panicf("diffusion: the initial noise is %s, want %s", x.Shape(), shape)
		}
		exec := model.MustNewExec(b, store, func(scope *model.Scope, ins []*Node) *Node {
			var y *Node
			if len(ins) > 2 {
				y = ins[2]
			}
			return step(sd, scope, ins[0], ins[1], y)
		}).WithName("diffusion-sample-step")
		defer exec.Finalize()
		var labels *tensors.Tensor
		if opts.Labels != nil {
			labels = tensors.FromValue(opts.Labels)
		}
		ts := make([]int32, opts.N)
		for i := sd.NumTimesteps - 1; i >= 0; i-- {
			for k := range ts {
				ts[k] = int32(i)
			}
			args := []any{x, tensors.FromValue(ts)}
			if labels != nil {
				args = append(args, labels)
			}
			next := exec.MustExec(args...)[0]
			if x != opts.Noise {
				_ = x.FinalizeAll()
			}
			x = next
			if opts.Progress != nil {
				opts.Progress(sd.NumTimesteps-i, sd.NumTimesteps)
			}
		}
		result = MustExecOnce(b, func(x *Node) *Node { return ClipScalar(x, -1, 1) }, x)
	})
	if err != nil {
		return nil, fmt.Errorf("diffusion: sampling failed: %w", err)
	}
	return result, nil
}
