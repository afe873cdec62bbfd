package diffusion

import (
	"math"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func tinyImages(seed uint64, n, size int) *tensors.Tensor {
	v := tensors.MustCopyFlatData[float64](gradcheck.RandomTensor(seed, n, size, size, 3))
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return tensors.FromFlatDataAndDimensions(f, n, size, size, 3)
}

// TestTinyModelTrainsAndSamples trains adm_tiny for 2 SGD steps on the hybrid loss, then runs
// DDIM and DDPM end to end with it.
func TestTinyModelTrainsAndSamples(t *testing.T) {
	cfg := adm.Configs["adm_tiny"]
	d := mustNew(t, DefaultConfig(cfg.LearnSigma))
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(11); err != nil {
		t.Fatal(err)
	}
	step := model.MustNewExec(testBackend(), store, func(scope *model.Scope, x0 *Node) []*Node {
		g := x0.Graph()
		store.SetTraining(g, true)
		losses := d.TrainingLosses(scope, UNet(cfg), x0, nil)
		var vars []*model.Variable
		for v := range scope.IterVariables() {
			if v.Trainable && v.InUseByGraph(g) {
				vars = append(vars, v)
			}
		}
		grads := scope.BuildTrainableVariablesGradientsGraph(losses[TermLoss])
		for i, v := range vars {
			v.SetNodeValue(Sub(v.NodeValue(g), MulScalar(grads[i], 1e-3)))
		}
		return []*Node{losses[TermLoss], losses[TermMSE], losses[TermVB]}
	})
	x0 := tinyImages(1, 2, 32)
	for i := range 2 {
		outs := step.MustExec(x0)
		loss, mse, vb := outs[0].Value().(float32), outs[1].Value().(float32), outs[2].Value().(float32)
		t.Logf("step %d: loss %.4f = mse %.4f + vb %.4f", i, loss, mse, vb)
		if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) || math.Abs(float64(loss-mse-vb)) > 1e-4*float64(loss) {
			t.Fatalf("step %d: loss %g, mse %g, vb %g", i, loss, mse, vb)
		}
	}
	if w := store.GetVariable("/out/conv/weights"); w == nil || l2f32(tensors.MustCopyFlatData[float32](w.MustValue())) == 0 {
		t.Fatalf("the zero-initialised output conv did not train")
	}

	for name, sample := range map[string]func() (*tensors.Tensor, error){
		"ddim": func() (*tensors.Tensor, error) {
			return d.SampleDDIM(testBackend(), store, UNet(cfg), SampleOptions{N: 2, Height: 32, Width: 32, Channels: 3, Steps: 4, Eta: 0.5})
		},
		"ddpm": func() (*tensors.Tensor, error) {
			return d.SampleDDPM(testBackend(), store, UNet(cfg), SampleOptions{N: 2, Height: 32, Width: 32, Channels: 3, Steps: 3})
		},
	} {
		t.Run(name, func(t *testing.T) {
			img, err := sample()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(img.Shape().Dimensions, []int{2, 32, 32, 3}) || img.DType() != dtypes.Float32 {
				t.Fatalf("samples %s, want (Float32)[2 32 32 3]", img.Shape())
			}
			for _, v := range tensors.MustCopyFlatData[float32](img) {
				if !(v >= -1 && v <= 1) {
					t.Fatalf("sample value %g outside [-1, 1]", v)
				}
			}
		})
	}
}

