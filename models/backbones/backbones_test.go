package backbones_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// referenceParams are the parameter counts of the reference implementations with their default
// 1000-class head: sum(p.numel() for p in model.parameters()), BatchNorm running statistics
// excluded. Obtained with Debian's /usr/bin/python3 (torch 1.13, torchvision 0.14) by
//
//	import torchvision
//	for n in ["resnet18", ..., "convnext_base"]:
//	    m = getattr(torchvision.models, n)()
//	    print(n, sum(p.numel() for p in m.parameters()))
//
// For ResNet torchvision is the reference. For ConvNeXt timm is (timm's convnext_tiny/small/base
// list the same counts, 28.59M / 50.22M / 88.59M): torchvision's ConvNeXt has the same parameter
// tensors in a different module layout, and the count follows from timm's convnext.py by hand,
// e.g. for convnext_tiny (dims d = 96, 192, 384, 768; depths 3, 3, 9, 3):
//
//	stem        3*16*96 + 96 (conv) + 2*96 (LayerNorm)                       =     4,896
//	block(d)    49d + d (dw conv) + 2d (LN) + 4d²+4d (fc1) + 4d²+d (fc2) + d (gamma) = 8d² + 58d
//	downsample  2d_in (LN) + 4*d_in*d_out + d_out (2x2 conv)
//	head        2*768 (LN) + 768*1000 + 1000 (fc)                             =   770,536
//
// which sums to 28,589,128.
var referenceParams = map[string]int64{
	"resnet18":       11_689_512,
	"resnet34":       21_797_672,
	"resnet50":       25_557_032,
	"resnet101":      44_549_160,
	"resnet152":      60_192_808,
	"convnext_tiny":  28_589_128,
	"convnext_small": 50_223_688,
	"convnext_base":  88_591_464,
}

// convnextParams is the hand formula of the comment above, for any depths and dims.
func convnextParams(depths, dims [4]int, classes int) int64 {
	n := int64(3*16*dims[0] + dims[0] + 2*dims[0])
	for s := range 4 {
		d := int64(dims[s])
		if s > 0 {
			in := int64(dims[s-1])
			n += 2*in + 4*in*d + d
		}
		n += int64(depths[s]) * (8*d*d + 58*d)
	}
	last := int64(dims[3])
	return n + 2*last + last*int64(classes) + int64(classes)
}

func TestConvNeXtHandFormula(t *testing.T) {
	for name, c := range map[string]struct{ depths, dims [4]int }{
		"convnext_tiny":  {[4]int{3, 3, 9, 3}, [4]int{96, 192, 384, 768}},
		"convnext_small": {[4]int{3, 3, 27, 3}, [4]int{96, 192, 384, 768}},
		"convnext_base":  {[4]int{3, 3, 27, 3}, [4]int{128, 256, 512, 1024}},
	} {
		if got := convnextParams(c.depths, c.dims, 1000); got != referenceParams[name] {
			t.Errorf("%s: hand formula gives %d, torchvision %d", name, got, referenceParams[name])
		}
	}
}

// TestParameterCounts builds every registered backbone with a 1000-class head (graph only:
// nothing is executed) and compares its trainable parameters with the reference count.
func TestParameterCounts(t *testing.T) {
	names := backbones.Names()
	if len(names) != len(referenceParams) {
		t.Errorf("registered backbones %v, the test knows %d: add the new ones to referenceParams", names, len(referenceParams))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			want, ok := referenceParams[name]
			if !ok {
				t.Fatalf("no reference parameter count for %s", name)
			}
			entry, err := backbones.Get(name)
			if err != nil {
				t.Fatal(err)
			}
			if int64(entry.ReferenceCount) != want {
				t.Errorf("registry says %d parameters for %s (%s), want %d", entry.ReferenceCount, name, entry.Reference, want)
			}
			r, err := flops.Backbone(backend.Go(), name, backbones.Options{NumClasses: 1000}, 1, 32, 32)
			if err != nil {
				t.Fatal(err)
			}
			if r.Params != want {
				t.Errorf("%s has %d trainable parameters, the reference %d (difference %d)", name, r.Params, want, r.Params-want)
			}
			if r.Outputs["logits"].Dimensions[1] != 1000 {
				t.Errorf("%s logits %s, want [1, 1000]", name, r.Outputs["logits"])
			}
			t.Logf("%s: %d parameters, %d buffer elements, %d variables", name, r.Params, r.Buffers, len(r.Variables))
		})
	}
}

