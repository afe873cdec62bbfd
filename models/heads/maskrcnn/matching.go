package maskrcnn

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Match is detectron2's Matcher on a batch: iou [N, G, M] holds the quality of every
// (ground truth, prediction) pair and gtValid [N, G] marks the real ground truth (padding never
// matches). Every prediction is matched to its best ground truth (the first on ties): matched
// [N, M] int32. Its label [N, M] int32 is labels[i] for a best IoU in [thresholds[i-1],
// thresholds[i]) (with -inf and +inf at the ends), so len(labels) = len(thresholds)+1; labels
// are 1 (foreground), 0 (background) or -1 (ignored). An image without ground truth gets
// labels[0] everywhere.
//
// With allowLowQuality, every prediction whose IoU with some ground truth equals that ground
// truth's highest IoU is labelled 1 (set_low_quality_matches_; its match stays the best ground
// truth). Ground truth whose highest IoU is 0 is skipped: detectron2 would label every
// prediction it does not touch as foreground, which only happens for empty boxes, and its data
// loader drops those (filter_empty_instances).
func Match(iou, gtValid *Node, thresholds []float64, labels []int, allowLowQuality bool) (matched, label *Node) {
	if len(labels) != len(thresholds)+1 {
		exceptions.Panicf("maskrcnn.Match: %d labels for %d thresholds", len(labels), len(thresholds))
	}
	g := iou.Graph()
	iou = StopGradient(iou)
	valid3 := ExpandAxes(ConvertDType(gtValid, dtypes.Bool), 2)
	q := Where(BroadcastToShape(valid3, iou.Shape()), iou, BroadcastToShape(Scalar(g, iou.DType(), -1), iou.Shape()))
	best := ReduceMax(q, 1) // [N, M]
	matched = ArgMax(q, 1, dtypes.Int32)
	label = BroadcastToShape(Const(g, int32(labels[0])), best.Shape())
	for i, t := range thresholds {
		label = Where(GreaterOrEqual(best, Scalar(g, best.DType(), t)), Const(g, int32(labels[i+1])), label)
	}
	if allowLowQuality {
		highest := ReduceAndKeep(q, ReduceMax, 2) // [N, G, 1]
		isBest := LogicalAnd(Equal(q, highest), GreaterThan(highest, ScalarZero(g, q.DType())))
		isBest = LogicalAnd(isBest, BroadcastToShape(valid3, q.Shape()))
		label = Where(LogicalAny(isBest, 1), Const(g, int32(1)), label)
	}
	return matched, label
}

// Subsample is detectron2's subsample_labels on a batch, with static shapes: from labels [N, M]
// (1 foreground, 0 background, -1 ignored) it picks at random min(#fg, int(num*posFraction))
// foreground and min(#bg, num - #picked fg) background entries per image. It returns S =
// min(num, ...) slots per image: idx [N, S] int32 (the picked entries, foreground first, then
// background, then unused slots) and slot [N, S] int32 (1 foreground, 0 background, -1 unused).
// The foreground slots all lie in the first numPosMax(num, posFraction) slots.
//
// Random priorities with a top-k replace torch.randperm: every subset of the right size is
// equally likely, as in detectron2.
func Subsample(scope *model.Scope, labels *Node, num int, posFraction float64) (idx, slot *Node) {
	g := labels.Graph()
	n, m := labels.Shape().Dim(0), labels.Shape().Dim(1)
	kp := min(max(numPosMax(num, posFraction), 1), m)
	kn := min(num, m)
	u := scope.RandomUniform(g, shapes.Make(dtypes.Float32, n, m))
	minus1 := Scalar(g, dtypes.Float32, -1)
	posKey := Where(Equal(labels, Const(g, int32(1))), u, BroadcastToShape(minus1, u.Shape()))
	negKey := Where(Equal(labels, Const(g, int32(0))), u, BroadcastToShape(minus1, u.Shape()))
	pv, pi := TopK(posKey, kp, 1)
	nv, ni := TopK(negKey, kn, 1)
	zero := ScalarZero(g, dtypes.Float32)
	posOK := GreaterOrEqual(pv, zero)
	if numPosMax(num, posFraction) == 0 { // kp was raised to 1 only to keep TopK's k positive
		posOK = ZerosLike(posOK)
	}
	numPos := ReduceAndKeep(ConvertDType(posOK, dtypes.Int32), ReduceSum, 1) // [N, 1]
	rank := Iota(g, shapes.Make(dtypes.Int32, n, kn), 1)
	negOK := LogicalAnd(GreaterOrEqual(nv, zero), LessThan(rank, Sub(Scalar(g, dtypes.Int32, num), numPos)))

	// Compact: foreground, then background, then unused; TopK is stable so the random order
	// inside each group is kept.
	candIdx := Concatenate([]*Node{pi, ni}, 1)
	two, one := Scalar(g, dtypes.Float32, 2), Scalar(g, dtypes.Float32, 1)
	key := Concatenate([]*Node{
		Where(posOK, BroadcastToShape(two, pv.Shape()), ZerosLike(pv)),
		Where(negOK, BroadcastToShape(one, nv.Shape()), ZerosLike(nv)),
	}, 1)
	candSlot := Concatenate([]*Node{
		Where(posOK, OnesLike(pi), MulScalar(OnesLike(pi), -1)),
		Where(negOK, ZerosLike(ni), MulScalar(OnesLike(ni), -1)),
	}, 1)
	s := min(num, kp+kn)
	_, order := TopK(key, s, 1)
	return takeAlong(candIdx, order), takeAlong(candSlot, order)
}

// takeAlong gathers x [N, M, ...] at idx [N, K] along axis 1: [N, K, ...].
func takeAlong(x, idx *Node) *Node {
	g := x.Graph()
	n, k := idx.Shape().Dim(0), idx.Shape().Dim(1)
	batch := Iota(g, shapes.Make(idx.DType(), n, k, 1), 0)
	return Gather(x, Concatenate([]*Node{batch, ExpandAxes(idx, 2)}, 2))
}
