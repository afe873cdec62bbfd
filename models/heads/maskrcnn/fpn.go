package maskrcnn

import (
	"fmt"
	"math/bits"

	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// FPN builds detectron2's feature pyramid (modeling/backbone/fpn.py with LastLevelMaxPool)
// over the backbone levels named in, finest first (C2..C5): a 1x1 lateral conv and a 3x3
// output conv per level, `channels` wide, with bias and no normalisation (FPN.NORM ""),
// c2_xavier_fill weights; top-down nearest 2x up-sampling summed into the laterals; and one
// extra level P6 = max_pool2d(P5, kernel 1, stride 2) (every other pixel of P5).
//
// The result names its levels P<k> with stride 2^k: P2..P6 for C2..C5. Variables live under
// scope as lateral<k>/ and output<k>/ (detectron2's fpn_lateral<k>, fpn_output<k>). Level sizes
// must halve exactly from one level to the next (detectron2 pads images to a multiple of 32).
func FPN(scope *model.Scope, feats backbones.Features, in []string, channels int) backbones.Features {
	if len(in) == 0 {
		exceptions.Panicf("maskrcnn.FPN: no input levels")
	}
	xs := make([]*Node, len(in))
	stages := make([]int, len(in))
	for i, name := range in {
		xs[i] = feats.Get(name)
		stride := 0
		for _, info := range feats.Info {
			if info.Name == name {
				stride = info.Stride
			}
		}
		if stride <= 0 || stride&(stride-1) != 0 {
			exceptions.Panicf("maskrcnn.FPN: level %s has stride %d, want a power of two", name, stride)
		}
		stages[i] = bits.TrailingZeros(uint(stride))
		if i > 0 {
			prev, cur := xs[i-1].Shape(), xs[i].Shape()
			if stages[i] != stages[i-1]+1 || prev.Dim(1) != 2*cur.Dim(1) || prev.Dim(2) != 2*cur.Dim(2) {
				exceptions.Panicf("maskrcnn.FPN: level %s (%s, stride %d) is not half of level %s (%s): strides must "+
					"double and sizes halve exactly (pad images to a multiple of %d)", name, cur, stride, in[i-1], prev, 1<<stages[len(stages)-1])
			}
		}
	}
	// Top-down, coarsest first.
	outs := make([]*Node, len(in))
	var prev *Node
	for i := len(in) - 1; i >= 0; i-- {
		cin := xs[i].Shape().Dim(3)
		lat := conv2d(scope.In("lateral%d", stages[i]), xs[i], channels, 1, c2XavierFill(cin))
		if prev != nil {
			lat = Add(lat, nn.UpsampleNearest(prev, 2))
		}
		prev = lat
		outs[i] = conv2d(scope.In("output%d", stages[i]), lat, channels, 3, c2XavierFill(9*channels))
	}
	var out backbones.Features
	for i, x := range outs {
		out.Add(backbones.Info{Name: fmt.Sprintf("P%d", stages[i]), Channels: channels, Stride: 1 << stages[i]}, x)
	}
	last := stages[len(stages)-1]
	p6 := Slice(outs[len(outs)-1], AxisRange(), AxisRange().Stride(2), AxisRange().Stride(2), AxisRange())
	out.Add(backbones.Info{Name: fmt.Sprintf("P%d", last+1), Channels: channels, Stride: 1 << (last + 1)}, p6)
	return out
}
