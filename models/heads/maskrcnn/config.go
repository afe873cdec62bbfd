package maskrcnn

import (
	"fmt"
	"math"
)

// Config holds every hyperparameter of Mask R-CNN with FPN. Default returns detectron2's
// COCO-InstanceSegmentation/mask_rcnn_R_50_FPN recipe (Base-RCNN-FPN.yaml over defaults.py);
// the comments name the detectron2 key each field mirrors.
type Config struct {
	// NumClasses is the number of foreground classes K (MODEL.ROI_HEADS.NUM_CLASSES). Class
	// indices are 0..K-1; the box classifier has K+1 outputs, the last one being background.
	NumClasses int

	// InFeatures are the backbone levels the FPN reads, finest first (MODEL.FPN.IN_FEATURES:
	// res2..res5 = C2..C5). Their strides must double from one to the next.
	InFeatures []string
	// FPNChannels is the width of every pyramid level (MODEL.FPN.OUT_CHANNELS).
	FPNChannels int

	// AnchorSizes holds one anchor size (sqrt of its area, in input pixels) per RPN level
	// P2..P6 (MODEL.ANCHOR_GENERATOR.SIZES).
	AnchorSizes []float64
	// AspectRatios (height/width) of the anchors at every location (ASPECT_RATIOS).
	AspectRatios []float64
	// AnchorOffset is the offset of the first anchor centre, in strides (OFFSET).
	AnchorOffset float64

	RPNIoUThresholds     [2]float64 // background below the first, foreground from the second (RPN.IOU_THRESHOLDS)
	RPNBatchSizePerImage int        // anchors sampled per image for the RPN losses (RPN.BATCH_SIZE_PER_IMAGE)
	RPNPositiveFraction  float64    // (RPN.POSITIVE_FRACTION)
	RPNBoxWeights        [4]float64 // (RPN.BBOX_REG_WEIGHTS)
	RPNSmoothL1Beta      float64    // (RPN.SMOOTH_L1_BETA); 0 is the L1 loss
	RPNPreNMSTopKTrain   int        // proposals kept per level before NMS (RPN.PRE_NMS_TOPK_TRAIN)
	RPNPreNMSTopKTest    int        // (RPN.PRE_NMS_TOPK_TEST)
	RPNPostNMSTopKTrain  int        // proposals kept per image after NMS (RPN.POST_NMS_TOPK_TRAIN)
	RPNPostNMSTopKTest   int        // (RPN.POST_NMS_TOPK_TEST)
	RPNNMSThresh         float64    // (RPN.NMS_THRESH)
	RPNMinBoxSize        float64    // proposals not wider and taller than this are dropped (PROPOSAL_GENERATOR.MIN_SIZE)

	ROIIoUThreshold      float64    // (ROI_HEADS.IOU_THRESHOLDS)
	ROIBatchSizePerImage int        // RoIs sampled per image (ROI_HEADS.BATCH_SIZE_PER_IMAGE)
	ROIPositiveFraction  float64    // (ROI_HEADS.POSITIVE_FRACTION)
	ProposalAppendGT     bool       // add the ground-truth boxes to the proposals (ROI_HEADS.PROPOSAL_APPEND_GT)
	BoxRegWeights        [4]float64 // (ROI_BOX_HEAD.BBOX_REG_WEIGHTS)
	BoxSmoothL1Beta      float64    // (ROI_BOX_HEAD.SMOOTH_L1_BETA)

	// RoI pooling (ROIAlignV2: aligned=True).
	BoxPoolerResolution  int // (ROI_BOX_HEAD.POOLER_RESOLUTION)
	MaskPoolerResolution int // (ROI_MASK_HEAD.POOLER_RESOLUTION); masks are predicted at twice this size
	// PoolerSamplingRatio is the number of bilinear samples per bin and axis; 0 means
	// detectron2's adaptive ceil(roi size / resolution), computed per RoI (POOLER_SAMPLING_RATIO).
	PoolerSamplingRatio int
	CanonicalBoxSize    float64 // a box of this size is pooled from CanonicalLevel (ROIPooler's 224)
	CanonicalLevel      int     // (ROIPooler's 4)

	BoxHeadNumFC    int // (ROI_BOX_HEAD.NUM_FC)
	BoxHeadFCDim    int // (ROI_BOX_HEAD.FC_DIM)
	MaskHeadNumConv int // (ROI_MASK_HEAD.NUM_CONV)
	MaskHeadConvDim int // (ROI_MASK_HEAD.CONV_DIM)

	ScoreThreshTest    float64 // (ROI_HEADS.SCORE_THRESH_TEST)
	NMSThreshTest      float64 // (ROI_HEADS.NMS_THRESH_TEST)
	DetectionsPerImage int     // (TEST.DETECTIONS_PER_IMAGE)
	// TestCandidates is the static number of (proposal, class) pairs above the score threshold
	// that enter the per-class NMS, highest scores first. Detections equal detectron2's whenever
	// at most TestCandidates pairs pass the threshold or at least DetectionsPerImage of them
	// survive NMS; Detections.Overflow flags the other images. detectron2 has no such bound.
	TestCandidates int
	// MaskThreshold binarises the pasted mask probabilities (paste_masks_in_image's 0.5).
	MaskThreshold float64

	// ScaleClamp bounds the predicted log width/height change (box_regression's log(1000/16)).
	ScaleClamp float64
}

