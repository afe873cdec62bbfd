package maskrcnn

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// NMS is exact greedy non-maximum suppression (torchvision's nms, and batched_nms when groups
// are given) on a batch of box lists, with static shapes.
//
// boxes [B, n, 4] must be sorted by decreasing score within each list; valid [B, n] (bool)
// marks the real entries (padding never keeps nor suppresses); groups [B, n] (integers, or
// nil) restricts suppression to boxes of the same group (class or level). A box is suppressed
// when a kept box before it in the same group has IoU > thresh with it. It returns keep [B, n].
//
// Greedy NMS is the unique solution of keep[i] = valid[i] && no j < i with keep[j] and
// IoU(j, i) > thresh. It is computed by iterating that equation from keep = valid with one
// batched matrix-vector product per step, in a While loop that stops at the fixed point
// (after step t the first t entries are final, so it ends after at most n+1 steps; in practice
// after as many steps as the longest chain of suppressions). Memory is B*n*n.
func NMS(boxes, valid, groups *Node, thresh float64) *Node {
	if boxes.Rank() != 3 || valid.Rank() != 2 {
		exceptions.Panicf("maskrcnn.NMS: want boxes [B,n,4] and valid [B,n], got %s and %s", boxes.Shape(), valid.Shape())
	}
	g := boxes.Graph()
	b, n := boxes.Shape().Dim(0), boxes.Shape().Dim(1)
	boxes = StopGradient(ConvertDType(boxes, boxDType))
	valid = ConvertDType(valid, dtypes.Bool)

	over := GreaterThan(PairwiseIoU(boxes, boxes), Scalar(g, boxDType, thresh)) // [B, j, i]
	jRow := Iota(g, shapes.Make(dtypes.Int32, 1, n, n), 1)
	iCol := Iota(g, shapes.Make(dtypes.Int32, 1, n, n), 2)
	sup := LogicalAnd(over, BroadcastToDims(LessThan(jRow, iCol), b, n, n))
	sup = LogicalAnd(sup, LogicalAnd(ExpandAxes(valid, 2), ExpandAxes(valid, 1)))
	if groups != nil {
		sup = LogicalAnd(sup, Equal(ExpandAxes(groups, 2), ExpandAxes(groups, 1)))
	}
	supF := ConvertDType(sup, dtypes.Float32)

	stateShapes := []shapes.Shape{shapes.Make(dtypes.Int32), shapes.Make(dtypes.Bool, b, n), shapes.Make(dtypes.Bool)}
	params := func(g *Graph) []*Node {
		return []*Node{Parameter(g, "step", stateShapes[0]), Parameter(g, "keep", stateShapes[1]), Parameter(g, "changed", stateShapes[2])}
	}
	cond := NewClosure(g, func(g *Graph) []*Node {
		p := params(g)
		return []*Node{LogicalAnd(p[2], LessOrEqual(p[0], Const(g, int32(n))))}
	})
	body := NewClosure(g, func(g *Graph) []*Node {
		p := params(g)
		keepF := ConvertDType(p[1], dtypes.Float32)
		hits := Dot(keepF, supF).General([]int{1}, []int{0}, []int{1}, []int{0}) // [B, i]
		// No Scalar-based helpers inside closures (see whileSamples).
		next := LogicalAnd(valid, LessThan(hits, Const(g, float32(0.5))))
		changed := LogicalAny(LogicalXor(next, p[1]))
		return []*Node{Add(p[0], Const(g, int32(1))), next, changed}
	})
	out := While(cond, body, Const(g, int32(0)), valid, Const(g, true))
	return out[1]
}
