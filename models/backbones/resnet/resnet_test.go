package resnet

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// TestResidualGradients checks the gradients of Basic and Bottleneck blocks, with and without a
// projection shortcut, against finite differences in float64: in training (BatchNorm batch
// statistics) and in inference (running statistics).
func TestResidualGradients(t *testing.T) {
	for _, tc := range []struct {
		name        string
		block       Block
		cin, planes int
		stride      int
		training    bool
	}{
		{"basic/identity/train", Basic, 4, 4, 1, true},
		{"basic/stride2/train", Basic, 3, 4, 2, true},
		{"basic/stride2/eval", Basic, 3, 4, 2, false},
		{"bottleneck/project/train", Bottleneck, 4, 2, 1, true},
		{"bottleneck/stride2/train", Bottleneck, 4, 2, 2, true},
		{"bottleneck/identity/eval", Bottleneck, 8, 2, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := gradcheck.RandomTensor(21, 2, 5, 4, tc.cin)
			gradcheck.Check(t, gradcheck.Options{Training: tc.training}, func(scope *model.Scope, in []*Node) *Node {
				return residual(scope.In("block"), in[0], tc.block, tc.planes, tc.stride)
			}, x)
		})
	}
}

// torchValue is the deterministic value of element i (PyTorch layout) of the tensor with the
// given torchvision key and PyTorch shape, as in the reference script of TestMatchesTorchvision.
func torchValue(key string, torchDims []int, i int) float64 {
	h := 0
	for _, c := range []byte(key) {
		h += int(c)
	}
	v := 0.5 * math.Sin(0.37*float64(i)+float64(h%97))
	switch {
	case strings.HasSuffix(key, "running_var"):
		v = 1 + v*v
	case strings.HasSuffix(key, ".weight") && len(torchDims) == 4:
		fanIn := torchDims[1] * torchDims[2] * torchDims[3]
		v *= math.Sqrt(6 / float64(fanIn))
	}
	return v
}

// TestMatchesTorchvision runs ResNet-18 and ResNet-50 in float64 in inference mode with
// deterministic weights, on one 32x32 image, and compares the logits with torchvision's.
//
// Reference: /usr/bin/python3 (torch 1.13, torchvision 0.14), float64, model.eval():
//
//	val(key, shape) = 0.5 sin(0.37 i + sum(key bytes) % 97) over the flat PyTorch index i;
//	running_var: 1 + val²; conv weights: val * sqrt(6 / fan_in);
//	x[n,h,w,c] = sin(0.05 i) (NHWC flat index), y = model(x.permute(0,3,1,2)).
func TestMatchesTorchvision(t *testing.T) {
	want := map[string]struct{ sum, sumSq float64 }{
		"resnet18": {-121.33250511198, 2594937.88296192},
		"resnet50": {-14.1290427223999, 89377424.2670166},
	}
	wantFirst := map[string][]float64{
		"resnet18": {-71.9293246272016, -49.719078139645, 13.3045199199439},
		"resnet50": {-386.407888357802, 412.026652866291, -278.120112314321},
	}
	for _, name := range []string{"resnet18", "resnet50"} {
		t.Run(name, func(t *testing.T) {
			cfg := Configs[name]
			input := shapes.Make(dtypes.Float64, 1, 32, 32, 3)
			build := func(scope *model.Scope, x *Node) *Node {
				return Build(scope, x, cfg, backbones.Options{NumClasses: 1000}).Logits
			}
			r, err := flops.Inspect(backend.Go(), input, func(scope *model.Scope, x *Node) map[string]*Node {
				return map[string]*Node{"logits": build(scope, x)}
			})
			if err != nil {
				t.Fatal(err)
			}
			store := model.NewStore()
			for path, shape := range r.Variables {
				key, perm := TorchvisionKey(path)
				torchDims := slices.Clone(shape.Dimensions)
				for i, p := range perm {
					torchDims[p] = shape.Dimensions[i]
				}
				vals := make([]float64, shape.Size())
				for i := range vals {
					vals[i] = torchValue(key, torchDims, i)
				}
				v := tensors.FromFlatDataAndDimensions(vals, torchDims...)
				if perm != nil {
					v = MustExecOnce(backend.Go(), func(x *Node) *Node { return TransposeAllAxes(x, perm...) }, v)
				}
				if _, err := store.CreateVariable(path, v); err != nil {
					t.Fatal(err)
				}
			}
			x := tensors.FromShape(input)
			tensors.MustMutableFlatData(x, func(flat []float64) {
				for i := range flat {
					flat[i] = math.Sin(0.05 * float64(i))
				}
			})
			y := tensors.MustCopyFlatData[float64](model.MustExecOnce(backend.Go(), store, build, x))
			var sum, sumSq float64
			for _, v := range y {
				sum += v
				sumSq += v * v
			}
			w := want[name]
			// The logits are large (weights of order one): compare relative to their scale.
			scale := math.Sqrt(w.sumSq / float64(len(y)))
			if math.Abs(sum-w.sum) > 1e-9*scale*float64(len(y)) || math.Abs(sumSq-w.sumSq) > 1e-9*w.sumSq {
				t.Errorf("logits sum %.12g, sum of squares %.12g; torchvision %.12g, %.12g", sum, sumSq, w.sum, w.sumSq)
			}
			for i, v := range wantFirst[name] {
				if math.Abs(y[i]-v) > 1e-9*scale {
					t.Errorf("logit %d = %.12g, torchvision %.12g", i, y[i], v)
				}
			}
		})
	}
}

func TestTorchvisionKey(t *testing.T) {
	for path, want := range map[string]string{
		"/stem/conv1/weights":                    "conv1.weight",
		"/stem/bn1/running_var":                  "bn1.running_var",
		"/layer2/block0/downsample/conv/weights": "layer2.0.downsample.0.weight",
		"/layer2/block0/downsample/bn/offset":    "layer2.0.downsample.1.bias",
		"/layer4/block1/bn2/scale":               "layer4.1.bn2.weight",
		"/head/fc/weights":                       "fc.weight",
		"/head/fc/biases":                        "fc.bias",
	} {
		if got, _ := TorchvisionKey(path); got != want {
			t.Errorf("%s -> %s, want %s", path, got, want)
		}
	}
}
