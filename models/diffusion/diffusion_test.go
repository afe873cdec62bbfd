package diffusion

import (
	"math"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func mustNew(t *testing.T, cfg Config) *Diffusion {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func closeRel(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(math.Abs(b), 1e-300) }

// guidedDiffusion holds values printed by guided-diffusion (commit 22e0df8, numpy float64):
// GaussianDiffusion(betas=get_named_beta_schedule("linear", 1000), ...).alphas_cumprod[t] etc.
var guidedDiffusion = struct {
	linearAlphasCumprod map[int]float64
	posteriorVariance1  float64
	posteriorLogVarClip float64 // at t=0
	coef1At10           float64
	coef2At10           float64
	cosineBetas01       [2]float64
	cosineAC499         float64
}{
	linearAlphasCumprod: map[int]float64{0: 0.9999, 1: 0.9997800920720721, 49: 0.9710157229394402,
		149: 0.7883213508874032, 499: 0.07858724288177824, 999: 4.035829765375676e-05},
	posteriorVariance1:  5.4531876613021935e-05,
	posteriorLogVarClip: -9.81672513529567,
	coef1At10:           0.1362778597700445,
	coef2At10:           0.8637220692869959,
	cosineBetas01:       [2]float64{4.128422482196914e-05, 4.614175273665033e-05},
	cosineAC499:         0.4938435904406382,
}

func TestLinearSchedule(t *testing.T) {
	d := mustNew(t, DefaultConfig(true))
	if d.Betas[0] != 1e-4 || d.Betas[999] != 0.02 {
		t.Errorf("betas run from %g to %g, want 1e-4 to 0.02", d.Betas[0], d.Betas[999])
	}
	// By hand: beta_i = 1e-4 + i (0.02 - 1e-4)/999, alphā_t = prod_{i<=t} (1 - beta_i).
	prod := 1.0
	for i := range 1000 {
		prod *= 1 - (1e-4 + float64(i)*(0.02-1e-4)/999)
		if want, ok := guidedDiffusion.linearAlphasCumprod[i]; ok {
			if !closeRel(d.AlphasCumprod[i], prod, 1e-12) || !closeRel(d.AlphasCumprod[i], want, 1e-14) {
				t.Errorf("alphā[%d] = %.17g, by hand %.17g, guided-diffusion %.17g", i, d.AlphasCumprod[i], prod, want)
			}
		}
	}
	// 1000/T scaling: at 100 steps, 1e-3 .. 0.2.
	b, _ := Betas(Linear, 100)
	if !closeRel(b[0], 1e-3, 1e-15) || !closeRel(b[99], 0.2, 1e-15) || !closeRel(b[1], 1e-3+(0.2-1e-3)/99, 1e-14) {
		t.Errorf("linear at 100 steps: %g, %g ... %g", b[0], b[1], b[99])
	}
}

func TestCosineSchedule(t *testing.T) {
	d := mustNew(t, Config{Steps: 1000, Schedule: Cosine})
	f := func(t float64) float64 { c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2); return c * c }
	if want := 1 - f(0.001)/f(0); !closeRel(d.Betas[0], want, 1e-12) || !closeRel(d.Betas[0], guidedDiffusion.cosineBetas01[0], 1e-10) {
		t.Errorf("first cosine beta %.17g, by hand %.17g", d.Betas[0], want)
	}
	// 1 - f(t2)/f(t1) cancels: the last bits of Go's and libm's cos differ by ~1e-16/beta relative.
	if !closeRel(d.Betas[1], guidedDiffusion.cosineBetas01[1], 1e-10) {
		t.Errorf("second cosine beta %.17g, guided-diffusion %.17g", d.Betas[1], guidedDiffusion.cosineBetas01[1])
	}
	if d.Betas[999] != 0.999 {
		t.Errorf("last cosine beta %g, want 0.999 (clipped)", d.Betas[999])
	}
	// alphā_t follows f((t+1)/T)/f(0) while no beta is clipped.
	if want := f(0.5) / f(0); !closeRel(d.AlphasCumprod[499], want, 1e-10) || !closeRel(d.AlphasCumprod[499], guidedDiffusion.cosineAC499, 1e-12) {
		t.Errorf("cosine alphā[499] = %.17g, by hand %.17g", d.AlphasCumprod[499], want)
	}
}

func TestPosteriorCoefficients(t *testing.T) {
	d := mustNew(t, DefaultConfig(true))
	for _, i := range []int{1, 10, 500, 999} {
		b, ac, prev := d.Betas[i], d.AlphasCumprod[i], d.AlphasCumprod[i-1]
		if want := b * (1 - prev) / (1 - ac); !closeRel(d.PosteriorVariance[i], want, 1e-14) {
			t.Errorf("posterior variance[%d] = %g, want %g", i, d.PosteriorVariance[i], want)
		}
		if want := b * math.Sqrt(prev) / (1 - ac); !closeRel(d.PosteriorMeanCoef1[i], want, 1e-14) {
			t.Errorf("coef1[%d] = %g, want %g", i, d.PosteriorMeanCoef1[i], want)
		}
		if want := (1 - prev) * math.Sqrt(1-b) / (1 - ac); !closeRel(d.PosteriorMeanCoef2[i], want, 1e-14) {
			t.Errorf("coef2[%d] = %g, want %g", i, d.PosteriorMeanCoef2[i], want)
		}
	}
	gd := guidedDiffusion
	if !closeRel(d.PosteriorVariance[1], gd.posteriorVariance1, 1e-13) || !closeRel(d.PosteriorLogVarianceClipped[0], gd.posteriorLogVarClip, 1e-14) ||
		!closeRel(d.PosteriorMeanCoef1[10], gd.coef1At10, 1e-13) || !closeRel(d.PosteriorMeanCoef2[10], gd.coef2At10, 1e-13) {
		t.Errorf("posterior coefficients differ from guided-diffusion's")
	}
	if d.PosteriorVariance[0] != 0 || !closeRel(d.PosteriorMeanCoef1[0], 1, 1e-12) || d.PosteriorMeanCoef2[0] != 0 {
		t.Errorf("at t=0 the posterior is x_0 itself: variance %g, coefs %g %g", d.PosteriorVariance[0], d.PosteriorMeanCoef1[0], d.PosteriorMeanCoef2[0])
	}

	// In graph: mean = coef1 x0 + coef2 xt, per example.
	x0 := gradcheck.RandomTensor(1, 3, 2, 2, 1)
	xt := gradcheck.RandomTensor(2, 3, 2, 2, 1)
	ts := tensors.FromValue([]int32{1, 10, 999})
	outs := MustExecOnceN(backend.Go(), func(x0, xt, ts *Node) []*Node {
		m, v, lv := d.QPosteriorMeanVariance(x0, xt, ts)
		return []*Node{m, v, lv}
	}, x0, xt, ts)
	mean, variance, logVar := tensors.MustCopyFlatData[float64](outs[0]), tensors.MustCopyFlatData[float64](outs[1]), tensors.MustCopyFlatData[float64](outs[2])
	a, b := tensors.MustCopyFlatData[float64](x0), tensors.MustCopyFlatData[float64](xt)
	for k, step := range []int{1, 10, 999} {
		for j := range 4 {
			i := 4*k + j
			if want := d.PosteriorMeanCoef1[step]*a[i] + d.PosteriorMeanCoef2[step]*b[i]; !closeRel(mean[i], want, 1e-14) {
				t.Errorf("posterior mean at t=%d: %g, want %g", step, mean[i], want)
			}
			if variance[i] != d.PosteriorVariance[step] || logVar[i] != d.PosteriorLogVarianceClipped[step] {
				t.Errorf("posterior variance at t=%d: %g (log %g)", step, variance[i], logVar[i])
			}
		}
	}
}

func TestQSampleStatistics(t *testing.T) {
	d := mustNew(t, DefaultConfig(false))
	steps := []int32{0, 100, 500, 999}
	const n = 32 * 32 * 3
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(3); err != nil {
		t.Fatal(err)
	}
	x0 := tensors.FromValue(slices.Repeat([]float64{0.5}, 4*n))
	x0 = tensors.FromFlatDataAndDimensions(tensors.MustCopyFlatData[float64](x0), 4, 32, 32, 3)
	out := model.MustExecOnce(backend.Go(), store, func(scope *model.Scope, x0, ts *Node) *Node {
		return d.QSample(x0, ts, scope.RandomNormal(x0.Graph(), x0.Shape()))
	}, x0, tensors.FromValue(steps))
	v := tensors.MustCopyFlatData[float64](out)
	for k, step := range steps {
		var sum, sumSq float64
		for _, x := range v[k*n : (k+1)*n] {
			sum += x
			sumSq += x * x
		}
		mean := sum / n
		variance := sumSq/n - mean*mean
		wantMean, wantVar := 0.5*d.SqrtAlphasCumprod[step], 1-d.AlphasCumprod[step]
		if math.Abs(mean-wantMean) > 5*math.Sqrt(wantVar/n)+1e-12 || math.Abs(variance-wantVar) > 5*wantVar*math.Sqrt(2.0/n)+1e-12 {
			t.Errorf("t=%d: mean %.5f variance %.5f, want %.5f and %.5f", step, mean, variance, wantMean, wantVar)
		}
	}
	// With a given noise, exactly sqrt(alphā) x0 + sqrt(1-alphā) noise.
	noise := gradcheck.RandomTensor(4, 1, 1, 1, 2)
	x := gradcheck.RandomTensor(5, 1, 1, 1, 2)
	got := tensors.MustCopyFlatData[float64](MustExecOnce(backend.Go(), func(x, noise *Node) *Node {
		return d.QSample(x, Const(x.Graph(), []int32{149}), noise)
	}, x, noise))
	xv, nv := tensors.MustCopyFlatData[float64](x), tensors.MustCopyFlatData[float64](noise)
	for i := range got {
		ac := guidedDiffusion.linearAlphasCumprod[149]
		if want := math.Sqrt(ac)*xv[i] + math.Sqrt(1-ac)*nv[i]; !closeRel(got[i], want, 1e-13) {
			t.Errorf("q_sample: %g, want %g", got[i], want)
		}
	}
}

func TestSpaceTimesteps(t *testing.T) {
	for _, tc := range []struct {
		n     int
		spec  string
		first []int
		last  []int
		count int
	}{
		// guided-diffusion's space_timesteps(1000, "50"), (300, "10,15,20"), (1000, "ddim50").
		{1000, "50", []int{0, 20, 41, 61, 82}, []int{958, 979, 999}, 50},
		{300, "10,15,20", []int{0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 100, 107}, []int{289, 294, 299}, 45},
		{1000, "ddim50", []int{0, 20, 40}, []int{960, 980}, 50},
	} {
		got, err := SpaceTimesteps(tc.n, tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.count || !slices.Equal(got[:len(tc.first)], tc.first) || !slices.Equal(got[len(got)-len(tc.last):], tc.last) {
			t.Errorf("SpaceTimesteps(%d, %q) = %v", tc.n, tc.spec, got)
		}
	}
	if _, err := SpaceTimesteps(10, "20"); err == nil {
		t.Errorf("20 of 10 steps: want an error")
	}

	d := mustNew(t, DefaultConfig(true))
	s, err := d.RespaceSteps(50)
	if err != nil {
		t.Fatal(err)
	}
	if s.NumTimesteps != 50 || s.OriginalSteps != 1000 || s.TimestepMap[1] != 20 || s.TimestepMap[49] != 999 {
		t.Errorf("respaced: %d steps, map %v", s.NumTimesteps, s.TimestepMap)
	}
	for i, orig := range s.TimestepMap {
		if !closeRel(s.AlphasCumprod[i], d.AlphasCumprod[orig], 1e-12) {
			t.Errorf("respaced alphā[%d] = %g, original alphā[%d] = %g", i, s.AlphasCumprod[i], orig, d.AlphasCumprod[orig])
		}
	}
}

func TestNormalKLAndDiscretizedLikelihood(t *testing.T) {
	// 256 bins of x, a Gaussian of mean 0.1 and std 0.3: probabilities sum to 1.
	xs := make([]float64, 256)
	for k := range xs {
		xs[k] = float64(k)/255*2 - 1
	}
	means := slices.Repeat([]float64{0.1}, 256)
	logScales := slices.Repeat([]float64{math.Log(0.3)}, 256)
	ll := tensors.MustCopyFlatData[float64](MustExecOnce(backend.Go(), func(x, m, s *Node) *Node {
		return DiscretizedGaussianLogLikelihood(x, m, s)
	}, xs, means, logScales))
	total := 0.0
	for _, v := range ll {
		total += math.Exp(v)
	}
	if math.Abs(total-1) > 1e-9 {
		t.Errorf("the bins' probabilities sum to %.12f, want 1", total)
	}
	// By hand at x = 0.0 (an interior value), mean 0.1, std 0.3.
	cdf := func(x float64) float64 { return 0.5 * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))) }
	want := math.Log(cdf((0-0.1+1.0/255)/0.3) - cdf((0-0.1-1.0/255)/0.3))
	got := tensors.MustCopyFlatData[float64](MustExecOnce(backend.Go(), func(x, m, s *Node) *Node {
		return DiscretizedGaussianLogLikelihood(x, m, s)
	}, []float64{0}, []float64{0.1}, []float64{math.Log(0.3)}))
	if !closeRel(got[0], want, 1e-13) {
		t.Errorf("log-likelihood at 0: %g, by hand %g", got[0], want)
	}

	kl := tensors.MustCopyFlatData[float64](MustExecOnce(backend.Go(), func(m1, l1, m2, l2 *Node) *Node {
		return NormalKL(m1, l1, m2, l2)
	}, []float64{0, 0.3, 0}, []float64{0, -1, math.Log(2)}, []float64{1, 0.3, 0}, []float64{0, -1, 0}))
	// KL(N(0,1)||N(1,1)) = 1/2; identical = 0; KL(N(0,2)||N(0,1)) = (log(1/2) + 2 - 1)/2.
	for i, want := range []float64{0.5, 0, 0.5 * (math.Log(0.5) + 1)} {
		if math.Abs(kl[i]-want) > 1e-15 {
			t.Errorf("KL #%d = %g, want %g", i, kl[i], want)
		}
	}
}

