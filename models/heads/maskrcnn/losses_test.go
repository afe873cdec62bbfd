package maskrcnn

import (
	"math"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func scalars(out []*tensors.Tensor) []float64 {
	res := make([]float64, len(out))
	for i, t := range out {
		switch v := t.Value().(type) {
		case float32:
			res[i] = float64(v)
		case float64:
			res[i] = v
		}
	}
	return res
}

func TestRPNLossesHandMade(t *testing.T) {
	// One image, four anchors, one ground truth equal to anchor 0: anchor 0 is the only
	// foreground (IoU 1), anchor 2 (IoU 0.25) and the others are background, and all four are
	// sampled (256 per image). Anchor 0 predicts logit 2, the others -1.
	cfg := Default()
	anchors := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 20, 20, 30, 30, 0, 0, 5, 5, 40, 40, 50, 50}, 4, 4)
	gtBoxes := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 0, 0, 0, 0}, 1, 2, 4)
	gtValid := tensors.FromFlatDataAndDimensions([]bool{true, false}, 1, 2)
	logits := tensors.FromFlatDataAndDimensions([]float32{2, -1, -1, -1}, 1, 4)
	wantCls := (math.Log1p(math.Exp(-2)) + 3*math.Log1p(math.Exp(-1))) / 256
	for _, tc := range []struct {
		name    string
		deltas  []float32
		wantLoc float64
	}{
		{"perfect", []float32{0, 0, 0, 0, 5, 5, 5, 5, -3, 1, 2, 0, 9, 9, 9, 9}, 0},
		{"off", []float32{0.1, -0.2, 0.3, 0, 5, 5, 5, 5, -3, 1, 2, 0, 9, 9, 9, 9}, 0.6 / 256},
	} {
		got := scalars(model.MustCallOnceN(backend.Go(), model.NewStore(), func(scope *model.Scope, in []*Node) []*Node {
			c, l := RPNLosses(scope, in[0], in[1], in[2], in[3], in[4], cfg)
			return []*Node{c, l}
		}, anchors, logits, tensors.FromFlatDataAndDimensions(tc.deltas, 1, 4, 4), gtBoxes, gtValid))
		if !closeTo(got[0], wantCls, 1e-5) || !closeTo(got[1], tc.wantLoc, 1e-5) {
			t.Errorf("%s: loss_rpn_cls %g loss_rpn_loc %g, want %g %g", tc.name, got[0], got[1], wantCls, tc.wantLoc)
		}
	}
}

func TestBoxLossesHandMade(t *testing.T) {
	// Three slots: a foreground RoI of class 1, a background RoI (class K = 2) and an unused slot.
	cfg := Default()
	cfg.NumClasses = 2
	tf := BoxTransform{Weights: cfg.BoxRegWeights, ScaleClamp: cfg.ScaleClamp}
	boxes := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 20, 20, 30, 40, 0, 0, 0, 0}, 1, 3, 4)
	gtBoxes := tensors.FromFlatDataAndDimensions([]float32{1, 2, 11, 14, 0, 0, 1, 1, 0, 0, 0, 0}, 1, 3, 4)
	classes := tensors.FromFlatDataAndDimensions([]int32{1, 2, -1}, 1, 3)
	logits := tensors.FromFlatDataAndDimensions([]float32{0, 2, 0, 1, 1, 1, 5, 5, 5}, 3, 3)
	// CE of slot 0 (label 1): -log(e^2/(2+e^2)); slot 1 (label 2): log 3.
	wantCls := (math.Log(2+math.Exp(2)) - 2 + math.Log(3)) / 2
	for _, off := range []float32{0, 0.25} {
		got := scalars(model.MustCallOnceN(backend.Go(), model.NewStore(), func(scope *model.Scope, in []*Node) []*Node {
			g := in[0].Graph()
			target := tf.Encode(SliceAxis(Reshape(in[0], 3, 4), 0, AxisRange(0, 1)), SliceAxis(Reshape(in[1], 3, 4), 0, AxisRange(0, 1)))
			// deltas [3, K, 4]: class 1 of slot 0 holds the target (+off on dx); everything else is noise.
			noise := AddScalar(IotaFull(g, target.Shape()), 3)
			slot0 := Stack([]*Node{noise, Add(target, Const(g, [][]float32{{off, 0, 0, 0}}))}, 1) // [1, K, 4]
			deltas := Concatenate([]*Node{slot0, MulScalar(OnesLike(slot0), 7), MulScalar(OnesLike(slot0), -7)}, 0)
			s := RoISamples{Boxes: in[0], GTBoxes: in[1], Classes: in[2], Valid: GreaterOrEqual(in[2], Const(g, int32(0)))}
			s.Foreground = LogicalAnd(s.Valid, LessThan(in[2], Const(g, int32(cfg.NumClasses))))
			c, b := BoxLosses(in[3], deltas, s, cfg)
			return []*Node{c, b}
		}, boxes, gtBoxes, classes, logits))
		if !closeTo(got[0], wantCls, 1e-5) || !closeTo(got[1], float64(off)/2, 1e-5) {
			t.Errorf("offset %g: loss_cls %g loss_box_reg %g, want %g %g", off, got[0], got[1], wantCls, off/2)
		}
	}
}

