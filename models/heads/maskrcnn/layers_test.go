package maskrcnn

import (
	"math"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func TestConvTranspose2x2MatchesDefinition(t *testing.T) {
	// out[2i+a, 2j+b, o] = sum_c x[i, j, c] * w[a, b, c, o] + bias[o].
	x := gradcheck.RandomTensor(1, 2, 3, 2, 4)
	store := model.NewStore()
	out := model.MustCallOnce(backend.Go(), store, func(scope *model.Scope, x *Node) *Node {
		return convTranspose2x2(scope.In("deconv"), x, 3, normalInit(1))
	}, x)
	w := tensors.MustCopyFlatData[float64](store.GetVariable("/deconv/weights").MustValue())
	xf := tensors.MustCopyFlatData[float64](x)
	got := tensors.MustCopyFlatData[float64](out)
	if d := out.Shape().Dimensions; d[1] != 6 || d[2] != 4 || d[3] != 3 {
		t.Fatalf("shape %s", out.Shape())
	}
	for n := range 2 {
		for y := range 6 {
			for xx := range 4 {
				for o := range 3 {
					i, a, j, b := y/2, y%2, xx/2, xx%2
					want := 0.0
					for c := range 4 {
						want += xf[((n*3+i)*2+j)*4+c] * w[((a*2+b)*4+c)*3+o]
					}
					if g := got[((n*6+y)*4+xx)*3+o]; math.Abs(g-want) > 1e-12 {
						t.Fatalf("(%d,%d,%d,%d): %g, want %g", n, y, xx, o, g, want)
					}
				}
			}
		}
	}
}

func TestLayerGradients(t *testing.T) {
	cfg := Small()
	cfg.NumClasses = 2
	cfg.FPNChannels = 4
	cfg.BoxHeadFCDim = 5
	cfg.MaskHeadConvDim = 3
	cfg.MaskHeadNumConv = 2
	t.Run("deconv", func(t *testing.T) {
		gradcheck.Check(t, gradcheck.Options{}, func(scope *model.Scope, in []*Node) *Node {
			return convTranspose2x2(scope.In("deconv"), in[0], 3, normalInit(0.5))
		}, gradcheck.RandomTensor(2, 2, 3, 2, 4))
	})
	t.Run("fpn+rpn", func(t *testing.T) {
		gradcheck.Check(t, gradcheck.Options{}, func(scope *model.Scope, in []*Node) *Node {
			var f backbones.Features
			for i, x := range in {
				f.Add(backbones.Info{Name: backbones.LevelNames[i], Channels: x.Shape().Dim(3), Stride: 4 << i}, x)
			}
			p := FPN(scope.In("fpn"), f, backbones.LevelNames, cfg.FPNChannels)
			var levels []*Node
			for _, info := range p.Info {
				levels = append(levels, p.Maps[info.Name])
			}
			rpn := RPNHead(scope.In("rpn"), levels, cfg.NumAnchors())
			parts := append(append([]*Node{}, rpn.Logits...), rpn.Deltas...)
			for i, x := range parts {
				parts[i] = ReduceAllSum(Mul(x, Sin(IotaFull(x.Graph(), x.Shape()))))
			}
			return Stack(parts, 0)
		}, gradcheck.RandomTensor(3, 1, 16, 16, 2), gradcheck.RandomTensor(4, 1, 8, 8, 3), gradcheck.RandomTensor(5, 1, 4, 4, 2), gradcheck.RandomTensor(6, 1, 2, 2, 3))
	})
	t.Run("box head", func(t *testing.T) {
		gradcheck.Check(t, gradcheck.Options{}, func(scope *model.Scope, in []*Node) *Node {
			l, d := BoxHead(scope.In("roi_heads"), in[0], cfg)
			return Concatenate([]*Node{l, Reshape(d, 3, 8)}, 1)
		}, gradcheck.RandomTensor(7, 3, 2, 2, 4))
	})
	t.Run("mask head", func(t *testing.T) {
		// Wide enough that no pixel enters the deconv with all channels ReLU'd to zero: its
		// output would then sit exactly on the next ReLU's kink (bias 0), where finite
		// differences see half the slope.
		mcfg := cfg
		mcfg.MaskHeadConvDim = 16
		gradcheck.Check(t, gradcheck.Options{}, func(scope *model.Scope, in []*Node) *Node {
			return MaskHead(scope.In("roi_heads"), in[0], mcfg)
		}, gradcheck.RandomTensor(8, 2, 3, 3, 4))
	})
}

func TestFPNLevels(t *testing.T) {
	out := model.MustCallOnceN(backend.Go(), model.NewStore(), func(scope *model.Scope, in []*Node) []*Node {
		var f backbones.Features
		for i, x := range in {
			f.Add(backbones.Info{Name: backbones.LevelNames[i], Channels: x.Shape().Dim(3), Stride: 4 << i}, x)
		}
		p := FPN(scope.In("fpn"), f, backbones.LevelNames, 8)
		want := []backbones.Info{{Name: "P2", Channels: 8, Stride: 4}, {Name: "P3", Channels: 8, Stride: 8}, {Name: "P4", Channels: 8, Stride: 16}, {Name: "P5", Channels: 8, Stride: 32}, {Name: "P6", Channels: 8, Stride: 64}}
		for i, info := range p.Info {
			if info != want[i] {
				t.Errorf("level %d: %+v, want %+v", i, info, want[i])
			}
		}
		return []*Node{p.Maps["P2"], p.Maps["P5"], p.Maps["P6"]}
	}, gradcheck.RandomTensor(3, 1, 32, 16, 2), gradcheck.RandomTensor(4, 1, 16, 8, 3), gradcheck.RandomTensor(5, 1, 8, 4, 2), gradcheck.RandomTensor(6, 1, 4, 2, 3))
	if d := out[0].Shape().Dimensions; d[1] != 32 || d[2] != 16 || d[3] != 8 {
		t.Errorf("P2 %s", out[0].Shape())
	}
	// P6 is max_pool2d(P5, kernel 1, stride 2): P5's even rows and columns.
	p5, p6 := tensors.MustCopyFlatData[float64](out[1]), tensors.MustCopyFlatData[float64](out[2])
	if d := out[2].Shape().Dimensions; d[1] != 2 || d[2] != 1 {
		t.Fatalf("P6 %s", out[2].Shape())
	}
	for y := range 2 {
		for c := range 8 {
			if p6[y*8+c] != p5[(2*y*2)*8+c] {
				t.Fatalf("P6[%d,0,%d] = %g, want P5[%d,0,%d] = %g", y, c, p6[y*8+c], 2*y, c, p5[(2*y*2)*8+c])
			}
		}
	}
}
