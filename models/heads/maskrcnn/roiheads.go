package maskrcnn

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// RoISamples are the RoIs sampled to train the box and mask heads (detectron2's
// label_and_sample_proposals), S per image, with static shapes.
type RoISamples struct {
	Boxes      *Node // [N, S, 4] float32 proposal boxes
	Classes    *Node // [N, S] int32: the matched class 0..K-1 for foreground, K for background, -1 for unused slots
	GTBoxes    *Node // [N, S, 4] float32 box of the matched ground truth
	GTIndex    *Node // [N, S] int32 index of the matched ground truth
	Valid      *Node // [N, S] bool: sampled (foreground or background)
	Foreground *Node // [N, S] bool
	// NumFGSlots is the number of leading slots that can hold foreground RoIs: every foreground
	// RoI is among them, so the mask head only runs on those.
	NumFGSlots int
}

// SampleRoIs appends the ground-truth boxes to the proposals (cfg.ProposalAppendGT), matches
// them to the ground truth at IoU cfg.ROIIoUThreshold (no low-quality matches) and samples
// cfg.ROIBatchSizePerImage RoIs per image with cfg.ROIPositiveFraction foreground.
// gtClasses [N, G] holds 0..K-1, or -1 for padding.
func SampleRoIs(scope *model.Scope, proposals Proposals, gtBoxes, gtClasses *Node, cfg Config) RoISamples {
	g := gtBoxes.Graph()
	gtB := ConvertDType(StopGradient(gtBoxes), boxDType)
	classes := ConvertDType(gtClasses, dtypes.Int32)
	gtValid := GreaterOrEqual(classes, Const(g, int32(0)))
	boxes, valid := proposals.Boxes, proposals.Valid
	if cfg.ProposalAppendGT {
		boxes = Concatenate([]*Node{boxes, gtB}, 1)
		valid = Concatenate([]*Node{valid, gtValid}, 1)
	}
	matched, label := Match(PairwiseIoU(gtB, boxes), gtValid, []float64{cfg.ROIIoUThreshold}, []int{0, 1}, false)
	label = Where(valid, label, BroadcastToShape(Const(g, int32(-1)), label.Shape()))
	idx, slot := Subsample(scope, label, cfg.ROIBatchSizePerImage, cfg.ROIPositiveFraction)

	s := RoISamples{
		Boxes:      takeAlong(boxes, idx),
		GTIndex:    takeAlong(matched, idx),
		Valid:      GreaterOrEqual(slot, Const(g, int32(0))),
		Foreground: Equal(slot, Const(g, int32(1))),
	}
	s.GTBoxes = takeAlong(gtB, s.GTIndex)
	bg := BroadcastToShape(Const(g, int32(cfg.NumClasses)), slot.Shape())
	unused := BroadcastToShape(Const(g, int32(-1)), slot.Shape())
	s.Classes = Where(s.Foreground, takeAlong(classes, s.GTIndex), Where(s.Valid, bg, unused))
	s.NumFGSlots = min(max(numPosMax(cfg.ROIBatchSizePerImage, cfg.ROIPositiveFraction), 1), idx.Shape().Dim(1))
	return s
}

// BoxHead is detectron2's FastRCNNConvFCHead (cfg.BoxHeadNumFC fully connected layers with ReLU,
// c2_xavier_fill) and FastRCNNOutputLayers (cls_score N(0, 0.01) and class-specific bbox_pred
// N(0, 0.001)) on pooled RoI features [R, P, P, C]. It returns class logits [R, K+1]
// (background last) and box deltas [R, K, 4]. Scopes box_head/fc1.. and box_predictor/cls_score,
// box_predictor/bbox_pred under scope (roi_heads). The pooled features are flattened in
// (y, x, channel) order; detectron2 flattens (channel, y, x), which matters only for loading its
// weights into fc1.
func BoxHead(scope *model.Scope, pooled *Node, cfg Config) (logits, deltas *Node) {
	r := pooled.Shape().Dim(0)
	x := Reshape(pooled, r, pooled.Shape().Size()/r)
	head := scope.In("box_head")
	for i := 1; i <= cfg.BoxHeadNumFC; i++ {
		x = relu(linear(head.In("fc%d", i), x, cfg.BoxHeadFCDim, c2XavierFill(x.Shape().Dim(1))))
	}
	pred := scope.In("box_predictor")
	logits = linear(pred.In("cls_score"), x, cfg.NumClasses+1, normalInit(0.01))
	deltas = Reshape(linear(pred.In("bbox_pred"), x, 4*cfg.NumClasses, normalInit(0.001)), r, cfg.NumClasses, 4)
	return logits, deltas
}

// BoxLosses are FastRCNNOutputLayers.losses on the sampled RoIs (logits [N*S, K+1], deltas
// [N*S, K, 4]): the softmax cross-entropy averaged over the sampled RoIs, and the smooth-L1 loss
// of the ground-truth class's deltas against the BoxRegWeights encoding of the matched box,
// summed over foreground RoIs and divided by the number of sampled RoIs (0 when none).
func BoxLosses(logits, deltas *Node, s RoISamples, cfg Config) (lossCls, lossBox *Node) {
	dt := logits.DType()
	r, k := logits.Shape().Dim(0), cfg.NumClasses
	classes := Reshape(s.Classes, r)
	valid := Reshape(s.Valid, r)
	fg := Reshape(s.Foreground, r)
	numValid := Max(ReduceAllSum(ConvertDType(valid, dt)), ScalarOne(logits.Graph(), dt))

	label := Max(classes, ZerosLike(classes)) // unused slots -> 0, masked below
	logp := LogSoftmax(logits, -1)
	nll := Neg(ReduceSum(Mul(logp, OneHot(label, k+1, dt)), -1))
	lossCls = Div(MaskedReduceAllSum(nll, valid), numValid)

	cls := Min(label, Const(logits.Graph(), int32(k-1)))                 // background -> any class, masked below
	pred := ReduceSum(Mul(deltas, ExpandAxes(OneHot(cls, k, dt), 2)), 1) // [R, 4]
	target := BoxTransform{Weights: cfg.BoxRegWeights, ScaleClamp: cfg.ScaleClamp}.Encode(
		Reshape(s.Boxes, r, 4), Reshape(s.GTBoxes, r, 4))
	// Unused slots may hold empty boxes: keep their (masked) targets finite.
	target = Where(BroadcastToShape(ExpandAxes(fg, 1), target.Shape()), target, ZerosLike(target))
	diff := Sub(pred, StopGradient(ConvertDType(target, dt)))
	lossBox = Div(MaskedReduceAllSum(ReduceSum(smoothL1(diff, cfg.BoxSmoothL1Beta), 1), fg), numValid)
	return lossCls, lossBox
}

