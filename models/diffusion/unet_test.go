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

// TestEncode: the teacher features of real images, with the shapes the taps declare, and fresh
// noise at every call.
func TestEncode(t *testing.T) {
	cfg := adm.Configs["adm_tiny"]
	d := mustNew(t, DefaultConfig(cfg.LearnSigma))
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(12); err != nil {
		t.Fatal(err)
	}
	var info []adm.TapInfo
	enc := model.MustNewExec(testBackend(), store, func(scope *model.Scope, x0 *Node) []*Node {
		o := d.EncodeAt(scope, adm.New(scope, cfg), x0, 50, nil)
		info = o.TapInfo
		var feats []*Node
		for _, ti := range o.TapInfo {
			feats = append(feats, o.Taps[ti.Name])
		}
		return feats
	})
	x0 := tinyImages(2, 2, 32)
	first := enc.MustExec(x0)
	second := enc.MustExec(x0)
	want := []adm.TapInfo{{Name: "dec_s4", Channels: 64, Stride: 4}, {Name: "dec_s2", Channels: 64, Stride: 2}, {Name: "dec_s1", Channels: 32, Stride: 1}}
	if !slices.Equal(info, want) {
		t.Fatalf("taps %v, want %v", info, want)
	}
	for i, ti := range info {
		if dims := first[i].Shape().Dimensions; !slices.Equal(dims, []int{2, 32 / ti.Stride, 32 / ti.Stride, ti.Channels}) {
			t.Errorf("%s: shape %v", ti.Name, dims)
		}
		a, b := tensors.MustCopyFlatData[float32](first[i]), tensors.MustCopyFlatData[float32](second[i])
		if slices.Equal(a, b) {
			t.Errorf("%s: two encodings of the same images are identical; the noise must be fresh", ti.Name)
		}
	}
}

// testBackend is the Go backend (its worker-pool deadlock is fixed in third_party/compute).
func testBackend() compute.Backend { return backend.Go() }
