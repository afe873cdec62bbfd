package maskrcnn

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// RPNOutputs are the predictions of the RPN head over all levels, in anchor order (level,
// row, column, cell anchor).
type RPNOutputs struct {
	Logits []*Node // per level [N, H*W*A]: objectness logits
	Deltas []*Node // per level [N, H*W*A, 4]: box deltas against the anchors
}

// RPNHead is detectron2's StandardRPNHead, shared by every level: a 3x3 conv with ReLU, then
// 1x1 convs to A objectness logits and 4A deltas; all weights N(0, 0.01), biases 0. Scopes
// conv/, objectness_logits/, anchor_deltas/ under scope.
func RPNHead(scope *model.Scope, levels []*Node, numAnchors int) RPNOutputs {
	var out RPNOutputs
	for _, x := range levels {
		n, h, w, c := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2), x.Shape().Dim(3)
		t := relu(conv2d(scope.At("conv"), x, c, 3, normalInit(0.01)))
		logits := conv2d(scope.At("objectness_logits"), t, numAnchors, 1, normalInit(0.01))
		deltas := conv2d(scope.At("anchor_deltas"), t, 4*numAnchors, 1, normalInit(0.01))
		out.Logits = append(out.Logits, Reshape(logits, n, h*w*numAnchors))
		out.Deltas = append(out.Deltas, Reshape(deltas, n, h*w*numAnchors, 4))
	}
	return out
}

func relu(x *Node) *Node { return Max(x, ZerosLike(x)) }

// RPNLosses are detectron2's RPN.losses: anchors [T, 4] are matched to the ground truth
// (IoU thresholds cfg.RPNIoUThresholds, low-quality matches allowed), RPNBatchSizePerImage
// anchors per image are sampled with RPNPositiveFraction foreground, and
//
//	loss_rpn_cls = sum of BCE(logit, fg) over sampled anchors / (batch_size_per_image * N)
//	loss_rpn_loc = sum of smooth-L1(delta - target) over sampled fg anchors / (batch_size_per_image * N)
//
// logits is [N, T] and deltas [N, T, 4] (all levels concatenated); gtBoxes [N, G, 4] with
// gtValid [N, G].
func RPNLosses(scope *model.Scope, anchors, logits, deltas, gtBoxes, gtValid *Node, cfg Config) (lossCls, lossLoc *Node) {
	n, t := logits.Shape().Dim(0), logits.Shape().Dim(1)
	gtB := ConvertDType(gtBoxes, boxDType)
	anchorsN := BroadcastToDims(ExpandAxes(anchors, 0), n, t, 4)
	iou := PairwiseIoU(gtB, anchorsN) // [N, G, T]
	matched, labels := Match(iou, gtValid, cfg.RPNIoUThresholds[:], []int{0, -1, 1}, true)
	idx, slot := Subsample(scope, labels, cfg.RPNBatchSizePerImage, cfg.RPNPositiveFraction)

	dt := logits.DType()
	g := logits.Graph()
	fg := Equal(slot, Const(g, int32(1)))
	sampled := GreaterOrEqual(slot, Const(g, int32(0)))
	x := takeAlong(logits, idx)
	z := ConvertDType(fg, dt)
	lossCls = MaskedReduceAllSum(bceWithLogits(x, z), sampled)

	target := BoxTransform{Weights: cfg.RPNBoxWeights, ScaleClamp: cfg.ScaleClamp}.Encode(
		takeAlong(anchorsN, idx), takeAlong(gtB, takeAlong(matched, idx)))
	// Background slots may be matched to padding (an image without ground truth): keep their
	// masked targets finite.
	target = Where(BroadcastToShape(ExpandAxes(fg, 2), target.Shape()), target, ZerosLike(target))
	diff := Sub(takeAlong(deltas, idx), StopGradient(ConvertDType(target, dt)))
	lossLoc = MaskedReduceAllSum(ReduceSum(smoothL1(diff, cfg.RPNSmoothL1Beta), 2), fg)

	norm := float64(cfg.RPNBatchSizePerImage * n)
	return DivScalar(lossCls, norm), DivScalar(lossLoc, norm)
}

// bceWithLogits is F.binary_cross_entropy_with_logits per element, in its stable form
// max(x, 0) - x*z + log(1 + exp(-|x|)).
func bceWithLogits(x, z *Node) *Node {
	return Add(Sub(Max(x, ZerosLike(x)), Mul(x, z)), Log1p(Exp(Neg(Abs(x)))))
}