// TestFeatureShapes builds every backbone (graph only) on 64x64 images and checks the declared
// levels against the maps: names C2..C5, channels, strides and spatial sizes.
func TestFeatureShapes(t *testing.T) {
	for _, name := range backbones.Names() {
		for _, small := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/small=%v", name, small), func(t *testing.T) {
				entry, _ := backbones.Get(name)
				const n, size = 2, 64
				var feats backbones.Features
				_, err := flops.Inspect(backend.Go(), shapes.Make(dtypes.Float32, n, size, size, 3),
					func(scope *model.Scope, x *Node) map[string]*Node {
						out := entry.Build(scope, x, backbones.Options{SmallInputStem: small})
						if out.Logits != nil {
							t.Errorf("logits without NumClasses")
						}
						feats = out.Features
						return out.Features.Maps
					})
				if err != nil {
					t.Fatal(err)
				}
				checkLevels(t, entry, feats, n, size, small)
			})
		}
	}
}

func checkLevels(t *testing.T, entry backbones.Entry, feats backbones.Features, n, size int, small bool) {
	t.Helper()
	if len(feats.Info) != len(entry.Levels) {
		t.Fatalf("%d levels, declared %d", len(feats.Info), len(entry.Levels))
	}
	for i, info := range feats.Info {
		want := entry.Levels[i]
		if small {
			// Small-input stems: ResNet strides 1..8, ConvNeXt 2..16.
			want.Stride = map[string]int{"resnet": 1, "convnext": 2}[entry.Family] << i
		}
		if info != want {
			t.Errorf("level %d is %+v, want %+v", i, info, want)
		}
		got := feats.Maps[info.Name].Shape()
		wantShape := shapes.Make(got.DType, n, size/want.Stride, size/want.Stride, want.Channels)
		if !got.Equal(wantShape) {
			t.Errorf("%s: map %s, want %s", info.Name, got, wantShape)
		}
	}
}

// TestExecute runs the two smallest backbones of each family on the Go backend (batch 1, 64x64)
// in inference mode and checks the shapes and that the outputs are finite.
func TestExecute(t *testing.T) {
	for _, name := range []string{"resnet18", "convnext_tiny"} {
		t.Run(name, func(t *testing.T) {
			entry, _ := backbones.Get(name)
			store := model.NewStore()
			if err := store.SetRNGStateFromSeed(1); err != nil {
				t.Fatal(err)
			}
			x := tensors.FromShape(shapes.Make(dtypes.Float32, 1, 64, 64, 3))
			tensors.MustMutableFlatData(x, func(flat []float32) {
				for i := range flat {
					flat[i] = float32(math.Sin(float64(i) * 0.37))
				}
			})
			outs := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x *Node) []*Node {
				out := entry.Build(scope, x, backbones.Options{NumClasses: 10})
				nodes := []*Node{out.Logits}
				for _, l := range backbones.LevelNames {
					nodes = append(nodes, out.Features.Get(l))
				}
				return nodes
			}, x)
			if got := outs[0].Shape(); !got.Equal(shapes.Make(dtypes.Float32, 1, 10)) {
				t.Errorf("logits %s", got)
			}
			for i, l := range backbones.LevelNames {
				s := backbones.Stride(l)
				want := shapes.Make(dtypes.Float32, 1, 64/s, 64/s, entry.Levels[i].Channels)
				if got := outs[i+1].Shape(); !got.Equal(want) {
					t.Errorf("%s: %s, want %s", l, got, want)
				}
			}
			for i, o := range outs {
				tensors.MustConstFlatData(o, func(flat []float32) {
					var sumSq float64
					for _, v := range flat {
						if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
							t.Fatalf("output %d is not finite", i)
						}
						sumSq += float64(v) * float64(v)
					}
					if sumSq == 0 {
						t.Errorf("output %d is all zeros", i)
					}
				})
			}
		})
	}
}
