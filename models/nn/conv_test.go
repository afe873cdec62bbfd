package nn

import (
	"fmt"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// convCases are the configurations our models use (ResNet, ConvNeXt, ADM, BigGAN, heads).
var convCases = []struct {
	name      string
	h, w, cin int
	cout, k   int
	cfg       ConvConfig
}{
	{"3x3", 5, 6, 3, 4, 3, ConvConfig{Padding: SymmetricPadding(1)}},
	{"3x3/s2", 7, 6, 2, 3, 3, ConvConfig{Stride: [2]int{2, 2}, Padding: SymmetricPadding(1)}},
	{"1x1", 4, 3, 3, 5, 1, ConvConfig{}},
	{"1x1/s2", 5, 5, 3, 2, 1, ConvConfig{Stride: [2]int{2, 2}}},
	{"7x7/s2", 9, 8, 2, 3, 7, ConvConfig{Stride: [2]int{2, 2}, Padding: SymmetricPadding(3)}},
	{"patchify2x2/s2", 4, 6, 3, 4, 2, ConvConfig{Stride: [2]int{2, 2}}},
	{"patchify4x4/s4", 8, 4, 2, 3, 4, ConvConfig{Stride: [2]int{4, 4}}},
	{"4x4/s2/p1", 6, 6, 2, 3, 4, ConvConfig{Stride: [2]int{2, 2}, Padding: SymmetricPadding(1)}},
	{"3x3/dilation2", 7, 7, 2, 3, 3, ConvConfig{Padding: SymmetricPadding(2), Dilation: [2]int{2, 2}}},
	{"3x3/groups2", 5, 5, 4, 6, 3, ConvConfig{Padding: SymmetricPadding(1), Groups: 2}},
	{"depthwise7x7", 6, 5, 3, 3, 7, ConvConfig{Padding: SymmetricPadding(3), Groups: 3}},
	{"depthwise3x3", 5, 4, 3, 3, 3, ConvConfig{Padding: SymmetricPadding(1), Groups: 3}},
	{"asymmetric-pad", 5, 4, 2, 2, 3, ConvConfig{Padding: [2][2]int{{0, 1}, {1, 0}}}},
	{"4x4/s4-not-patchify", 6, 8, 2, 3, 4, ConvConfig{Stride: [2]int{4, 4}}}, // 6 is not a multiple of 4
}

func TestConv2DOpMatchesNative(t *testing.T) {
	b := backend.Go()
	for _, tc := range convCases {
		t.Run(tc.name, func(t *testing.T) {
			x := gradcheck.RandomTensor(1, 2, tc.h, tc.w, tc.cin)
			k := gradcheck.RandomTensor(2, tc.k, tc.k, tc.cin/max(tc.cfg.Groups, 1), tc.cout)
			lowered := tc.cfg
			lowered.Lowering = LoweringMatMul
			got := MustExecOnce(b, func(x, k *Node) *Node { return Conv2DOp(x, k, lowered) }, x, k)
			// The reference: the backend's own convolution op, called directly.
			cfg := tc.cfg.withDefaults()
			want := MustExecOnce(b, func(x, k *Node) *Node {
				return Convolve(x, k).StridePerAxis(cfg.Stride[:]...).PaddingPerDim(cfg.Padding[:]).
					DilationPerAxis(cfg.Dilation[:]...).ChannelGroupCount(cfg.Groups).Done()
			}, x, k)
			assertClose(t, got, want, 1e-12)
		})
	}
}

func TestConv2DOpHandComputed(t *testing.T) {
	// 1 image 3x3, 1 channel, values 1..9; kernel 2x2 of ones, stride 1: each output is the sum
	// of a 2x2 window.
	x := tensors.FromFlatDataAndDimensions([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, 1, 3, 3, 1)
	k := tensors.FromFlatDataAndDimensions([]float64{1, 1, 1, 1}, 2, 2, 1, 1)
	got := MustExecOnce(backend.Go(), func(x, k *Node) *Node { return Conv2DOp(x, k, ConvConfig{}) }, x, k)
	want := tensors.FromFlatDataAndDimensions([]float64{12, 16, 24, 28}, 1, 2, 2, 1)
	assertClose(t, got, want, 0)
}

// TestConvGradients checks every configuration with both lowerings against finite differences.
// With LoweringNative the odd kernels go through GoMLX's Convolve and its graph-level gradient
// (what the XLA backend runs); even kernels take the patchify or matmul path on every backend
// (TestConvRouting), because Convolve's input gradient is wrong for them
// (TestConvolveEvenKernelGradientIsWrong).
func TestConvGradients(t *testing.T) {
	for _, lowering := range []Lowering{LoweringMatMul, LoweringNative} {
		for _, tc := range convCases {
			cfg := tc.cfg.withDefaults()
			cfg.Lowering = lowering
			path := chooseConvPath(tc.h, tc.w, tc.k, tc.k, cfg, true)
			t.Run(fmt.Sprintf("%s/%s", lowering, tc.name), func(t *testing.T) {
				t.Logf("computed by the %s path", path)
				x := gradcheck.RandomTensor(3, 2, tc.h, tc.w, tc.cin)
				gradcheck.Check(t, gradcheck.Options{}, func(scope *model.Scope, in []*Node) *Node {
					b := Conv(scope.In("conv"), in[0], tc.cout).Kernel(tc.k)
					b.cfg = cfg
					return b.Done()
				}, x)
			})
		}
	}
}

// TestConvRouting checks which computation each configuration gets, on the Go backend and on
// any other (XLA), for each lowering: even kernels never reach the native op.
func TestConvRouting(t *testing.T) {
	// Kernel = stride, no padding, dilation or groups, input a multiple of the kernel: the
	// reshape + matmul of non-overlapping patches.
	patchify := map[string]bool{"1x1": true, "patchify2x2/s2": true, "patchify4x4/s4": true}
	for _, tc := range convCases {
		for _, onGo := range []bool{true, false} {
			for _, lowering := range []Lowering{LoweringAuto, LoweringNative, LoweringMatMul} {
				cfg := tc.cfg.withDefaults()
				cfg.Lowering = lowering
				got := chooseConvPath(tc.h, tc.w, tc.k, tc.k, cfg, onGo)
				var want convPath
				switch {
				case patchify[tc.name]:
					want = pathPatchify
				case tc.k%2 == 0:
					want = pathMatMul
				case lowering == LoweringNative || lowering == LoweringAuto && !onGo:
					want = pathNative
				default:
					want = pathMatMul
				}
				if got != want {
					t.Errorf("%s, Go backend %v, %s: %s path, want %s", tc.name, onGo, lowering, got, want)
				}
			}
		}
	}
}

// TestConvolveEvenKernelGradientIsWrong documents the GoMLX bug that the routing avoids: the
// input gradient of Convolve itself (graph level, so every backend) is wrong for even kernels.
// If this test fails, GoMLX has fixed it and even kernels may use the native op on XLA.
func TestConvolveEvenKernelGradientIsWrong(t *testing.T) {
	for _, tc := range convCases {
		if tc.k%2 != 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.withDefaults()
			x := gradcheck.RandomTensor(3, 2, tc.h, tc.w, tc.cin)
			k := gradcheck.RandomTensor(4, tc.k, tc.k, tc.cin/cfg.Groups, tc.cout)
			results, err := gradcheck.Run(gradcheck.Options{Inputs: []int{0}}, func(_ *model.Scope, in []*Node) *Node {
				return Convolve(in[0], in[1]).StridePerAxis(cfg.Stride[:]...).PaddingPerDim(cfg.Padding[:]).
					DilationPerAxis(cfg.Dilation[:]...).ChannelGroupCount(cfg.Groups).Done()
			}, x, k)
			if err == nil {
				t.Fatalf("GoMLX's Convolve input gradient now matches finite differences (%+v): the even-kernel routing of Conv2DOp may be relaxed", results)
			}
			t.Logf("as expected: %v", err)
		})
	}
}