// Default returns detectron2's R50-FPN Mask R-CNN configuration for COCO (80 classes).
func Default() Config {
	return Config{
		NumClasses:  80,
		InFeatures:  []string{"C2", "C3", "C4", "C5"},
		FPNChannels: 256,

		AnchorSizes:  []float64{32, 64, 128, 256, 512},
		AspectRatios: []float64{0.5, 1, 2},
		AnchorOffset: 0,

		RPNIoUThresholds:     [2]float64{0.3, 0.7},
		RPNBatchSizePerImage: 256,
		RPNPositiveFraction:  0.5,
		RPNBoxWeights:        [4]float64{1, 1, 1, 1},
		RPNSmoothL1Beta:      0,
		RPNPreNMSTopKTrain:   2000,
		RPNPreNMSTopKTest:    1000,
		RPNPostNMSTopKTrain:  1000,
		RPNPostNMSTopKTest:   1000,
		RPNNMSThresh:         0.7,
		RPNMinBoxSize:        0,

		ROIIoUThreshold:      0.5,
		ROIBatchSizePerImage: 512,
		ROIPositiveFraction:  0.25,
		ProposalAppendGT:     true,
		BoxRegWeights:        [4]float64{10, 10, 5, 5},
		BoxSmoothL1Beta:      0,

		BoxPoolerResolution:  7,
		MaskPoolerResolution: 14,
		PoolerSamplingRatio:  0,
		CanonicalBoxSize:     224,
		CanonicalLevel:       4,

		BoxHeadNumFC:    2,
		BoxHeadFCDim:    1024,
		MaskHeadNumConv: 4,
		MaskHeadConvDim: 256,

		ScoreThreshTest:    0.05,
		NMSThreshTest:      0.5,
		DetectionsPerImage: 100,
		TestCandidates:     4000,
		MaskThreshold:      0.5,

		ScaleClamp: math.Log(1000.0 / 16),
	}
}

// Small is Default scaled down for CPU tests and smoke runs on ~64x64 images: narrow layers,
// few proposals and samples, anchors and the canonical pooling size divided by 8. The
// algorithms are unchanged.
func Small() Config {
	c := Default()
	c.NumClasses = 3
	c.FPNChannels = 16
	c.AnchorSizes = []float64{4, 8, 16, 32, 64}
	c.RPNBatchSizePerImage = 64
	c.RPNPreNMSTopKTrain, c.RPNPreNMSTopKTest = 48, 32
	c.RPNPostNMSTopKTrain, c.RPNPostNMSTopKTest = 32, 24
	c.ROIBatchSizePerImage = 16
	c.CanonicalBoxSize = 28
	c.BoxHeadFCDim = 32
	c.MaskHeadConvDim = 16
	c.DetectionsPerImage = 8
	c.TestCandidates = 32
	return c
}

// NumAnchors is the number of anchors at each location of each level.
func (c Config) NumAnchors() int { return len(c.AspectRatios) }

// Validate reports the first inconsistent setting.
func (c Config) Validate() error {
	switch {
	case c.NumClasses < 1:
		return fmt.Errorf("maskrcnn: NumClasses must be >= 1, got %d", c.NumClasses)
	case len(c.InFeatures) < 1:
		return fmt.Errorf("maskrcnn: InFeatures is empty")
	case len(c.AnchorSizes) != len(c.InFeatures)+1:
		return fmt.Errorf("maskrcnn: %d anchor sizes for %d RPN levels (the FPN levels and P6)", len(c.AnchorSizes), len(c.InFeatures)+1)
	case len(c.AspectRatios) < 1:
		return fmt.Errorf("maskrcnn: AspectRatios is empty")
	case c.AnchorOffset < 0 || c.AnchorOffset >= 1:
		return fmt.Errorf("maskrcnn: AnchorOffset must be in [0, 1), got %g", c.AnchorOffset)
	case c.RPNIoUThresholds[0] <= 0 || c.RPNIoUThresholds[0] > c.RPNIoUThresholds[1]:
		return fmt.Errorf("maskrcnn: RPN IoU thresholds %v must be increasing and positive", c.RPNIoUThresholds)
	case c.RPNBatchSizePerImage < 1 || c.ROIBatchSizePerImage < 1:
		return fmt.Errorf("maskrcnn: sample sizes must be >= 1")
	case c.RPNPositiveFraction <= 0 || c.RPNPositiveFraction > 1 || c.ROIPositiveFraction <= 0 || c.ROIPositiveFraction > 1:
		return fmt.Errorf("maskrcnn: positive fractions must be in (0, 1]")
	case c.RPNPreNMSTopKTrain < 1 || c.RPNPreNMSTopKTest < 1 || c.RPNPostNMSTopKTrain < 1 || c.RPNPostNMSTopKTest < 1:
		return fmt.Errorf("maskrcnn: RPN top-k sizes must be >= 1")
	case c.BoxPoolerResolution < 1 || c.MaskPoolerResolution < 1 || c.PoolerSamplingRatio < 0:
		return fmt.Errorf("maskrcnn: bad pooler settings")
	case c.CanonicalBoxSize <= 0:
		return fmt.Errorf("maskrcnn: CanonicalBoxSize must be > 0")
	case c.BoxHeadNumFC < 1 || c.BoxHeadFCDim < 1 || c.MaskHeadConvDim < 1 || c.MaskHeadNumConv < 0:
		return fmt.Errorf("maskrcnn: bad head sizes")
	case c.DetectionsPerImage < 1 || c.TestCandidates < 1:
		return fmt.Errorf("maskrcnn: DetectionsPerImage and TestCandidates must be >= 1")
	case c.BoxSmoothL1Beta < 0 || c.RPNSmoothL1Beta < 0:
		return fmt.Errorf("maskrcnn: smooth-L1 betas must be >= 0")
	}
	return nil
}

// numPosMax is detectron2's int(num * positive_fraction).
func numPosMax(num int, fraction float64) int { return int(float64(num) * fraction) }
