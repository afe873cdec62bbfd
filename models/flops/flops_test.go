package flops

import (
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

func inspect(t *testing.T, dims []int, fn func(scope *model.Scope, x *Node) *Node) Report {
	t.Helper()
	r, err := Inspect(backend.Go(), shapes.Make(dtypes.Float32, dims...), func(scope *model.Scope, x *Node) map[string]*Node {
		return map[string]*Node{"y": fn(scope, x)}
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestHandComputed compares with MACs worked out by hand: output elements x (kernel taps x
// input channels per group) for convolutions, output elements x inputs for linear layers.
func TestHandComputed(t *testing.T) {
	x := []int{2, 8, 8, 4}
	cases := []struct {
		name string
		fn   func(scope *model.Scope, x *Node, l nn.Lowering) *Node
		macs int64
	}{
		{"conv3x3", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.Conv(s, x, 6).Kernel(3).Padding(1).WithLowering(l).Done()
		}, 2 * 8 * 8 * 6 * (3 * 3 * 4)},
		{"conv3x3/s2", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.Conv(s, x, 6).Kernel(3).Stride(2).Padding(1).WithLowering(l).Done()
		}, 2 * 4 * 4 * 6 * (3 * 3 * 4)},
		{"conv1x1/s2", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.Conv(s, x, 5).Stride(2).WithLowering(l).Done()
		}, 2 * 4 * 4 * 5 * 4},
		{"grouped3x3", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.Conv(s, x, 6).Kernel(3).Padding(1).Groups(2).WithLowering(l).Done()
		}, 2 * 8 * 8 * 6 * (3 * 3 * 2)},
		{"depthwise7x7", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.Conv(s, x, 4).Kernel(7).Padding(3).Groups(4).WithLowering(l).Done()
		}, 2 * 8 * 8 * 4 * 49},
		{"patchify4x4", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.Conv(s, x, 3).Kernel(4).Stride(4).WithLowering(l).Done()
		}, 2 * 2 * 2 * 3 * (4 * 4 * 4)},
		{"linear", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.Linear(s, nn.GlobalAvgPool(x), 7).Done()
		}, 2 * 7 * 4},
		{"linear/channels-last", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.Linear(s, x, 16).Done()
		}, 2 * 8 * 8 * 16 * 4},
		{"batched-dot", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			q := Reshape(x, 2, 64, 4)
			return Dot(q, q).General([]int{2}, []int{0}, []int{2}, []int{0}) // [2, 64, 64]
		}, 2 * 64 * 64 * 4},
		{"elementwise-not-counted", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			return nn.GELU(nn.LayerNorm(s, nn.MaxPool2D(x, 3, 2, 1), 1e-6))
		}, 0},
		{"small-model", func(s *model.Scope, x *Node, l nn.Lowering) *Node {
			h := nn.ReLU(nn.BatchNorm(s.In("bn"), nn.Conv(s.In("conv1"), x, 8).Kernel(3).Padding(1).WithLowering(l).Done()).Done())
			h = nn.Conv(s.In("conv2"), h, 8).Kernel(3).Stride(2).Padding(1).WithLowering(l).Done()
			return nn.Linear(s.In("fc"), nn.GlobalAvgPool(h), 10).Done()
		}, 2*8*8*8*(9*4) + 2*4*4*8*(9*8) + 2*10*8},
	}
	for _, tc := range cases {
		for _, l := range []nn.Lowering{nn.LoweringNative, nn.LoweringMatMul} {
			name := tc.name + map[nn.Lowering]string{nn.LoweringNative: "/native", nn.LoweringMatMul: "/matmul"}[l]
			t.Run(name, func(t *testing.T) {
				r := inspect(t, x, func(s *model.Scope, x *Node) *Node { return tc.fn(s, x, l) })
				if r.MACs() != tc.macs {
					t.Errorf("%d MACs (%+v), want %d", r.MACs(), r.Counts, tc.macs)
				}
				if r.FLOPs() != 2*tc.macs {
					t.Errorf("%d FLOPs, want %d", r.FLOPs(), 2*tc.macs)
				}
			})
		}
	}
}

