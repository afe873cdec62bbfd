package transforms

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

// rectSample is a w x h sample with a random image, a semantic mask and one instance per
// rectangle (mask exactly the rectangle, box its bounds).
func rectSample(w, h int, rects [][4]int, seed uint64) datasets.Sample {
	rng := rand.New(rand.NewPCG(seed, 0))
	s := datasets.Sample{Path: "fixture", Image: datasets.NewImage(w, h), Semantic: make([]uint8, w*h), Label: -1}
	for i := range s.Image.Pix {
		s.Image.Pix[i] = uint8(rng.IntN(256))
	}
	for k, r := range rects {
		m := make([]uint8, w*h)
		for y := r[1]; y < r[3]; y++ {
			for x := r[0]; x < r[2]; x++ {
				m[y*w+x] = 1
				s.Semantic[y*w+x] = uint8(k + 1)
				for j := range s.Instances { // later rectangles occlude earlier ones
					s.Instances[j].Mask[y*w+x] = 0
				}
			}
		}
		s.Instances = append(s.Instances, datasets.Instance{ID: k, Class: k, Mask: m,
			Box: [4]float32{float32(r[0]), float32(r[1]), float32(r[2]), float32(r[3])}})
	}
	for k := range s.Instances {
		for _, v := range s.Instances[k].Mask {
			s.Instances[k].Area += float64(v)
		}
	}
	return s
}

func clone(s datasets.Sample) datasets.Sample {
	c := s
	c.Image.Pix = slices.Clone(s.Image.Pix)
	c.Semantic = slices.Clone(s.Semantic)
	c.Instances = slices.Clone(s.Instances)
	for i := range c.Instances {
		c.Instances[i].Mask = slices.Clone(s.Instances[i].Mask)
	}
	return c
}

func equalSamples(a, b datasets.Sample) bool {
	if a.Image.W != b.Image.W || a.Image.H != b.Image.H || !slices.Equal(a.Image.Pix, b.Image.Pix) ||
		!slices.Equal(a.Semantic, b.Semantic) || len(a.Instances) != len(b.Instances) || a.Dropped != b.Dropped {
		return false
	}
	for i := range a.Instances {
		if a.Instances[i].Box != b.Instances[i].Box || !slices.Equal(a.Instances[i].Mask, b.Instances[i].Mask) {
			return false
		}
	}
	return true
}

// checkConsistent verifies that each instance's box encloses its mask within tol pixels, its
// area is its mask's, and the semantic mask agrees with the instance masks.
func checkConsistent(t *testing.T, name string, s datasets.Sample, tol float32) {
	t.Helper()
	w, h := s.Image.W, s.Image.H
	if len(s.Semantic) != w*h {
		t.Fatalf("%s: semantic has %d values for %dx%d", name, len(s.Semantic), w, h)
	}
	for _, inst := range s.Instances {
		if len(inst.Mask) != w*h {
			t.Fatalf("%s: mask has %d values for %dx%d", name, len(inst.Mask), w, h)
		}
		mb := maskBox(inst.Mask, w, h)
		for i := range mb {
			if d := float32(math.Abs(float64(mb[i] - inst.Box[i]))); d > tol {
				t.Fatalf("%s: instance %d box %v, mask box %v", name, inst.ID, inst.Box, mb)
			}
		}
		area := 0
		for p, v := range inst.Mask {
			area += int(v)
			if v == 1 && int(s.Semantic[p]) != inst.Class+1 {
				t.Fatalf("%s: instance %d mask pixel %d has label %d", name, inst.ID, p, s.Semantic[p])
			}
		}
		if float64(area) != inst.Area {
			t.Fatalf("%s: instance %d area %v, mask has %d", name, inst.ID, inst.Area, area)
		}
	}
}

