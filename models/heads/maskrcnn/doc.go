// Package maskrcnn is Mask R-CNN with a feature pyramid network, following detectron2's R50-FPN
// recipe (configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_{1x,3x}.yaml), the detector of
// DreamTeacher's COCO and BDD100K instance segmentation benchmarks.
//
// It sits on top of any backbone of models/backbones (levels C2..C5):
//
//	feats := backbone.Build(scope.In("backbone"), images, backbones.Options{}).Features
//	terms := maskrcnn.Losses(scope, feats, images, gt, cfg) // training: named loss terms
//	dets := maskrcnn.Detect(scope, feats, images, cfg)      // inference: boxes, scores, classes, masks
//
// and on the host, FetchDetections and COCOResults turn executed detections into COCO results
// (masks pasted at the original size and RLE-encoded) for eval/coco.
//
// The pieces, with detectron2's semantics: FPN (P2..P6), anchors and BoxTransform, the RPN head,
// Match (Matcher), Subsample (subsample_labels), RPNLosses, FindTopProposals, NMS, RoIAlign and
// MultiLevelRoIAlign (ROIAlignV2 + ROIPooler), SampleRoIs, BoxHead/BoxLosses, MaskHead,
// MaskTargets/MaskLoss, and the Schedules of 1x/2x/3x training. Config.Default is detectron2's
// configuration, Config.Small a scaled-down one for CPU tests.
//
// Every shape is static, so one graph serves every batch: the number of anchors, proposals
// (padded, with a validity mask), sampled anchors and RoIs (random priorities and top-k instead
// of randperm), ground-truth instances (padded with class -1) and detections is fixed by the
// configuration and the input size. Control flow with a data-dependent trip count runs in While
// loops: greedy NMS (an exact fixed-point formulation) and RoIAlign's adaptive sampling grid,
// whose gradient is attached by hand. Where the static formulation can differ from detectron2
// it is said in the doc comment of the function concerned (Config.TestCandidates, Match).
//
// Variables mirror detectron2's module names: fpn/lateral2..5, fpn/output2..5, rpn/conv,
// rpn/objectness_logits, rpn/anchor_deltas, roi_heads/box_head/fc1, fc2,
// roi_heads/box_predictor/cls_score, bbox_pred, roi_heads/mask_head/conv1..4, deconv,
// predictor; each holds "weights" (HWIO for convolutions, [in, out] for linear layers) and
// "biases".
package maskrcnn