func l2f32(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// TestEncode: the teacher features of real images, with the shapes the taps declare; fresh
// noise at every call, drawn from the store's RNG (so seeded: the same seed and timestep give
// identical features); and the timestep used both to noise the images and by the UNet.
func TestEncode(t *testing.T) {
	cfg := adm.Configs["adm_tiny"]
	d := mustNew(t, DefaultConfig(cfg.LearnSigma))
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(12); err != nil {
		t.Fatal(err)
	}
	var info []adm.TapInfo
	taps := func(o *adm.Output) []*Node {
		info = o.TapInfo
		var feats []*Node
		for _, ti := range o.TapInfo {
			feats = append(feats, o.Taps[ti.Name])
		}
		return feats
	}
	encAt := model.MustNewExec(testBackend(), store, func(scope *model.Scope, x0 *Node) []*Node {
		return taps(d.EncodeAt(scope, adm.New(scope, cfg), x0, 50, nil))
	})
	x0 := tinyImages(2, 2, 32)
	first := encAt.MustExec(x0)
	second := encAt.MustExec(x0)
	want := []adm.TapInfo{{Name: "dec_s4", Channels: 64, Stride: 4}, {Name: "dec_s2", Channels: 64, Stride: 2}, {Name: "dec_s1", Channels: 32, Stride: 1}}
	if !slices.Equal(info, want) {
		t.Fatalf("taps %v, want %v", info, want)
	}
	for i, ti := range info {
		if dims := first[i].Shape().Dimensions; !slices.Equal(dims, []int{2, 32 / ti.Stride, 32 / ti.Stride, ti.Channels}) {
			t.Errorf("%s: shape %v", ti.Name, dims)
		}
		if equalF32(first[i], second[i]) {
			t.Errorf("%s: two encodings of the same images are identical; the noise must be fresh", ti.Name)
		}
	}

	// The last conv of every residual branch starts at zero (guided-diffusion's zero_module), so
	// at initialisation the UNet's taps do not depend on its timestep input. Give those weights
	// values, as training would.
	rng := gradcheck.RandomTensor(13, 1<<16)
	noiseVals := tensors.MustCopyFlatData[float64](rng)
	for v := range store.IterVariables() {
		val := v.MustValue()
		if !v.Trainable || val.DType() != dtypes.Float32 || slices.ContainsFunc(tensors.MustCopyFlatData[float32](val), func(x float32) bool { return x != 0 }) {
			continue
		}
		vals := make([]float32, val.Shape().Size())
		for i := range vals {
			vals[i] = float32(0.2 * noiseVals[i%len(noiseVals)])
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, val.Shape().Dimensions...))
	}

	// Encode at timesteps t, and the same composition written out with the timestep given to
	// the UNet (tu) separate from the one that noises the images (tq).
	enc := model.MustNewExec(testBackend(), store, func(scope *model.Scope, x0, t *Node) []*Node {
		return taps(d.Encode(scope, adm.New(scope, cfg), x0, t, nil))
	})
	byHand := model.MustNewExec(testBackend(), store, func(scope *model.Scope, x0, tq, tu *Node) []*Node {
		xt := d.QSample(x0, tq, scope.RandomNormal(x0.Graph(), x0.Shape()))
		return taps(adm.New(scope, cfg).Done(xt, d.ModelTimesteps(tu, xt), nil))
	})
	seeded := func(seed int64, exec *model.Exec, args ...any) []*tensors.Tensor {
		if err := store.SetRNGStateFromSeed(seed); err != nil {
			t.Fatal(err)
		}
		return exec.MustExec(args...)
	}
	t50, t500 := tensors.FromValue([]int32{50, 50}), tensors.FromValue([]int32{500, 500})
	at50 := seeded(7, enc, x0, t50)
	again50 := seeded(7, enc, x0, t50)
	at500 := seeded(7, enc, x0, t500)
	hand50 := seeded(7, byHand, x0, t50, t50)
	unetAt500 := seeded(7, byHand, x0, t50, t500)
	otherSeed := seeded(8, enc, x0, t50)
	for i, ti := range info {
		if !equalF32(at50[i], again50[i]) {
			t.Errorf("%s: two encodings with the same seed and timestep differ: the noise must come from the store's RNG", ti.Name)
		}
		if equalF32(at50[i], otherSeed[i]) {
			t.Errorf("%s: encodings with different seeds are identical: the noise is not used", ti.Name)
		}
		if equalF32(at50[i], at500[i]) {
			t.Errorf("%s: encodings at timesteps 50 and 500 are identical: t is not used", ti.Name)
		}
		if !equalF32(at50[i], hand50[i]) {
			t.Errorf("%s: Encode differs from UNet(q_sample(x0, t, noise), t)", ti.Name)
		}
		if equalF32(hand50[i], unetAt500[i]) {
			t.Errorf("%s: the UNet gives the same features at timesteps 50 and 500: it does not use t", ti.Name)
		}
	}
}

func equalF32(a, b *tensors.Tensor) bool {
	return slices.Equal(tensors.MustCopyFlatData[float32](a), tensors.MustCopyFlatData[float32](b))
}

// testBackend is the Go backend (its worker-pool deadlock is fixed in third_party/compute).
func testBackend() compute.Backend { return backend.Go() }
