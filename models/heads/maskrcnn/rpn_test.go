package maskrcnn

import (
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func TestFindTopProposals(t *testing.T) {
	cfg := Default()
	// Level 0: six anchors; anchor 1 overlaps anchor 0 (IoU 9/11 > 0.7), anchor 3 is clipped to
	// (0, 0, 3, 3). Level 1: a copy of anchor 0 (other level: not suppressed) and a box outside
	// the 64x64 image (empty once clipped). Deltas are zero: proposals are the anchors.
	a0 := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 1, 0, 11, 10, 20, 20, 30, 30, -5, -5, 3, 3, 40, 40, 50, 50, 0, 40, 9, 50}, 6, 4)
	a1 := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 100, 100, 120, 120}, 2, 4)
	l0 := tensors.FromFlatDataAndDimensions([]float32{5, 4, 3, 2, 1, 0}, 1, 6)
	l1 := tensors.FromFlatDataAndDimensions([]float32{4.5, 10}, 1, 2)
	for _, tc := range []struct {
		post  int
		boxes []float32
		valid []bool
	}{
		{3, []float32{0, 0, 10, 10, 0, 0, 10, 10, 20, 20, 30, 30}, []bool{true, true, true}},
		{6, []float32{0, 0, 10, 10, 0, 0, 10, 10, 20, 20, 30, 30, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0}, []bool{true, true, true, true, false, false}},
	} {
		out := model.MustCallOnceN(backend.Go(), model.NewStore(), func(_ *model.Scope, in []*Node) []*Node {
			g := in[0].Graph()
			rpn := RPNOutputs{Logits: []*Node{in[2], in[3]}, Deltas: []*Node{Zeros(g, shapeF32(1, 6, 4)), Zeros(g, shapeF32(1, 2, 4))}}
			p := FindTopProposals(rpn, in[:2], Const(g, [][]float32{{64, 64}}), cfg, 4, tc.post)
			return []*Node{p.Boxes, p.Logits, p.Valid}
		}, a0, a1, l0, l1)
		boxes := tensors.MustCopyFlatData[float32](out[0])
		valid := tensors.MustCopyFlatData[bool](out[2])
		logits := tensors.MustCopyFlatData[float32](out[1])
		if !slices.Equal(boxes, tc.boxes) || !slices.Equal(valid, tc.valid) || logits[0] != 5 || logits[1] != 4.5 || logits[2] != 3 {
			t.Errorf("post %d: boxes %v valid %v logits %v", tc.post, boxes, valid, logits)
		}
	}
}

// TestLossGradients checks the losses' gradients with respect to the predictions (float64).
func TestLossGradients(t *testing.T) {
	cfg := Small()
	anchors := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 20, 20, 30, 30, 0, 0, 5, 5, 40, 40, 50, 50, 2, 1, 12, 12}, 5, 4)
	gtBoxes := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 18, 22, 30, 33}, 1, 2, 4)
	gtValid := tensors.FromFlatDataAndDimensions([]bool{true, true}, 1, 2)
	gradcheck.Check(t, gradcheck.Options{}, func(scope *model.Scope, in []*Node) *Node {
		c, l := RPNLosses(scope, in[2], in[0], in[1], in[3], in[4], cfg)
		return Stack([]*Node{c, l}, 0)
	}, gradcheck.RandomTensor(1, 1, 5), gradcheck.RandomTensor(2, 1, 5, 4), anchors, gtBoxes, gtValid)

	boxes := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 20, 20, 30, 40, 0, 0, 0, 0}, 1, 3, 4)
	gt := tensors.FromFlatDataAndDimensions([]float32{1, 2, 11, 14, 0, 0, 1, 1, 0, 0, 0, 0}, 1, 3, 4)
	classes := tensors.FromFlatDataAndDimensions([]int32{1, 3, -1}, 1, 3)
	gradcheck.Check(t, gradcheck.Options{}, func(_ *model.Scope, in []*Node) *Node {
		g := in[0].Graph()
		s := RoISamples{Boxes: in[2], GTBoxes: in[3], Classes: in[4], Valid: GreaterOrEqual(in[4], Const(g, int32(0)))}
		s.Foreground = LogicalAnd(s.Valid, LessThan(in[4], Const(g, int32(cfg.NumClasses))))
		c, b := BoxLosses(in[0], in[1], s, cfg)
		return Stack([]*Node{c, b}, 0)
	}, gradcheck.RandomTensor(3, 3, 4), gradcheck.RandomTensor(4, 3, 3, 4), boxes, gt, classes)

	targets := tensors.FromFlatDataAndDimensions([]float32{1, 0, 0, 1, 1, 1, 0, 0}, 2, 2, 2)
	gradcheck.Check(t, gradcheck.Options{}, func(_ *model.Scope, in []*Node) *Node {
		g := in[0].Graph()
		return MaskLoss(in[0], Const(g, []int32{2, 3}), Const(g, []bool{true, false}), in[1])
	}, gradcheck.RandomTensor(5, 2, 2, 2, 3), targets)
}

func shapeF32(dims ...int) shapes.Shape { return shapes.Make(dtypes.Float32, dims...) }