func TestConvPaddingSame(t *testing.T) {
	for _, tc := range []struct{ in, k, s, want int }{{7, 3, 1, 7}, {7, 3, 2, 4}, {8, 4, 2, 4}, {6, 7, 1, 6}} {
		x := tensors.FromShape(shapeOf(dtypes.Float32, 1, tc.in, tc.in, 1))
		out := model.MustExecOnce(backend.Go(), model.NewStore(), func(scope *model.Scope, x *Node) *Node {
			return Conv(scope, x, 2).Kernel(tc.k).Stride(tc.s).PaddingSame().Done()
		}, x)
		if got := out.Shape().Dim(1); got != tc.want {
			t.Errorf("in %d, kernel %d, stride %d: output %d, want %d", tc.in, tc.k, tc.s, got, tc.want)
		}
	}
}

func assertClose(t *testing.T, got, want *tensors.Tensor, tol float64) {
	t.Helper()
	if !got.Shape().Equal(want.Shape()) {
		t.Fatalf("shape %s, want %s", got.Shape(), want.Shape())
	}
	g, w := flat64(got), flat64(want)
	for i := range g {
		if d := g[i] - w[i]; d > tol || d < -tol {
			t.Fatalf("element %d: got %g, want %g (tolerance %g)", i, g[i], w[i], tol)
		}
	}
}

func flat64(t *tensors.Tensor) []float64 {
	var out []float64
	t.MustConstFlatData(func(flat any) {
		switch f := flat.(type) {
		case []float64:
			out = append(out, f...)
		case []float32:
			for _, v := range f {
				out = append(out, float64(v))
			}
		default:
			panic(fmt.Sprintf("unsupported %T", flat))
		}
	})
	return out
}
