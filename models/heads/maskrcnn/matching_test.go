package maskrcnn

import (
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func TestMatcher(t *testing.T) {
	// Image 0: two real ground truths and one padding row (whose IoUs must be ignored).
	// Image 1: no ground truth at all.
	iou := tensors.FromFlatDataAndDimensions([]float32{
		0.8, 0.5, 0.1, 0.0, 0.2,
		0.1, 0.6, 0.25, 0.0, 0.6,
		0.9, 0.9, 0.9, 0.9, 0.9,

		0.9, 0.9, 0.9, 0.9, 0.9,
		0.9, 0.9, 0.9, 0.9, 0.9,
		0.9, 0.9, 0.9, 0.9, 0.9,
	}, 2, 3, 5)
	valid := tensors.FromFlatDataAndDimensions([]bool{true, true, false, false, false, false}, 2, 3)
	for _, lowQuality := range []bool{false, true} {
		out := model.MustCallOnceN(backend.Go(), model.NewStore(), func(_ *model.Scope, iou, valid *Node) []*Node {
			m, l := Match(iou, valid, []float64{0.3, 0.7}, []int{0, -1, 1}, lowQuality)
			return []*Node{m, l}
		}, iou, valid)
		matched := tensors.MustCopyFlatData[int32](out[0])
		labels := tensors.MustCopyFlatData[int32](out[1])
		// Best IoUs 0.8, 0.6, 0.25, 0 (tie: first gt), 0.6.
		wantMatched := []int32{0, 1, 1, 0, 1}
		wantLabels := []int32{1, -1, 0, 0, -1}
		if lowQuality {
			// gt 1's highest IoU (0.6) is reached by predictions 1 and 4: both become foreground.
			wantLabels = []int32{1, 1, 0, 0, 1}
		}
		if !slices.Equal(matched[:5], wantMatched) || !slices.Equal(labels[:5], wantLabels) {
			t.Errorf("low quality %v: matched %v labels %v, want %v %v", lowQuality, matched[:5], labels[:5], wantMatched, wantLabels)
		}
		if !slices.Equal(labels[5:], []int32{0, 0, 0, 0, 0}) {
			t.Errorf("image without ground truth: labels %v, want all background", labels[5:])
		}
	}
}

func TestSubsample(t *testing.T) {
	labels := make([]int32, 40)
	for i := range 20 { // image 0: 6 fg, 10 bg, 4 ignored
		switch {
		case i < 6:
			labels[i] = 1
		case i < 16:
			labels[i] = 0
		default:
			labels[i] = -1
		}
	}
	for i := 20; i < 40; i++ { // image 1: 1 fg, 3 bg
		labels[i] = -1
	}
	labels[25], labels[30], labels[31], labels[39] = 1, 0, 0, 0
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(11); err != nil {
		t.Fatal(err)
	}
	out := model.MustCallOnceN(backend.Go(), store, func(scope *model.Scope, l *Node) []*Node {
		idx, slot := Subsample(scope, l, 8, 0.5)
		return []*Node{idx, slot}
	}, tensors.FromFlatDataAndDimensions(labels, 2, 20))
	idx := tensors.MustCopyFlatData[int32](out[0])
	slot := tensors.MustCopyFlatData[int32](out[1])
	if len(idx) != 16 {
		t.Fatalf("got %d slots, want 2x8", len(idx))
	}
	wantSlots := [][]int32{{1, 1, 1, 1, 0, 0, 0, 0}, {1, 0, 0, 0, -1, -1, -1, -1}}
	for n := range 2 {
		seen := map[int32]bool{}
		for j := range 8 {
			s, i := slot[n*8+j], idx[n*8+j]
			if s != wantSlots[n][j] {
				t.Fatalf("image %d: slots %v, want %v", n, slot[n*8:n*8+8], wantSlots[n])
			}
			if s < 0 {
				continue
			}
			if labels[n*20+int(i)] != s || seen[i] {
				t.Fatalf("image %d slot %d: entry %d (label %d) for slot label %d, or repeated", n, j, i, labels[n*20+int(i)], s)
			}
			seen[i] = true
		}
	}
}

func TestSampleRoIs(t *testing.T) {
	cfg := Small()
	cfg.ROIBatchSizePerImage = 8 // at most 2 foreground
	props := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 0, 0, 10, 5, 50, 50, 60, 60, 0, 0, 0, 0}, 1, 4, 4)
	propValid := tensors.FromFlatDataAndDimensions([]bool{true, true, true, false}, 1, 4)
	gtBoxes := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 0, 0, 0, 0}, 1, 2, 4)
	gtClasses := tensors.FromFlatDataAndDimensions([]int32{2, -1}, 1, 2)
	out := model.MustCallOnceN(backend.Go(), model.NewStore(), func(scope *model.Scope, in []*Node) []*Node {
		s := SampleRoIs(scope, Proposals{Boxes: in[0], Valid: in[1]}, in[2], in[3], cfg)
		if s.NumFGSlots != 2 {
			t.Errorf("NumFGSlots %d, want 2", s.NumFGSlots)
		}
		return []*Node{s.Classes, s.Foreground, s.Valid, s.GTIndex, s.Boxes}
	}, props, propValid, gtBoxes, gtClasses)
	classes := tensors.MustCopyFlatData[int32](out[0])
	// Foreground candidates: proposals 0 and 1 (IoU 1 and 0.5) and the appended gt; background:
	// proposal 2 only; proposal 3 is padding.
	want := []int32{2, 2, int32(cfg.NumClasses), -1, -1, -1, -1, -1}
	if !slices.Equal(classes, want) {
		t.Errorf("classes %v, want %v", classes, want)
	}
	boxes := tensors.MustCopyFlatData[float32](out[4])
	if !slices.Equal(boxes[8:12], []float32{50, 50, 60, 60}) {
		t.Errorf("background RoI %v, want proposal 2", boxes[8:12])
	}
	if gi := tensors.MustCopyFlatData[int32](out[3]); gi[0] != 0 || gi[1] != 0 {
		t.Errorf("foreground matched to %v, want gt 0", gi[:2])
	}
}
