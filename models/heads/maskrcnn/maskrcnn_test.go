package maskrcnn

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/resnet"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// tinyBatch is two 64x64 images with 2 and 1 instances (padded to 3): images, boxes, classes,
// masks (each mask an ellipse inside its box).
func tinyBatch() []*tensors.Tensor {
	const n, g, size = 2, 3, 64
	boxes := [][][4]float32{
		{{8, 8, 30, 36}, {36, 20, 60, 50}, {}},
		{{4, 30, 40, 62}, {}, {}},
	}
	classes := []int32{0, 2, -1, 1, -1, -1}
	masks := make([]float32, n*g*size*size)
	flatBoxes := make([]float32, 0, n*g*4)
	for i := range n {
		for j := range g {
			b := boxes[i][j]
			flatBoxes = append(flatBoxes, b[:]...)
			if classes[i*g+j] < 0 {
				continue
			}
			cx, cy := (b[0]+b[2])/2, (b[1]+b[3])/2
			rx, ry := (b[2]-b[0])/2, (b[3]-b[1])/2
			for y := range size {
				for x := range size {
					dx, dy := (float32(x)+0.5-cx)/rx, (float32(y)+0.5-cy)/ry
					if dx*dx+dy*dy <= 1 {
						masks[((i*g+j)*size+y)*size+x] = 1
					}
				}
			}
		}
	}
	return []*tensors.Tensor{
		randomImages(21, n, size, size, 3),
		tensors.FromFlatDataAndDimensions(flatBoxes, n, g, 4),
		tensors.FromFlatDataAndDimensions(classes, n, g),
		tensors.FromFlatDataAndDimensions(masks, n, g, size, size),
	}
}

func randomImages(seed uint64, dims ...int) *tensors.Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	size := 1
	for _, d := range dims {
		size *= d
	}
	flat := make([]float32, size)
	for i := range flat {
		flat[i] = float32(rng.NormFloat64())
	}
	return tensors.FromFlatDataAndDimensions(flat, dims...)
}

func backboneFeatures(scope *model.Scope, images *Node) backbones.Features {
	entry, err := backbones.Get("resnet18")
	if err != nil {
		panic(err)
	}
	return entry.Build(scope.In("backbone"), images, backbones.Options{}).Features
}

