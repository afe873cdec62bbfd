package maskrcnn

import (
	"math"

	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// GroundTruth of a batch, padded to G instances per image.
type GroundTruth struct {
	Boxes   *Node // [N, G, 4] (x1, y1, x2, y2) in input pixels
	Classes *Node // [N, G] integer class 0..K-1, or -1 for padding (instances with empty boxes are ignored too)
	Masks   *Node // [N, G, H, W] at the input resolution, any dtype: >= 0.5 (or true) is the object
	// ImageSizes is optional [N, 2] (height, width) of each image inside the padded input, as
	// detectron2's image_sizes: proposals and detections are clipped to it. nil: the whole input.
	ImageSizes *Node
}

// Detections are the static-shape results of Detect, D = cfg.DetectionsPerImage per image,
// best first, in input pixels.
type Detections struct {
	Boxes   *Node // [N, D, 4] float32, clipped to the image
	Scores  *Node // [N, D] float32 class probability
	Classes *Node // [N, D] int32 class 0..K-1
	Masks   *Node // [N, D, M, M] float32 mask probabilities inside the box, M = 2*MaskPoolerResolution
	Valid   *Node // [N, D] bool: real detections (the rest is padding)
	// Overflow [N] bool marks images where more than cfg.TestCandidates (proposal, class) pairs
	// passed the score threshold and fewer than D survived NMS among them: there the
	// detections may differ from detectron2's (raise TestCandidates).
	Overflow *Node
}

// network holds the parts shared by Losses and Detect.
type network struct {
	cfg       Config
	pyramid   backbones.Features
	rpnLevels []*Node // P2..P6
	roiLevels []*Node // P2..P5
	minLevel  int     // log2 of the stride of roiLevels[0]
	anchors   []*Node // per RPN level [H*W*A, 4] float32
	rpn       RPNOutputs
	imageHW   *Node // [N, 2] float32
}

func build(scope *model.Scope, feats backbones.Features, images, imageSizes *Node, cfg Config) *network {
	if err := cfg.Validate(); err != nil {
		exceptions.Panicf("%v", err)
	}
	if images.Rank() != 4 {
		exceptions.Panicf("maskrcnn: want images [N, H, W, C], got %s", images.Shape())
	}
	net := &network{cfg: cfg}
	net.pyramid = FPN(scope.In("fpn"), feats, cfg.InFeatures, cfg.FPNChannels)
	var shapesL []LevelShape
	for _, info := range net.pyramid.Info {
		x := net.pyramid.Maps[info.Name]
		net.rpnLevels = append(net.rpnLevels, x)
		shapesL = append(shapesL, LevelShape{Height: x.Shape().Dim(1), Width: x.Shape().Dim(2), Stride: info.Stride})
	}
	net.roiLevels = net.rpnLevels[:len(net.rpnLevels)-1]
	net.minLevel = int(math.Round(math.Log2(float64(net.pyramid.Info[0].Stride))))
	g := images.Graph()
	for l, s := range shapesL {
		one := cfg
		one.AnchorSizes = cfg.AnchorSizes[l : l+1]
		net.anchors = append(net.anchors, Const(g, Anchors([]LevelShape{s}, one)))
	}
	net.rpn = RPNHead(scope.In("rpn"), net.rpnLevels, cfg.NumAnchors())

	n := images.Shape().Dim(0)
	if imageSizes != nil {
		net.imageHW = ConvertDType(imageSizes, boxDType)
	} else {
		hw := Const(g, []float32{float32(images.Shape().Dim(1)), float32(images.Shape().Dim(2))})
		net.imageHW = BroadcastToDims(ExpandAxes(hw, 0), n, 2)
	}
	return net
}

// Losses builds Mask R-CNN's training losses on backbone features (levels cfg.InFeatures) of
// images [N, H, W, C] with ground truth gt: the FPN ("fpn/"), the RPN ("rpn/") with its losses
// and proposals (pre/post-NMS top-k of training), RoI sampling and the box and mask heads
// ("roi_heads/"). It returns the named scalar terms loss_rpn_cls, loss_rpn_loc, loss_cls,
// loss_box_reg, loss_mask and loss (their sum, all weights 1 as detectron2), plus the
// counters num_fg_rois and num_sampled_rois (averaged per image, not part of the loss).
// Sampling draws from the store's random number generator.
func Losses(scope *model.Scope, feats backbones.Features, images *Node, gt GroundTruth, cfg Config) map[string]*Node {
	net := build(scope, feats, images, gt.ImageSizes, cfg)
	n := images.Shape().Dim(0)
	if gt.Boxes.Rank() != 3 || gt.Classes.Rank() != 2 || gt.Masks.Rank() != 4 || gt.Boxes.Shape().Dim(0) != n {
		exceptions.Panicf("maskrcnn.Losses: want gt boxes [N,G,4], classes [N,G], masks [N,G,H,W] for %d images, got %s, %s, %s",
			n, gt.Boxes.Shape(), gt.Classes.Shape(), gt.Masks.Shape())
	}
	if gt.Masks.Shape().Dim(2) != images.Shape().Dim(1) || gt.Masks.Shape().Dim(3) != images.Shape().Dim(2) {
		exceptions.Panicf("maskrcnn.Losses: masks %s must have the input's size %dx%d", gt.Masks.Shape(), images.Shape().Dim(1), images.Shape().Dim(2))
	}
	g := images.Graph()
	// Instances with an empty box are dropped, as detectron2's data loader does
	// (filter_empty_instances, threshold 1e-5).
	gtValid := LogicalAnd(GreaterOrEqual(ConvertDType(gt.Classes, dtypes.Int32), Const(g, int32(0))),
		nonEmpty(ConvertDType(gt.Boxes, boxDType), 1e-5))
	gtClasses := Where(gtValid, ConvertDType(gt.Classes, dtypes.Int32), BroadcastToShape(Const(g, int32(-1)), gtValid.Shape()))

	anchors := Concatenate(net.anchors, 0)
	logits := Concatenate(net.rpn.Logits, 1)
	deltas := Concatenate(net.rpn.Deltas, 1)
	lossRPNCls, lossRPNLoc := RPNLosses(scope, anchors, logits, deltas, gt.Boxes, gtValid, cfg)

	proposals := FindTopProposals(net.rpn, net.anchors, net.imageHW, cfg, cfg.RPNPreNMSTopKTrain, cfg.RPNPostNMSTopKTrain)
	samples := SampleRoIs(scope, proposals, gt.Boxes, gtClasses, cfg)
	s := samples.Boxes.Shape().Dim(1)

	roi := scope.In("roi_heads")
	pooled := net.pool(samples.Boxes, cfg.BoxPoolerResolution)
	clsLogits, boxDeltas := BoxHead(roi, Reshape(pooled, n*s, cfg.BoxPoolerResolution, cfg.BoxPoolerResolution, cfg.FPNChannels), cfg)
	lossCls, lossBox := BoxLosses(clsLogits, boxDeltas, samples, cfg)

	// The mask head sees the leading slots, where every foreground RoI is.
	f := samples.NumFGSlots
	first := func(x *Node) *Node { return SliceAxis(x, 1, AxisRange(0, f)) }
	mp := cfg.MaskPoolerResolution
	maskFeats := Reshape(net.pool(first(samples.Boxes), mp), n*f, mp, mp, cfg.FPNChannels)
	maskLogits := MaskHead(roi, maskFeats, cfg)
	targets := MaskTargets(gt.Masks, first(samples.Boxes), first(samples.GTIndex), 2*mp)
	lossMask := MaskLoss(maskLogits, Reshape(first(samples.Classes), n*f), Reshape(first(samples.Foreground), n*f),
		Reshape(targets, n*f, 2*mp, 2*mp))

	dt := lossCls.DType()
	terms := map[string]*Node{
		"loss_rpn_cls": ConvertDType(lossRPNCls, dt),
		"loss_rpn_loc": ConvertDType(lossRPNLoc, dt),
		"loss_cls":     lossCls,
		"loss_box_reg": lossBox,
		"loss_mask":    ConvertDType(lossMask, dt),
	}
	// Summed in a fixed order (detectron2's): a map's order changes from run to run, and so would
	// the float32 rounding of the sum.
	total := ScalarZero(g, dt)
	for _, name := range []string{"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"} {
		total = Add(total, terms[name])
	}
	terms["loss"] = total
	terms["num_fg_rois"] = DivScalar(ReduceAllSum(ConvertDType(samples.Foreground, dt)), float64(n))
	terms["num_sampled_rois"] = DivScalar(ReduceAllSum(ConvertDType(samples.Valid, dt)), float64(n))
	return terms
}

// pool is the ROIPooler of the RoI heads: boxes [N, R, 4] -> [N, R, res, res, C].
func (net *network) pool(boxes *Node, res int) *Node {
	return MultiLevelRoIAlign(net.roiLevels, net.minLevel, boxes, res, net.cfg.PoolerSamplingRatio,
		net.cfg.CanonicalBoxSize, net.cfg.CanonicalLevel)
}

// Detect builds Mask R-CNN's inference on backbone features of images [N, H, W, C]: proposals
// with the test top-k, class scores and class-specific boxes for each, score threshold,
// per-class NMS, the best cfg.DetectionsPerImage detections and their masks
// (fast_rcnn_inference and mask_rcnn_inference). Boxes are clipped to the whole input.
func Detect(scope *model.Scope, feats backbones.Features, images *Node, cfg Config) Detections {
	return DetectSized(scope, feats, images, nil, cfg)
}

// DetectSized is Detect with per-image sizes [N, 2] (height, width) inside the padded input.
func DetectSized(scope *model.Scope, feats backbones.Features, images, imageSizes *Node, cfg Config) Detections {
	net := build(scope, feats, images, imageSizes, cfg)
	g := images.Graph()
	n, k := images.Shape().Dim(0), cfg.NumClasses
	props := FindTopProposals(net.rpn, net.anchors, net.imageHW, cfg, cfg.RPNPreNMSTopKTest, cfg.RPNPostNMSTopKTest)
	p := props.Boxes.Shape().Dim(1)

	roi := scope.In("roi_heads")
	res := cfg.BoxPoolerResolution
	logits, deltas := BoxHead(roi, Reshape(net.pool(props.Boxes, res), n*p, res, res, cfg.FPNChannels), cfg)
	probs := ConvertDType(Softmax(logits, -1), boxDType)             // [N*P, K+1]
	scores := Reshape(SliceAxis(probs, 1, AxisRange(0, k)), n, p, k) // background dropped
	deltas = Reshape(ConvertDType(deltas, boxDType), n, p, k, 4)     // [N, P, K, 4]
	propK := BroadcastToDims(ExpandAxes(props.Boxes, 2), n, p, k, 4) // [N, P, K, 4]
	boxes := BoxTransform{Weights: cfg.BoxRegWeights, ScaleClamp: cfg.ScaleClamp}.Decode(deltas, propK)
	finite := LogicalAnd(LogicalAll(IsFinite(Reshape(boxes, n, p, 4*k)), -1), LogicalAll(IsFinite(scores), -1)) // [N, P]
	boxes = Where(BroadcastToShape(ExpandAxes(ExpandAxes(finite, 2), 3), boxes.Shape()), boxes, ZerosLike(boxes))
	boxes = clipBoxes(boxes, net.imageHW)

	cand := GreaterThan(scores, Scalar(g, boxDType, cfg.ScoreThreshTest))
	cand = LogicalAnd(cand, BroadcastToShape(ExpandAxes(LogicalAnd(props.Valid, finite), 2), cand.Shape()))
	cand = Reshape(cand, n, p*k)
	flatScores, flatBoxes := Reshape(scores, n, p*k), Reshape(boxes, n, p*k, 4)
	minus1 := BroadcastToShape(Scalar(g, boxDType, -1), flatScores.Shape())
	mc := min(cfg.TestCandidates, p*k)
	candScore, candIdx := TopK(Where(cand, flatScores, minus1), mc, 1)
	candValid := takeAlong(cand, candIdx)
	candClass := Sub(candIdx, MulScalar(Div(candIdx, Const(g, int32(k))), k)) // index % K
	candBoxes := takeAlong(flatBoxes, candIdx)
	keep := NMS(candBoxes, candValid, candClass, cfg.NMSThreshTest)

	d := min(cfg.DetectionsPerImage, mc)
	detScore, order := TopK(Where(keep, candScore, BroadcastToShape(Scalar(g, boxDType, -1), candScore.Shape())), d, 1)
	det := Detections{
		Valid:   takeAlong(keep, order),
		Classes: takeAlong(candClass, order),
	}
	det.Boxes = Where(BroadcastToDims(ExpandAxes(det.Valid, 2), n, d, 4), takeAlong(candBoxes, order), Zeros(g, shapes.Make(boxDType, n, d, 4)))
	det.Scores = Where(det.Valid, detScore, ZerosLike(detScore))
	numCand := ReduceSum(ConvertDType(cand, dtypes.Int32), 1)
	numKept := ReduceSum(ConvertDType(keep, dtypes.Int32), 1)
	det.Overflow = LogicalAnd(GreaterThan(numCand, Const(g, int32(mc))), LessThan(numKept, Const(g, int32(d))))

	mp := cfg.MaskPoolerResolution
	maskLogits := MaskHead(roi, Reshape(net.pool(det.Boxes, mp), n*d, mp, mp, cfg.FPNChannels), cfg)
	sel := selectClassMask(maskLogits, Reshape(det.Classes, n*d))
	det.Masks = Reshape(ConvertDType(Sigmoid(sel), boxDType), n, d, 2*mp, 2*mp)
	return det
}