func TestLikelihoodGradients(t *testing.T) {
	x := gradcheck.RandomTensor(1, 2, 5)
	m := gradcheck.RandomTensor(2, 2, 5)
	s := gradcheck.RandomTensor(3, 2, 5)
	gradcheck.Check(t, gradcheck.Options{Inputs: []int{1, 2}, SkipVariables: true}, func(_ *model.Scope, in []*Node) *Node {
		return Add(DiscretizedGaussianLogLikelihood(in[0], in[1], MulScalar(in[2], 0.5)),
			NormalKL(in[0], in[2], in[1], MulScalar(in[2], -0.3)))
	}, x, m, s)
}

// TestLossTerms checks guided-diffusion's training losses on hand-made cases: a model that
// returns the true noise has MSE 0; with its variance output at -1 (the posterior's variance)
// the VLB term is 0 for t > 0 and the decoder's NLL, computed by hand, at t = 0; the VLB term
// trains only the variance.
func TestLossTerms(t *testing.T) {
	x0 := gradcheck.RandomTensor(7, 4, 4, 4, 3) // in (-1, 1): interior bins
	noise := gradcheck.RandomTensor(8, 4, 4, 4, 3)
	ts := tensors.FromValue([]int32{0, 1, 500, 999})

	t.Run("fixed/mse", func(t *testing.T) {
		d := mustNew(t, DefaultConfig(false))
		outs := model.MustExecOnceN(backend.Go(), model.NewStore(), func(scope *model.Scope, x0, noise, ts *Node) []*Node {
			oracle := func(_ *model.Scope, xt, tm, y *Node) (*Node, *Node) { return noise, nil }
			terms := d.LossTerms(scope, oracle, x0, ts, noise, nil)
			if _, ok := terms[TermVB]; ok {
				t.Errorf("a fixed variance has no vb term")
			}
			return []*Node{terms[TermMSE], terms[TermLoss]}
		}, x0, noise, ts)
		for _, o := range outs {
			for _, v := range tensors.MustCopyFlatData[float64](o) {
				if v != 0 {
					t.Errorf("the true noise gives a non-zero loss %g", v)
				}
			}
		}
	})

	t.Run("learned/hybrid", func(t *testing.T) {
		d := mustNew(t, DefaultConfig(true))
		outs := model.MustExecOnceN(backend.Go(), model.NewStore(), func(scope *model.Scope, x0, noise, ts *Node) []*Node {
			delta := ZerosLike(noise)
			varValues := MulScalar(OnesLike(noise), -1)
			m := func(_ *model.Scope, xt, tm, y *Node) (*Node, *Node) { return Add(noise, delta), varValues }
			terms := d.LossTerms(scope, m, x0, ts, noise, nil)
			grads := Gradient(ReduceAllSum(terms[TermVB]), delta, varValues)
			mseGrad := Gradient(ReduceAllSum(terms[TermMSE]), varValues)[0]
			return []*Node{terms[TermMSE], terms[TermVB], terms[TermLoss], grads[0], grads[1], mseGrad}
		}, x0, noise, ts)
		mse, vb, loss := tensors.MustCopyFlatData[float64](outs[0]), tensors.MustCopyFlatData[float64](outs[1]), tensors.MustCopyFlatData[float64](outs[2])
		// Decoder NLL at t=0 by hand: mean = x0 (coef2[0] = 0), std = exp(log(beta~_1)/2),
		// every x0 interior, so each element's probability is the same bin mass.
		sigma := math.Sqrt(d.PosteriorVariance[1])
		cdf := func(x float64) float64 { return 0.5 * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))) }
		nll := -math.Log(cdf(1.0/255/sigma)-cdf(-1.0/255/sigma)) / math.Ln2
		t.Logf("vb per example (t = 0, 1, 500, 999): %.6g; decoder NLL by hand %.6g bits", vb, nll)
		for k := range 4 {
			if math.Abs(mse[k]) > 1e-30 {
				t.Errorf("example %d: mse %g, want 0", k, mse[k])
			}
			want := 0.0
			if k == 0 {
				want = nll
			}
			if math.Abs(vb[k]-want) > 1e-9*max(1, want) {
				t.Errorf("example %d (t=%d): vb %.12g, want %.12g", k, []int{0, 1, 500, 999}[k], vb[k], want)
			}
			if loss[k] != mse[k]+vb[k] {
				t.Errorf("loss %g != mse %g + vb %g", loss[k], mse[k], vb[k])
			}
		}
		for _, v := range tensors.MustCopyFlatData[float64](outs[3]) {
			if v != 0 {
				t.Fatalf("the vb term has a gradient %g with respect to the mean output: it must be frozen", v)
			}
		}
		if norm := l2(tensors.MustCopyFlatData[float64](outs[4])); norm == 0 {
			t.Errorf("the vb term has no gradient with respect to the variance output")
		}
		if norm := l2(tensors.MustCopyFlatData[float64](outs[5])); norm != 0 {
			t.Errorf("the mse term has a gradient with respect to the variance output")
		}
	})

	t.Run("rescaled", func(t *testing.T) {
		// At 100 steps RescaledMSE scales the vb term by 100/1000.
		cfg := Config{Steps: 100, Schedule: Linear, VarType: LearnedRange}
		plain := mustNew(t, cfg)
		cfg.LossType = RescaledMSE
		rescaled := mustNew(t, cfg)
		vbOf := func(d *Diffusion) []float64 {
			out := model.MustExecOnce(backend.Go(), model.NewStore(), func(scope *model.Scope, x0, noise *Node) *Node {
				m := func(_ *model.Scope, xt, tm, y *Node) (*Node, *Node) {
					return MulScalar(noise, 0.9), MulScalar(noise, 0.5)
				}
				return d.LossTerms(scope, m, x0, Const(x0.Graph(), []int32{0, 3, 50, 99}), noise, nil)[TermVB]
			}, x0, noise)
			return tensors.MustCopyFlatData[float64](out)
		}
		a, b := vbOf(plain), vbOf(rescaled)
		for i := range a {
			if !closeRel(b[i], a[i]*0.1, 1e-12) || a[i] <= 0 {
				t.Errorf("vb %g rescaled to %g, want a positive value times 0.1", a[i], b[i])
			}
		}
	})
}

