package maskrcnn

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Boxes are [..., 4] tensors of (x1, y1, x2, y2) in input-image pixels, as detectron2's
// Boxes (XYXY_ABS). Box arithmetic runs in float32, as detectron2 does even under AMP.

// boxDType is the dtype of every box computation.
var boxDType = dtypes.Float32

// coord returns coordinate i (0..3) of boxes [..., 4] as [...].
func coord(b *Node, i int) *Node {
	r := b.Rank()
	return Squeeze(SliceAxis(b, r-1, AxisRange(i, i+1)), r-1)
}

// splitBoxes returns the four coordinates of boxes [..., 4], each [...].
func splitBoxes(b *Node) (x1, y1, x2, y2 *Node) {
	if b.Shape().Dim(-1) != 4 {
		exceptions.Panicf("maskrcnn: boxes must be [..., 4], got %s", b.Shape())
	}
	return coord(b, 0), coord(b, 1), coord(b, 2), coord(b, 3)
}

// stackBoxes is the inverse of splitBoxes.
func stackBoxes(x1, y1, x2, y2 *Node) *Node {
	return Stack([]*Node{x1, y1, x2, y2}, x1.Rank())
}

// boxArea is (x2-x1)*(y2-y1), as Boxes.area.
func boxArea(b *Node) *Node {
	x1, y1, x2, y2 := splitBoxes(b)
	return Mul(Sub(x2, x1), Sub(y2, y1))
}

// PairwiseIoU returns the IoU of every box of a [N, G, 4] with every box of b [N, M, 4]:
// [N, G, M], as detectron2's pairwise_iou (0 where the boxes do not intersect).
func PairwiseIoU(a, b *Node) *Node {
	if a.Rank() != 3 || b.Rank() != 3 || a.Shape().Dim(0) != b.Shape().Dim(0) {
		exceptions.Panicf("maskrcnn.PairwiseIoU: want a [N,G,4] and b [N,M,4], got %s and %s", a.Shape(), b.Shape())
	}
	ax1, ay1, ax2, ay2 := splitBoxes(ExpandAxes(a, 2)) // [N, G, 1]
	bx1, by1, bx2, by2 := splitBoxes(ExpandAxes(b, 1)) // [N, 1, M]
	zero := ScalarZero(a.Graph(), a.DType())
	w := Max(Sub(Min(ax2, bx2), Max(ax1, bx1)), zero)
	h := Max(Sub(Min(ay2, by2), Max(ay1, by1)), zero)
	inter := Mul(w, h)                                              // [N, G, M]
	areaA := Mul(Sub(ax2, ax1), Sub(ay2, ay1))                      // [N, G, 1]
	areaB := Mul(Sub(bx2, bx1), Sub(by2, by1))                      // [N, 1, M]
	union := Sub(Add(areaA, areaB), inter)                          // [N, G, M]
	safe := Where(GreaterThan(inter, zero), union, OnesLike(union)) // no 0/0 in unused branches
	return Where(GreaterThan(inter, zero), Div(inter, safe), ZerosLike(inter))
}

// BoxTransform is detectron2's Box2BoxTransform: deltas (dx, dy, dw, dh) between a source
// and a target box, scaled by Weights, with the predicted dw and dh clamped at ScaleClamp.
type BoxTransform struct {
	Weights    [4]float64
	ScaleClamp float64
}

// Encode returns the deltas [..., 4] that take boxes src to boxes target (same shape).
// Source boxes must have positive width and height.
func (t BoxTransform) Encode(src, target *Node) *Node {
	sx1, sy1, sx2, sy2 := splitBoxes(src)
	tx1, ty1, tx2, ty2 := splitBoxes(target)
	sw, sh := Sub(sx2, sx1), Sub(sy2, sy1)
	scx, scy := Add(sx1, MulScalar(sw, 0.5)), Add(sy1, MulScalar(sh, 0.5))
	tw, th := Sub(tx2, tx1), Sub(ty2, ty1)
	tcx, tcy := Add(tx1, MulScalar(tw, 0.5)), Add(ty1, MulScalar(th, 0.5))
	dx := Div(MulScalar(Sub(tcx, scx), t.Weights[0]), sw)
	dy := Div(MulScalar(Sub(tcy, scy), t.Weights[1]), sh)
	dw := MulScalar(Log(Div(tw, sw)), t.Weights[2])
	dh := MulScalar(Log(Div(th, sh)), t.Weights[3])
	return stackBoxes(dx, dy, dw, dh)
}

// Decode applies deltas [..., 4] to boxes of the same shape, as apply_deltas.
func (t BoxTransform) Decode(deltas, boxes *Node) *Node {
	x1, y1, x2, y2 := splitBoxes(boxes)
	w, h := Sub(x2, x1), Sub(y2, y1)
	cx, cy := Add(x1, MulScalar(w, 0.5)), Add(y1, MulScalar(h, 0.5))
	dx, dy, dw, dh := splitBoxes(deltas)
	dx, dy = DivScalar(dx, t.Weights[0]), DivScalar(dy, t.Weights[1])
	dw, dh = DivScalar(dw, t.Weights[2]), DivScalar(dh, t.Weights[3])
	clamp := Scalar(deltas.Graph(), deltas.DType(), t.ScaleClamp)
	dw, dh = Min(dw, clamp), Min(dh, clamp)
	pcx, pcy := Add(Mul(dx, w), cx), Add(Mul(dy, h), cy)
	pw, ph := Mul(Exp(dw), w), Mul(Exp(dh), h)
	return stackBoxes(Sub(pcx, MulScalar(pw, 0.5)), Sub(pcy, MulScalar(ph, 0.5)),
		Add(pcx, MulScalar(pw, 0.5)), Add(pcy, MulScalar(ph, 0.5)))
}

// clipBoxes clamps boxes [N, ..., 4] into their image, as Boxes.clip: x to [0, width], y to
// [0, height]. imageHW is [N, 2] (height, width), in the boxes' dtype.
func clipBoxes(boxes, imageHW *Node) *Node {
	x1, y1, x2, y2 := splitBoxes(boxes)
	dims := make([]int, x1.Rank())
	for i := range dims {
		dims[i] = 1
	}
	dims[0] = boxes.Shape().Dim(0)
	h := Reshape(coordHW(imageHW, 0), dims...)
	w := Reshape(coordHW(imageHW, 1), dims...)
	zero := ScalarZero(boxes.Graph(), boxes.DType())
	cx := func(x *Node) *Node { return Min(Max(x, zero), w) }
	cy := func(y *Node) *Node { return Min(Max(y, zero), h) }
	return stackBoxes(cx(x1), cy(y1), cx(x2), cy(y2))
}

func coordHW(hw *Node, i int) *Node { return Squeeze(SliceAxis(hw, 1, AxisRange(i, i+1)), 1) }

// nonEmpty reports the boxes wider and taller than threshold, as Boxes.nonempty.
func nonEmpty(boxes *Node, threshold float64) *Node {
	x1, y1, x2, y2 := splitBoxes(boxes)
	t := Scalar(boxes.Graph(), boxes.DType(), threshold)
	return LogicalAnd(GreaterThan(Sub(x2, x1), t), GreaterThan(Sub(y2, y1), t))
}

// allFinite reports the boxes [..., 4] whose four coordinates are finite.
func allFinite(boxes *Node) *Node {
	return LogicalAll(IsFinite(boxes), -1)
}