func TestFlip(t *testing.T) {
	s := rectSample(40, 30, [][4]int{{2, 3, 10, 20}, {25, 5, 40, 12}}, 1)
	orig := clone(s)
	FlipH(&s)
	checkConsistent(t, "flip", s, 0)
	if got := s.Instances[0].Box; got != [4]float32{30, 3, 38, 20} {
		t.Errorf("flipped box %v, want [30 3 38 20]", got)
	}
	r, g, b := orig.Image.At(0, 7)
	r2, g2, b2 := s.Image.At(39, 7)
	if r != r2 || g != g2 || b != b2 {
		t.Error("pixel (0,7) did not move to (39,7)")
	}
	FlipH(&s)
	if !equalSamples(s, orig) {
		t.Error("two flips are not the identity")
	}
}

func TestGeometryKeepsBoxesAndMasksConsistent(t *testing.T) {
	tests := []struct {
		name string
		tr   Transform
		w, h int // expected output size, 0 = any
	}{
		{"random resized crop", RandomResizedCrop{W: 48, H: 48}, 48, 48},
		{"imagenet train", ImageNetTrain(32), 32, 32},
		{"imagenet eval", ImageNetEval(56), 56, 56},
		{"ade20k train", ADE20KTrain(64), 64, 64},
		{"resize", ResizeTo{W: 50, H: 20}, 50, 20},
		{"resize shorter", ResizeShorter{Size: 40}, 53, 40},
		{"centre crop larger than the image", CenterCrop{W: 100, H: 100}, 100, 100},
		{"random crop", RandomCrop{W: 30, H: 30, CatMaxRatio: 0.75}, 30, 30},
		{"seg eval", SegEval(32), 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(0); seed < 20; seed++ {
				s := rectSample(80, 60, [][4]int{{5, 5, 30, 40}, {20, 30, 70, 58}, {60, 2, 78, 20}}, seed)
				n := len(s.Instances)
				if err := tc.tr.Apply(&s, rand.New(rand.NewPCG(seed, 1))); err != nil {
					t.Fatal(err)
				}
				if tc.w > 0 && (s.Image.W != tc.w || s.Image.H != tc.h) {
					t.Fatalf("seed %d: output %dx%d, want %dx%d", seed, s.Image.W, s.Image.H, tc.w, tc.h)
				}
				// Resampled rectangles stay rectangles: boxes are within a pixel of the masks
				// (the scaled boxes are fractional; the masks are whole pixels).
				checkConsistent(t, tc.name, s, 1)
				if len(s.Instances)+s.Dropped != n {
					t.Fatalf("seed %d: %d kept + %d dropped != %d", seed, len(s.Instances), s.Dropped, n)
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	tr := Compose(ADE20KTrain(48), RandomResizedCrop{W: 32, H: 32}, HFlip{P: 0.5})
	base := rectSample(90, 70, [][4]int{{5, 5, 30, 40}, {20, 30, 70, 58}}, 3)
	run := func(seed uint64) datasets.Sample {
		s := clone(base)
		if err := tr.Apply(&s, rand.New(rand.NewPCG(seed, 9))); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if !equalSamples(run(1), run(1)) {
		t.Error("same generator, different results")
	}
	differ := 0
	for seed := uint64(2); seed < 6; seed++ {
		if !equalSamples(run(1), run(seed)) {
			differ++
		}
	}
	if differ == 0 {
		t.Error("different generators always give the same result")
	}
}

func TestCropDropsInstancesOutside(t *testing.T) {
	s := rectSample(60, 40, [][4]int{{0, 0, 10, 10}, {40, 20, 60, 40}}, 1)
	if err := Crop(&s, 30, 15, 30, 25); err != nil {
		t.Fatal(err)
	}
	if len(s.Instances) != 1 || s.Dropped != 1 {
		t.Fatalf("%d instances kept, %d dropped; want 1, 1", len(s.Instances), s.Dropped)
	}
	if got := s.Instances[0].Box; got != [4]float32{10, 5, 30, 25} {
		t.Errorf("box %v, want [10 5 30 25]", got)
	}
	if err := Crop(&s, 0, 0, 31, 5); err == nil {
		t.Error("a crop outside the image was accepted")
	}
}

func TestRandomResizedCropParams(t *testing.T) {
	rrc := RandomResizedCrop{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		x0, y0, w, h := rrc.Params(200, 100, rng)
		if x0 < 0 || y0 < 0 || x0+w > 200 || y0+h > 100 || w <= 0 || h <= 0 {
			t.Fatalf("crop (%d,%d) %dx%d outside 200x100", x0, y0, w, h)
		}
		frac := float64(w*h) / 20000
		if frac < 0.07 || frac > 1.0 {
			t.Fatalf("area fraction %v outside (0.08, 1)", frac)
		}
	}
	// A very wide image makes every attempt fail: the fallback centre crop clamps the ratio.
	x0, y0, w, h := rrc.Params(1000, 10, rng)
	if w != 13 || h != 10 || x0 != (1000-13)/2 || y0 != 0 {
		t.Errorf("fallback crop (%d,%d) %dx%d, want (%d,0) 13x10", x0, y0, w, h, (1000-13)/2)
	}
}

func TestResampleFilters(t *testing.T) {
	// A horizontal ramp is preserved by bilinear downscaling away from the borders.
	src := datasets.NewImage(32, 4)
	for y := 0; y < 4; y++ {
		for x := 0; x < 32; x++ {
			for c := 0; c < 3; c++ {
				src.Pix[(y*32+x)*3+c] = uint8(6 * x)
			}
		}
	}
	out := resampleImage(src, 0, 0, 32, 4, 16, 4)
	for xx := 1; xx < 15; xx++ {
		want := 6 * (2*float64(xx) + 0.5) // value at the output pixel's centre
		got, _, _ := out.At(xx, 2)
		if math.Abs(float64(got)-want) > 1 {
			t.Errorf("downscaled ramp at %d = %d, want %.1f", xx, got, want)
		}
	}
	// A constant image stays constant at any scale.
	for i := range src.Pix {
		src.Pix[i] = 77
	}
	for _, size := range [][2]int{{7, 3}, {64, 9}, {32, 4}, {5, 20}} {
		out := resampleImage(src, 0, 0, 32, 4, size[0], size[1])
		for _, v := range out.Pix {
			if v != 77 {
				t.Fatalf("constant image resized to %v has value %d", size, v)
			}
		}
	}
}

func TestPadAndCatMaxRatio(t *testing.T) {
	s := rectSample(20, 10, [][4]int{{0, 0, 5, 5}}, 1)
	PadTo(&s, 30, 16)
	if s.Image.W != 30 || s.Image.H != 16 {
		t.Fatalf("padded to %dx%d", s.Image.W, s.Image.H)
	}
	if s.Semantic[15*30+29] != datasets.IgnoreLabel || s.Image.Pix[len(s.Image.Pix)-1] != 0 || s.Instances[0].Mask[15*30+29] != 0 {
		t.Error("padding values are not image 0, label 255, mask 0")
	}
	checkConsistent(t, "pad", s, 0)

	// One class covers most of the image; a small second class sits in a corner. The crop
	// check must find crops holding both classes when some exist.
	big := rectSample(100, 100, [][4]int{{0, 0, 100, 100}, {80, 80, 100, 100}}, 2)
	for seed := uint64(0); seed < 10; seed++ {
		s := clone(big)
		if err := (RandomCrop{W: 40, H: 40, CatMaxRatio: 0.75}).Apply(&s, rand.New(rand.NewPCG(seed, 0))); err != nil {
			t.Fatal(err)
		}
		has := map[uint8]int{}
		for _, v := range s.Semantic {
			has[v]++
		}
		if len(has) < 2 {
			t.Logf("seed %d: crop with one class (allowed after 10 tries)", seed)
		}
	}
}

func TestToFloatAndNormalize(t *testing.T) {
	src := []uint8{0, 255, 128, 255, 0, 51}
	dst := make([]float32, len(src))
	ToFloat(dst, src, nil)
	if dst[1] != 1 || dst[0] != 0 {
		t.Errorf("ToFloat %v", dst)
	}
	n := ImageNetNorm
	want := slices.Clone(dst)
	n.Apply(want)
	ToFloat(dst, src, &n)
	for i := range dst {
		if math.Abs(float64(dst[i]-want[i])) > 1e-5 {
			t.Fatalf("normalized %v, want %v", dst, want)
		}
	}
}