// MaskHead is detectron2's MaskRCNNConvUpsampleHead on pooled RoI features [R, M, M, C]:
// cfg.MaskHeadNumConv 3x3 convs with ReLU, a 2x2 stride-2 transposed conv with ReLU (all
// c2_msra_fill), and a 1x1 predictor N(0, 0.001) to one mask logit per class: [R, 2M, 2M, K].
// Scopes mask_head/conv1.., mask_head/deconv, mask_head/predictor under scope (roi_heads).
func MaskHead(scope *model.Scope, pooled *Node, cfg Config) *Node {
	head := scope.In("mask_head")
	x := pooled
	d := cfg.MaskHeadConvDim
	for i := 1; i <= cfg.MaskHeadNumConv; i++ {
		x = relu(conv2d(head.In("conv%d", i), x, d, 3, c2MSRAFill(9*d)))
	}
	// torch computes the fan-out of a ConvTranspose2d weight [in, out, 2, 2] as in*4.
	x = relu(convTranspose2x2(head.In("deconv"), x, d, c2MSRAFill(4*x.Shape().Dim(3))))
	return conv2d(head.In("predictor"), x, cfg.NumClasses, 1, normalInit(0.001))
}

// MaskTargets are mask_rcnn_loss's targets: the ground-truth mask matched to each RoI
// (gtMasks [N, G, H, W] at input resolution, any dtype, foreground >= 0.5; gtIndex [N, F]),
// RoIAligned (aligned, adaptive sampling, scale 1) onto the RoI boxes [N, F, 4] at size x size
// and thresholded at 0.5 (BitMasks.crop_and_resize): [N, F, size, size] float.
func MaskTargets(gtMasks, boxes, gtIndex *Node, size int) *Node {
	if gtMasks.Rank() != 4 {
		exceptions.Panicf("maskrcnn.MaskTargets: want masks [N, G, H, W], got %s", gtMasks.Shape())
	}
	g := gtMasks.Graph()
	n, numGT, h, w := gtMasks.Shape().Dim(0), gtMasks.Shape().Dim(1), gtMasks.Shape().Dim(2), gtMasks.Shape().Dim(3)
	table := Reshape(StopGradient(gtMasks), n*numGT*h*w, 1)
	if table.DType() == dtypes.Bool {
		table = ConvertDType(table, dtypes.Uint8)
	}
	f := boxes.Shape().Dim(1)
	batch := Iota(g, shapes.Make(dtypes.Int32, n, f), 0)
	geom := roiGeometry{
		base:   MulScalar(Add(MulScalar(batch, numGT), ConvertDType(gtIndex, dtypes.Int32)), h*w),
		height: BroadcastToShape(Const(g, int32(h)), batch.Shape()),
		width:  BroadcastToShape(Const(g, int32(w)), batch.Shape()),
		scale:  BroadcastToShape(Const(g, float32(1)), batch.Shape()),
	}
	m := roiAlignTable(table, geom, boxes, size, 0) // [N, F, size, size, 1]
	m = Reshape(m, n, f, size, size)
	return ConvertDType(GreaterOrEqual(m, Scalar(g, m.DType(), 0.5)), dtypes.Float32)
}

// MaskLoss is mask_rcnn_loss: the per-pixel BCE of the ground-truth class's mask logit
// (logits [R, M, M, K], classes [R]) against targets [R, M, M], averaged over the pixels of
// the foreground RoIs (fg [R]); 0 when there are none.
func MaskLoss(logits, classes, fg, targets *Node) *Node {
	dt := logits.DType()
	k := logits.Shape().Dim(3)
	cls := ConvertDType(classes, dtypes.Int32) // background and unused slots are masked by fg
	cls = Min(Max(cls, ZerosLike(cls)), Const(logits.Graph(), int32(k-1)))
	sel := selectClassMask(logits, cls) // [R, M, M]
	bce := ReduceSum(bceWithLogits(sel, ConvertDType(StopGradient(targets), dt)), 1, 2)
	pixels := float64(logits.Shape().Dim(1) * logits.Shape().Dim(2))
	numFG := MulScalar(ReduceAllSum(ConvertDType(fg, dt)), pixels)
	return Div(MaskedReduceAllSum(bce, fg), Max(numFG, ScalarOne(logits.Graph(), dt)))
}

// selectClassMask returns the mask logits of the given class: logits [R, M, M, K], classes [R].
func selectClassMask(logits, classes *Node) *Node {
	k := logits.Shape().Dim(3)
	oh := Reshape(OneHot(classes, k, logits.DType()), classes.Shape().Dim(0), 1, 1, k)
	return ReduceSum(Mul(logits, oh), 3)
}