func l2(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// oracle is a perfect noise predictor for a known x0 under the original process d0: it returns
// the eps with x_t = sqrt(alphā) x0 + sqrt(1-alphā) eps, whatever x_t.
func oracle(d0 *Diffusion, x0 *tensors.Tensor) Model {
	return func(_ *model.Scope, xt, tm, y *Node) (*Node, *Node) {
		c := ConstTensor(xt.Graph(), x0)
		ti := ConvertDType(tm, dtypes.Int32)
		eps := Div(Sub(xt, Mul(Extract(d0.SqrtAlphasCumprod, ti, xt), c)), Extract(d0.SqrtOneMinusAlphasCumprod, ti, xt))
		return eps, nil
	}
}

// TestSamplersRecoverX0WithAnOracle: DDIM with eta=0 and DDPM both end exactly at x0 when the
// network predicts the true noise (DDPM's last step is the posterior mean at t=0, which is the
// x_0 estimate itself).
func TestSamplersRecoverX0WithAnOracle(t *testing.T) {
	d := mustNew(t, DefaultConfig(false))
	x0 := gradcheck.RandomTensor(9, 2, 4, 4, 3)
	want := tensors.MustCopyFlatData[float64](x0)
	opts := SampleOptions{N: 2, Height: 4, Width: 4, Channels: 3, DType: dtypes.Float64, Steps: 10}
	for name, sample := range map[string]func(*model.Store) (*tensors.Tensor, error){
		"ddim": func(s *model.Store) (*tensors.Tensor, error) {
			return d.SampleDDIM(backend.Go(), s, oracle(d, x0), opts)
		},
		"ddim-noclip-all-steps": func(s *model.Store) (*tensors.Tensor, error) {
			o := opts
			o.Steps, o.NoClip = 0, true
			return d.SampleDDIM(backend.Go(), s, oracle(d, x0), o)
		},
		"ddpm-with-labels": func(s *model.Store) (*tensors.Tensor, error) {
			o := opts
			o.Labels = []int32{4, 1}
			return d.SampleDDPM(backend.Go(), s, oracle(d, x0), o)
		},
	} {
		t.Run(name, func(t *testing.T) {
			store := model.NewStore()
			if err := store.SetRNGStateFromSeed(5); err != nil {
				t.Fatal(err)
			}
			got, err := sample(store)
			if err != nil {
				t.Fatal(err)
			}
			g := tensors.MustCopyFlatData[float64](got)
			worst := 0.0
			for i := range g {
				worst = max(worst, math.Abs(g[i]-want[i]))
			}
			if worst > 1e-9 {
				t.Errorf("the sample differs from x0 by up to %g", worst)
			}
		})
	}
}