// smoothL1 is fvcore's smooth_l1_loss per element: |x| for beta 0, else 0.5 x²/beta below beta
// and |x| - beta/2 above.
func smoothL1(x *Node, beta float64) *Node {
	a := Abs(x)
	if beta < 1e-5 {
		return a
	}
	return Where(LessThan(a, Scalar(x.Graph(), x.DType(), beta)), MulScalar(Square(x), 0.5/beta), AddScalar(a, -0.5*beta))
}

// Proposals are the RPN's output boxes, per image, best first, with static shapes.
type Proposals struct {
	Boxes  *Node // [N, P, 4] float32, clipped to the image
	Logits *Node // [N, P] objectness logits
	Valid  *Node // [N, P] bool: real proposals (the rest is padding)
}

// FindTopProposals is detectron2's find_top_rpn_proposals with static shapes: per level the
// preTopK best-scoring anchors (min(preTopK, H*W*A)); their decoded boxes clipped to the image
// (imageHW [N, 2] float32: height, width), dropped when not finite or not larger than minSize;
// NMS per level (batched_nms over levels) at nmsThresh; and the postTopK best survivors over all
// levels, sorted by score. Slots beyond the survivors are invalid.
func FindTopProposals(rpn RPNOutputs, anchors []*Node, imageHW *Node, cfg Config, preTopK, postTopK int) Proposals {
	g := imageHW.Graph()
	n := rpn.Logits[0].Shape().Dim(0)
	numLevels := len(rpn.Logits)
	tf := BoxTransform{Weights: cfg.RPNBoxWeights, ScaleClamp: cfg.ScaleClamp}
	ks := make([]int, numLevels)
	kmax := 0
	for l, lg := range rpn.Logits {
		ks[l] = min(preTopK, lg.Shape().Dim(1))
		kmax = max(kmax, ks[l])
	}
	var boxesL, scoresL, validL []*Node
	for l := range numLevels {
		logits := ConvertDType(StopGradient(rpn.Logits[l]), boxDType)
		deltas := ConvertDType(StopGradient(rpn.Deltas[l]), boxDType)
		v, i := TopK(logits, ks[l], 1) // [N, k]
		anc := takeAlong(BroadcastToDims(ExpandAxes(anchors[l], 0), n, anchors[l].Shape().Dim(0), 4), i)
		boxes := tf.Decode(takeAlong(deltas, i), anc)
		valid := LogicalAnd(IsFinite(v), allFinite(boxes))
		boxes = Where(BroadcastToShape(ExpandAxes(valid, 2), boxes.Shape()), boxes, ZerosLike(boxes))
		boxes = clipBoxes(boxes, imageHW)
		valid = LogicalAnd(valid, nonEmpty(boxes, cfg.RPNMinBoxSize))
		if pad := kmax - ks[l]; pad > 0 {
			boxes = Concatenate([]*Node{boxes, Zeros(g, shapes.Make(boxDType, n, pad, 4))}, 1)
			v = Concatenate([]*Node{v, Zeros(g, shapes.Make(boxDType, n, pad))}, 1)
			valid = Concatenate([]*Node{valid, Zeros(g, shapes.Make(dtypes.Bool, n, pad))}, 1)
		}
		boxesL, scoresL, validL = append(boxesL, boxes), append(scoresL, v), append(validL, valid)
	}
	boxes := Reshape(Stack(boxesL, 1), n*numLevels, kmax, 4) // [N*L, kmax, 4]
	valid := Reshape(Stack(validL, 1), n*numLevels, kmax)
	keep := Reshape(NMS(boxes, valid, nil, cfg.RPNNMSThresh), n, numLevels*kmax)
	boxes = Reshape(boxes, n, numLevels*kmax, 4)
	scores := Reshape(Stack(scoresL, 1), n, numLevels*kmax)

	key := Where(keep, scores, BroadcastToShape(Scalar(g, boxDType, math.Inf(-1)), scores.Shape()))
	p := min(postTopK, numLevels*kmax)
	top, order := TopK(key, p, 1)
	kept := takeAlong(keep, order)
	return Proposals{
		Boxes:  Where(BroadcastToDims(ExpandAxes(kept, 2), n, p, 4), takeAlong(boxes, order), Zeros(g, shapes.Make(boxDType, n, p, 4))),
		Logits: Where(kept, top, ZerosLike(top)),
		Valid:  kept,
	}
}
