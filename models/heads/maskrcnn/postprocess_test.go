package maskrcnn

import (
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/eval/coco"
	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
)

func rows(mask []uint8, w int) [][]uint8 {
	var out [][]uint8
	for i := 0; i < len(mask); i += w {
		out = append(out, mask[i:i+w])
	}
	return out
}

func TestPasteMask(t *testing.T) {
	// An all-ones 2x2 mask over box (1, 1, 5, 5) of an 8x8 image: pixel centres 1.5..4.5 sample
	// the mask at -0.25..1.25 (value 0.75 at the borders: bilinear with zero padding), so
	// exactly the pixels 1..4 pass 0.5; pixel 5 samples 1.75 (0.25).
	got := PasteMask([]float32{1, 1, 1, 1}, 2, [4]float32{1, 1, 5, 5}, 8, 8, 0.5)
	for y := range 8 {
		for x := range 8 {
			want := uint8(0)
			if y >= 1 && y <= 4 && x >= 1 && x <= 4 {
				want = 1
			}
			if got[y*8+x] != want {
				t.Fatalf("all-ones mask:\n%v", rows(got, 8))
			}
		}
	}
	// Left column on: image columns 0 and 1 sample 0.75 and 0.75, columns 2 and 3 sample 0.25, 0.
	got = PasteMask([]float32{1, 0, 1, 0}, 2, [4]float32{0, 0, 4, 4}, 4, 4, 0.5)
	for y := range 4 {
		if !slices.Equal(got[y*4:y*4+4], []uint8{1, 1, 0, 0}) {
			t.Fatalf("left-half mask:\n%v", rows(got, 4))
		}
	}
	// A box partly outside the image is clipped by the caller; pasting never writes outside.
	got = PasteMask([]float32{1, 1, 1, 1}, 2, [4]float32{-3, -3, 2, 2}, 4, 4, 0.5)
	if got[0] != 1 || got[3] != 0 {
		t.Errorf("box over the border:\n%v", rows(got, 4))
	}
}

func TestCOCOResults(t *testing.T) {
	dets := []ImageDetections{{
		Boxes:    [][4]float32{{8, 4, 24, 20}, {30, 30, 30, 40}}, // the second is empty
		Scores:   []float32{0.9, 0.8},
		Classes:  []int{1, 0},
		Masks:    [][]float32{{1, 1, 1, 1}, {1, 1, 1, 1}},
		MaskSize: 2,
	}}
	// The model saw the image at half size.
	info := []ImageInfo{{ID: 42, Height: 64, Width: 80, InputHeight: 32, InputWidth: 40}}
	res, err := COCOResults(dets, info, []int64{3, 7}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("got %d results, want 1 (empty box dropped)", len(res))
	}
	r := res[0]
	if r.ImageID != 42 || r.CategoryID != 7 || math.Abs(r.Score-0.9) > 1e-6 || !slices.Equal(r.BBox, []float64{16, 8, 32, 32}) {
		t.Errorf("result %+v", r)
	}
	m, err := r.Segmentation.ToRLE(64, 80)
	if err != nil {
		t.Fatal(err)
	}
	// The all-ones 2x2 mask sampled at u (mask pixels) is 1 on [0, 1] and falls linearly to 0
	// one pixel outside; the pasted box is (16, 8, 48, 40), 16 image pixels per mask pixel.
	profile := func(p, lo float64) float64 {
		u := (p+0.5-lo)/32*2 - 0.5
		return max(0, 1-max(0, -u, u-1))
	}
	want := uint32(0)
	for y := range 64 {
		for x := range 80 {
			if profile(float64(x), 16)*profile(float64(y), 8) >= 0.5 {
				want++
			}
		}
	}
	if m.Area() != want || m.ToBbox() != [4]float64{16, 8, 32, 32} {
		t.Errorf("mask area %d bbox %v, want %d [16 8 32 32]", m.Area(), m.ToBbox(), want)
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	back, err := coco.ParseResults(data, "test")
	if err != nil || len(back) != 1 || !back[0].Segmentation.IsRLE() {
		t.Fatalf("results do not round-trip through COCO json: %v %s", err, data)
	}
	var _ rle.RLE = m
}