// TestNativeConvIsCountedAsConv checks that the native path really produces ConvGeneral nodes
// (and the lowering DotGenerals or depthwise taps), so both branches of the counter are covered.
func TestNativeConvIsCountedAsConv(t *testing.T) {
	dims := []int{1, 6, 6, 4}
	native := inspect(t, dims, func(s *model.Scope, x *Node) *Node {
		return nn.Conv(s, x, 4).Kernel(3).Padding(1).Groups(4).WithLowering(nn.LoweringNative).Done()
	})
	lowered := inspect(t, dims, func(s *model.Scope, x *Node) *Node {
		return nn.Conv(s, x, 4).Kernel(3).Padding(1).Groups(4).WithLowering(nn.LoweringMatMul).Done()
	})
	if native.ConvGeneral == 0 || native.Depthwise != 0 || lowered.Depthwise == 0 || lowered.ConvGeneral != 0 {
		t.Errorf("native %+v, lowered %+v", native.Counts, lowered.Counts)
	}
}

// TestKnownModels compares full backbones at 224x224 with the MACs of torchvision's models,
// counted over their Conv2d and Linear modules with forward hooks (out.numel() *
// weight[0].numel() for convolutions, out.numel() * in_features for linear layers; Debian's
// /usr/bin/python3, torch 1.13, torchvision 0.14). torchvision's documentation lists ResNet-18
// as 1.81 "GFLOPS" (GMACs) and ConvNeXt-T as 4.46. Graphs are built, not executed.
func TestKnownModels(t *testing.T) {
	for name, want := range map[string]int64{
		"resnet18":      1_814_073_344,
		"convnext_tiny": 4_455_531_264,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Backbone(backend.Go(), name, backbones.Options{NumClasses: 1000}, 1, 224, 224)
			if err != nil {
				t.Fatal(err)
			}
			if r.MACs() != want {
				t.Errorf("%s: %d MACs (%+v), torchvision %d", name, r.MACs(), r.Counts, want)
			}
			t.Logf("%s at 224x224: %s, %d parameters", name, r.Counts, r.Params)
		})
	}
}

func TestString(t *testing.T) {
	c := Counts{DotGeneral: 1_814_073_344}
	if got, want := c.String(), "3.628 GFLOPs (1.814 GMACs)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestInspectReportsErrors(t *testing.T) {
	_, err := Inspect(backend.Go(), shapes.Make(dtypes.Float32, 2, 3), func(scope *model.Scope, x *Node) map[string]*Node {
		return map[string]*Node{"y": nn.GlobalAvgPool(x)} // wants rank 4
	})
	if err == nil {
		t.Fatal("no error for a model that panics while building")
	}
	t.Log(err)
	if _, err := Backbone(backend.Go(), "resnet7", backbones.Options{}, 1, 32, 32); err == nil {
		t.Error("no error for an unknown backbone")
	}
}

// TestCountWholeGraph checks Count against CountFrom: a node no output uses is counted by the
// former only.
func TestCountWholeGraph(t *testing.T) {
	g := NewGraph(backend.Go(), "test")
	defer g.Finalize()
	x := Parameter(g, "x", shapes.Make(dtypes.Float32, 3, 4))
	used := Dot(x, Transpose(x, 0, 1)).Product() // 3x3 outputs x 4
	_ = Dot(Transpose(x, 0, 1), x).Product()     // 4x4 outputs x 3, unused
	if c := CountFrom(used); c.MACs() != 36 {
		t.Errorf("CountFrom: %d MACs, want 36", c.MACs())
	}
	if c := Count(g); c.MACs() != 36+48 {
		t.Errorf("Count: %d MACs, want 84", c.MACs())
	}
}