func TestMaskTargetsAndLoss(t *testing.T) {
	// An 8x8 mask with the square of pixels 2..5: RoI (0, 0, 8, 8) at size 4 averages 2x2 pixel
	// blocks (samples exactly at pixel centres), RoI (2, 2, 6, 6) is all foreground.
	m := make([]uint8, 64)
	for y := 2; y <= 5; y++ {
		for x := 2; x <= 5; x++ {
			m[y*8+x] = 1
		}
	}
	masks := tensors.FromFlatDataAndDimensions(m, 1, 1, 8, 8)
	boxes := tensors.FromFlatDataAndDimensions([]float32{0, 0, 8, 8, 2, 2, 6, 6}, 1, 2, 4)
	idx := tensors.FromFlatDataAndDimensions([]int32{0, 0}, 1, 2)
	got := tensors.MustCopyFlatData[float32](model.MustCallOnce(backend.Go(), model.NewStore(), func(_ *model.Scope, in []*Node) *Node {
		return MaskTargets(in[0], in[1], in[2], 4)
	}, masks, boxes, idx))
	want := []float32{0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	if !slices.Equal(got, want) {
		t.Errorf("mask targets %v, want %v", got, want)
	}

	// Loss: zero logits give log 2 per pixel; confident correct logits give ~0. Slot 1 is
	// background and slot 2 unused: their (wrong) logits must not count.
	loss := func(scale float32) float64 {
		out := model.MustCallOnce(backend.Go(), model.NewStore(), func(_ *model.Scope, in []*Node) *Node {
			tg := Reshape(in[0], 1, 4, 4)
			right := MulScalar(SubScalar(MulScalar(tg, 2), 1), float64(scale))                                          // +-scale
			logits := Concatenate([]*Node{ZerosLike(tg), right}, 0)                                                     // 2 classes
			logits = Reshape(TransposeAllAxes(Reshape(logits, 2, 1, 4, 4), 1, 2, 3, 0), 1, 4, 4, 2)                     // [1, 4, 4, K]
			logits = Concatenate([]*Node{logits, MulScalar(OnesLike(logits), -30), MulScalar(OnesLike(logits), 30)}, 0) // 3 RoIs
			targets := Concatenate([]*Node{tg, OnesLike(tg), OnesLike(tg)}, 0)
			g := in[0].Graph()
			return MaskLoss(logits, Const(g, []int32{1, 3, -1}), Const(g, []bool{true, false, false}), targets)
		}, tensors.FromFlatDataAndDimensions(want[:16], 4, 4))
		return scalars([]*tensors.Tensor{out})[0]
	}
	if l := loss(0); !closeTo(l, math.Ln2, 1e-6) {
		t.Errorf("zero logits: mask loss %g, want log 2", l)
	}
	if l := loss(30); l > 1e-10 {
		t.Errorf("confident logits: mask loss %g, want ~0", l)
	}
}