// TestTrainingStepAndDetect runs one training step of Mask R-CNN on ResNet-18 at 64x64 with the
// Go backend, checks that the loss is finite and that every variable of the heads got a
// non-zero gradient, then runs Detect with the trained store and checks its static shapes and
// the host post-processing.
func TestTrainingStepAndDetect(t *testing.T) {
	cfg := Small()
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(3); err != nil {
		t.Fatal(err)
	}
	lossFn := func(scope *model.Scope, batch []*Node) map[string]*Node {
		feats := backboneFeatures(scope, batch[0])
		return Losses(scope, feats, batch[0], GroundTruth{Boxes: batch[1], Classes: batch[2], Masks: batch[3]}, cfg)
	}
	tr, err := train.NewTrainer(backend.Go(), store, train.Config{
		Optimizer: train.OptimizerConfig{Name: "sgd"},
		Schedule:  train.Schedule{Kind: "constant", BaseLR: 0.01},
	}, lossFn)
	if err != nil {
		t.Fatal(err)
	}
	batch := tinyBatch()
	res, err := tr.Step(batch...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("terms %v, grad norm %.3g", res.Terms, res.GradNorm)
	if !res.Finite || math.IsNaN(res.Loss()) || math.IsInf(res.Loss(), 0) {
		t.Fatalf("non-finite step: %v", res.Terms)
	}
	sum := 0.0
	for _, name := range []string{"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"} {
		v, ok := res.Terms[name]
		if !ok || !(v > 0) {
			t.Errorf("term %s = %v, want > 0", name, v)
		}
		sum += v
	}
	if !closeTo(res.Loss(), sum, 1e-5) {
		t.Errorf("loss %g is not the sum of its terms %g", res.Loss(), sum)
	}
	if res.Terms["num_fg_rois"] < 1 {
		t.Errorf("no foreground RoI sampled: %v", res.Terms)
	}

	// SGD's momentum buffer after the first step is the gradient itself.
	heads := 0
	for v := range store.IterVariables() {
		p := v.Path()
		if !v.Trainable || !(strings.HasPrefix(p, "/fpn/") || strings.HasPrefix(p, "/rpn/") || strings.HasPrefix(p, "/roi_heads/")) {
			continue
		}
		heads++
		buf := store.GetVariable("/optimizer" + p + "/momentum")
		if buf == nil {
			t.Errorf("%s was not trained", p)
			continue
		}
		norm := 0.0
		for _, x := range tensors.MustCopyFlatData[float32](buf.MustValue()) {
			norm += float64(x) * float64(x)
		}
		if !(norm > 0) || math.IsInf(norm, 0) {
			t.Errorf("%s: gradient norm² %g", p, norm)
		}
	}
	// fpn: 4 lateral + 4 output; rpn: 3; box head 2 fc + 2 predictors; mask head 4 + deconv +
	// predictor: 2 variables each.
	if want := 2 * (8 + 3 + 4 + 6); heads != want {
		t.Errorf("%d head variables, want %d", heads, want)
	}

	// Inference with the trained weights.
	out := model.MustCallOnceN(backend.Go(), store, func(scope *model.Scope, images *Node) []*Node {
		store.SetTraining(images.Graph(), false)
		d := Detect(scope, backboneFeatures(scope, images), images, cfg)
		return []*Node{d.Boxes, d.Scores, d.Classes, d.Masks, d.Valid, d.Overflow}
	}, batch[0])
	d, m := cfg.DetectionsPerImage, 2*cfg.MaskPoolerResolution
	wantShapes := [][]int{{2, d, 4}, {2, d}, {2, d}, {2, d, m, m}, {2, d}, {2}}
	wantTypes := []dtypes.DType{dtypes.Float32, dtypes.Float32, dtypes.Int32, dtypes.Float32, dtypes.Bool, dtypes.Bool}
	for i, o := range out {
		if !slices.Equal(o.Shape().Dimensions, wantShapes[i]) || o.DType() != wantTypes[i] {
			t.Errorf("output %d: %s, want %s %v", i, o.Shape(), wantTypes[i], wantShapes[i])
		}
	}
	dets, err := FetchDetections(out[0], out[1], out[2], out[3], out[4])
	if err != nil {
		t.Fatal(err)
	}
	for i, det := range dets {
		for j := 1; j < len(det.Scores); j++ {
			if det.Scores[j] > det.Scores[j-1] {
				t.Errorf("image %d: scores not sorted: %v", i, det.Scores)
			}
		}
		for j, b := range det.Boxes {
			if b[0] < 0 || b[1] < 0 || b[2] > 64 || b[3] > 64 || det.Scores[j] <= float32(cfg.ScoreThreshTest) || det.Classes[j] < 0 || det.Classes[j] >= cfg.NumClasses {
				t.Errorf("image %d detection %d: box %v score %v class %d", i, j, b, det.Scores[j], det.Classes[j])
			}
		}
	}
	results, err := COCOResults(dets, []ImageInfo{{ID: 1, Height: 128, Width: 96, InputHeight: 64, InputWidth: 64}, {ID: 2, Height: 64, Width: 64, InputHeight: 64, InputWidth: 64}},
		[]int64{1, 5, 9}, cfg.MaskThreshold)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d detections, %d COCO results", len(dets[0].Scores)+len(dets[1].Scores), len(results))
	for _, r := range results {
		if r.Segmentation == nil || (r.CategoryID != 1 && r.CategoryID != 5 && r.CategoryID != 9) {
			t.Errorf("bad result %+v", r)
		}
	}
}

// TestDefaultConfigBuildsAtCOCOScale builds (without running) the training graph with its
// gradient and the inference graph of detectron2's configuration on ResNet-50 at 800x1344,
// batch 2, 100 ground-truth slots: every static size must be consistent at full scale.
func TestDefaultConfigBuildsAtCOCOScale(t *testing.T) {
	cfg := Default()
	const n, h, w, numGT = 2, 800, 1344, 100
	entry, err := backbones.Get("resnet50")
	if err != nil {
		t.Fatal(err)
	}
	store := model.NewStore()
	g := NewGraph(backend.Go(), "coco-scale")
	images := Parameter(g, "images", shapes.Make(dtypes.Float32, n, h, w, 3))
	gt := GroundTruth{
		Boxes:   Parameter(g, "boxes", shapes.Make(dtypes.Float32, n, numGT, 4)),
		Classes: Parameter(g, "classes", shapes.Make(dtypes.Int32, n, numGT)),
		Masks:   Parameter(g, "masks", shapes.Make(dtypes.Uint8, n, numGT, h, w)),
	}
	scope := store.RootScope()
	store.SetTraining(g, true)
	feats := entry.Build(scope.In("backbone"), images, backbones.Options{}).Features
	terms := Losses(scope, feats, images, gt, cfg)
	var wrt []*Node
	for v := range store.IterVariables() {
		if v.Trainable && v.InUseByGraph(g) && v.DType().IsFloat() {
			wrt = append(wrt, v.NodeValue(g))
		}
	}
	grads := Gradient(terms["loss"], wrt...)
	t.Logf("training graph: %d nodes, %d gradients", len(g.Nodes()), len(grads))
	if len(grads) < 100 {
		t.Errorf("only %d gradients", len(grads))
	}

	g2 := NewGraph(backend.Go(), "coco-scale-detect")
	images2 := Parameter(g2, "images", shapes.Make(dtypes.Float32, n, h, w, 3))
	scope2 := store.RootScope()
	store.SetTraining(g2, false)
	d := Detect(scope2, entry.Build(scope2.In("backbone"), images2, backbones.Options{}).Features, images2, cfg)
	if dims := d.Masks.Shape().Dimensions; !slices.Equal(dims, []int{n, 100, 28, 28}) {
		t.Errorf("masks %v", dims)
	}
}
