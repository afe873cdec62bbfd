package pretrain

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/losses/gan"
	"github.com/dreamteacher-go/dreamteacher/models/biggan"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// realBatch makes n 32x32 images in [-1, 1] of smooth colour gradients with labels in [0, 10).
func realBatch(rng *rand.Rand, n int, conditional bool) GANBatch {
	const r = 32
	data := make([]float32, n*r*r*3)
	labels := make([]int32, n)
	for i := range n {
		labels[i] = int32(rng.IntN(10))
		a, b := rng.Float64()*2-1, rng.Float64()*2-1
		for y := range r {
			for x := range r {
				for c := range 3 {
					v := math.Tanh(a*float64(x-16)/8 + b*float64(y-16)/8 + float64(c)*0.3 + float64(labels[i])*0.1)
					data[((i*r+y)*r+x)*3+c] = float32(v)
				}
			}
		}
	}
	b := GANBatch{Images: tensors.FromFlatDataAndDimensions(data, n, r, r, 3)}
	if conditional {
		b.Labels = tensors.FromFlatDataAndDimensions(labels, n)
	}
	return b
}

// snapshot copies the float32 variables under prefix.
func snapshot(store *model.Store, prefix string, trainable bool) map[string][]float32 {
	out := map[string][]float32{}
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), prefix) && v.Trainable == trainable && v.DType().IsFloat() {
			out[v.Path()] = tensors.MustCopyFlatData[float32](v.MustValue())
		}
	}
	return out
}

func changed(before, after map[string][]float32) (n int) {
	for k, v := range before {
		if !slices.Equal(v, after[k]) {
			n++
		}
	}
	return n
}

func allFinite(t *testing.T, store *model.Store) {
	t.Helper()
	for v := range store.IterVariables() {
		if !v.DType().IsFloat() {
			continue
		}
		for _, x := range tensors.MustCopyFlatData[float32](v.MustValue()) {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Errorf("variable %s is not finite", v.Path())
				break
			}
		}
	}
}

func int64Var(t *testing.T, store *model.Store, path string) int64 {
	t.Helper()
	v := store.GetVariable(path)
	if v == nil {
		t.Fatalf("no variable %s", path)
	}
	return v.MustValue().Value().(int64)
}

// TestGANTrainTiny trains biggan_tiny for a few iterations of 2 D steps and 1 G step on the Go
// backend: D's loss changes, every variable stays finite, each step changes only its own
// network's weights, the step counters of each network are separate, and the EMA of G exists.
func TestGANTrainTiny(t *testing.T) {
	cfg := biggan.Configs["biggan_tiny"]
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(11); err != nil {
		t.Fatal(err)
	}
	tcfg := DefaultGANTrainConfig()
	tr, err := NewGANTrainer(backend.Go(), store, cfg, tcfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 4
	next := func() GANBatch { return realBatch(rng, n, true) }

	if _, err := tr.Step(next()); err == nil || !strings.Contains(err.Error(), "takes 2 real batches") {
		t.Errorf("one batch for 2 D steps: %v", err)
	}
	var dLosses []float64
	var gFirst, dFirst map[string][]float32
	for it := 1; it <= 3; it++ {
		res, err := tr.Step(next(), next())
		if err != nil {
			t.Fatal(err)
		}
		if !res.Finite() {
			t.Fatalf("iteration %d: a step was not finite: %+v", it, res)
		}
		if res.Iteration != int64(it) || res.D[0].Step != int64(2*it-1) || res.D[1].Step != int64(2*it) || res.G.Step != int64(it) {
			t.Errorf("iteration %d: steps D %d, %d and G %d", it, res.D[0].Step, res.D[1].Step, res.G.Step)
		}
		if math.Abs(res.D[0].LR-tcfg.DLR) > 1e-9 || math.Abs(res.G.LR-tcfg.GLR) > 1e-9 {
			t.Errorf("learning rates D %g and G %g", res.D[0].LR, res.G.LR)
		}
		for _, d := range res.D {
			dLosses = append(dLosses, d.Loss())
		}
		terms := res.Terms()
		t.Logf("iteration %d: %v", it, terms)
		if got := terms["d/loss"]; math.Abs(got-(terms["d/real"]+terms["d/fake"])) > 1e-5 {
			t.Errorf("d/loss %g is not d/real + d/fake", got)
		}
		if it == 1 {
			gFirst, dFirst = snapshot(store, "/generator/", true), snapshot(store, "/discriminator/", true)
		}
	}
	if changed(gFirst, snapshot(store, "/generator/", true)) == 0 || changed(dFirst, snapshot(store, "/discriminator/", true)) == 0 {
		t.Errorf("iterations 2 and 3 did not change both networks")
	}
	if slices.Min(dLosses) == slices.Max(dLosses) {
		t.Errorf("D's loss did not change: %v", dLosses)
	}
	allFinite(t, store)
	if d, g, s := int64Var(t, store, GANDStepVar), int64Var(t, store, GANGStepVar), train.CurrentStep(store); d != 6 || g != 3 || s != 3 {
		t.Errorf("counters: D %d, G %d, %s %d; want 6, 3, 3", d, g, train.StepVar, s)
	}
	if store.GetVariable("/ema/generator/blocks/block0/conv1/weights") == nil || store.GetVariable("/ema/discriminator/linear/weights") != nil {
		t.Errorf("the EMA must cover G and only G")
	}

	// Isolation: one D step leaves G's weights, one G step leaves D's weights. (G's BN
	// statistics and spectral-norm vectors do move in a D step: G runs in training mode in both
	// steps, as in the reference.)
	gBefore, dBefore := snapshot(store, "/generator/", true), snapshot(store, "/discriminator/", true)
	b := next()
	if _, err := tr.d.Step(b.Images, b.Labels); err != nil {
		t.Fatal(err)
	}
	if k := changed(gBefore, snapshot(store, "/generator/", true)); k != 0 {
		t.Errorf("a D step changed %d of G's weights", k)
	}
	if changed(dBefore, snapshot(store, "/discriminator/", true)) == 0 {
		t.Errorf("a D step changed none of D's weights")
	}
	dBefore = snapshot(store, "/discriminator/", true)
	if _, err := tr.g.Step(tensors.FromValue(int32(0))); err != nil {
		t.Fatal(err)
	}
	if k := changed(dBefore, snapshot(store, "/discriminator/", true)); k != 0 {
		t.Errorf("a G step changed %d of D's weights", k)
	}

	// The teacher: samples of the EMA generator in eval mode, with truncation and two taps.
	sampler, err := biggan.NewSampler(backend.Go(), store, cfg, biggan.SamplerOptions{BatchSize: 3, Truncation: 1, UseEMA: true, Taps: []string{"g_s8", "g_s2"}})
	if err != nil {
		t.Fatal(err)
	}
	buffers := snapshot(store, "/generator/", false)
	smp, err := sampler.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if k := changed(buffers, snapshot(store, "/generator/", false)); k != 0 {
		t.Errorf("sampling in eval mode changed %d of G's statistics", k)
	}
	if !slices.Equal(smp.Images.Shape().Dimensions, []int{3, 32, 32, 3}) || !slices.Equal(smp.Labels.Shape().Dimensions, []int{3}) ||
		!slices.Equal(smp.Taps["g_s8"].Shape().Dimensions, []int{3, 4, 4, 128}) || !slices.Equal(smp.Taps["g_s2"].Shape().Dimensions, []int{3, 16, 16, 128}) {
		t.Errorf("sample: images %s, labels %s, taps %v", smp.Images.Shape(), smp.Labels.Shape(), smp.Taps)
	}
	if want := []biggan.TapInfo{{Name: "g_s8", Channels: 128, Stride: 8}, {Name: "g_s2", Channels: 128, Stride: 2}}; !slices.Equal(smp.TapInfo, want) {
		t.Errorf("tap info %v, want %v", smp.TapInfo, want)
	}
	for _, v := range tensors.MustCopyFlatData[float32](smp.Images) {
		if !(v >= -1 && v <= 1) {
			t.Fatalf("sampled pixel %g", v)
		}
	}
	ema := store.GetVariable("/ema/generator/blocks/block0/bn1/running_mean")
	if ema == nil || !slices.Equal(tensors.MustCopyFlatData[float32](ema.MustValue()), buffers["/generator/blocks/block0/bn1/running_mean"]) {
		t.Errorf("the EMA generator must use G's running statistics")
	}
}

// TestGANTrainUnconditionalNonSaturating runs one iteration of the unconditional tiny model with
// the non-saturating loss and one D step per G step.
func TestGANTrainUnconditionalNonSaturating(t *testing.T) {
	cfg := biggan.Configs["biggan_tiny_uncond"]
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(12); err != nil {
		t.Fatal(err)
	}
	tcfg := DefaultGANTrainConfig()
	tcfg.Loss, tcfg.DSteps, tcfg.EMADecay = gan.NonSaturating, 1, 0
	tr, err := NewGANTrainer(backend.Go(), store, cfg, tcfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	if _, err := tr.Step(realBatch(rng, 4, true)); err == nil || !strings.Contains(err.Error(), "unconditional") {
		t.Errorf("labels for an unconditional model: %v", err)
	}
	res, err := tr.Step(realBatch(rng, 4, false))
	if err != nil {
		t.Fatal(err)
	}
	d := res.D[0].Terms
	if !res.Finite() || d["real"] <= 0 || d["fake"] <= 0 || math.Abs(d["loss"]-d["real"]-d["fake"]) > 1e-5 {
		t.Errorf("first D step: %v (the logistic loss's parts are positive)", d)
	}
	// The non-saturating G loss, the mean of softplus(-D(G(z))), is at least softplus of minus
	// the mean logit d_fake (Jensen). (D's logits on the fakes can be large at the orthogonal
	// init, whose spectrally normalised layers keep every singular value at 1: the loss may
	// then round to 0.)
	if g := res.G.Terms; !(g["loss"] >= 0) || g["loss"] < math.Log1p(math.Exp(-g["d_fake"]))*(1-1e-4)-1e-7 {
		t.Errorf("G step: %v, want loss >= softplus(-d_fake)", g)
	}
	if _, err := tr.Step(realBatch(rng, 2, false)); err == nil || !strings.Contains(err.Error(), "fixed size") {
		t.Errorf("a batch of another size: %v", err)
	}
	sampler, err := biggan.NewSampler(backend.Go(), store, cfg, biggan.SamplerOptions{BatchSize: 2, UseEMA: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sampler.Sample(); err == nil || !strings.Contains(err.Error(), "EMA decay") {
		t.Errorf("EMA sampling without an EMA: %v", err)
	}
	allFinite(t, store)
}

func TestGANTrainConfigValidate(t *testing.T) {
	if err := DefaultGANTrainConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultGANTrainConfig()
	c.DSteps = 0
	if err := c.Validate(); err == nil {
		t.Errorf("DSteps 0 accepted")
	}
	if explicit(0) == 0 || float32(explicit(0)) != 0 || 1-explicit(0) != 1 || explicit(0.5) != 0.5 {
		t.Errorf("explicit(0) = %g must be 0 in every Adam computation", explicit(0))
	}
}
