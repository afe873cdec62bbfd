package transforms

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

func near(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > tol {
			t.Errorf("%s: value %d = %.6f, want %.6f", what, i, got[i], want[i])
		}
	}
}

// Two pixels, (0.5, 0.25, 0.0) and (1, 1, 1): gray levels 0.271 and 1.
func twoPixels() []float32 { return []float32{0.5, 0.25, 0, 1, 1, 1} }

func TestColorOperations(t *testing.T) {
	g0 := 0.299*0.5 + 0.587*0.25
	mean := (g0 + 1) / 2

	px := twoPixels()
	AdjustBrightness(px, 1.5)
	near(t, "brightness 1.5 (clamped at 1)", px, []float64{0.75, 0.375, 0, 1, 1, 1}, 1e-6)

	px = twoPixels()
	AdjustContrast(px, 0.5)
	near(t, "contrast 0.5", px, []float64{0.25 + mean/2, 0.125 + mean/2, mean / 2, 0.5 + mean/2, 0.5 + mean/2, 0.5 + mean/2}, 1e-6)

	px = twoPixels()
	AdjustSaturation(px, 0)
	near(t, "saturation 0 = gray", px, []float64{g0, g0, g0, 1, 1, 1}, 1e-6)
	px = twoPixels()
	AdjustSaturation(px, 2)
	near(t, "saturation 2 (clamped)", px, []float64{2*0.5 - g0, 2*0.25 - g0, 0, 1, 1, 1}, 1e-6)

	// Hue: pure red turned by a third is pure green, by two thirds pure blue; gray has no hue.
	px = []float32{1, 0, 0, 0.5, 0.5, 0.5}
	AdjustHue(px, 1.0/3)
	near(t, "hue +1/3", px, []float64{0, 1, 0, 0.5, 0.5, 0.5}, 1e-6)
	AdjustHue(px, 1.0/3)
	near(t, "hue +2/3", px, []float64{0, 0, 1, 0.5, 0.5, 0.5}, 1e-6)
	AdjustHue(px, -0.5)
	AdjustHue(px, -1.0/6)
	near(t, "hue back to red", px, []float64{1, 0, 0, 0.5, 0.5, 0.5}, 1e-6)
	// A round trip through HSV keeps any colour.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		r, g, b := rng.Float64(), rng.Float64(), rng.Float64()
		h, s, v := rgbToHSV(r, g, b)
		r2, g2, b2 := hsvToRGB(h, s, v)
		if math.Abs(r-r2)+math.Abs(g-g2)+math.Abs(b-b2) > 1e-12 {
			t.Fatalf("HSV round trip of (%g, %g, %g) gives (%g, %g, %g)", r, g, b, r2, g2, b2)
		}
	}

	m := datasets.Image{W: 2, H: 1, Pix: []uint8{255, 0, 0, 10, 20, 30}}
	Grayscale(m)
	// 0.299*255 = 76.2; 0.299*10 + 0.587*20 + 0.114*30 = 18.15.
	if want := []uint8{76, 76, 76, 18, 18, 18}; !slices.Equal(m.Pix, want) {
		t.Errorf("grayscale %v, want %v", m.Pix, want)
	}
}

func TestColorJitterParams(t *testing.T) {
	cj := ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1}
	rng := rand.New(rand.NewPCG(1, 1))
	seen := map[[4]int]bool{}
	for range 2000 {
		order, b, c, s, h := cj.Params(rng)
		sorted := order
		slices.Sort(sorted[:])
		if sorted != [4]int{0, 1, 2, 3} {
			t.Fatalf("order %v is not a permutation of the four operations", order)
		}
		seen[order] = true
		for _, f := range []float64{b, c, s} {
			if f < 0.6 || f > 1.4 {
				t.Fatalf("factor %g outside [0.6, 1.4]", f)
			}
		}
		if h < -0.1 || h > 0.1 {
			t.Fatalf("hue shift %g outside [-0.1, 0.1]", h)
		}
	}
	if len(seen) != 24 {
		t.Errorf("%d of the 24 orders drawn in 2000 tries", len(seen))
	}
	// Strength 0 leaves a property alone; brightness 1 cannot go negative.
	if _, b, c, s, h := (ColorJitter{Brightness: 1}).Params(rng); b < 0 || b > 2 || c != 1 || s != 1 || h != 0 {
		t.Errorf("ColorJitter{Brightness: 1}: factors %g %g %g %g", b, c, s, h)
	}
	// An invalid hue is an error naming the sample.
	s := datasets.Sample{Path: "x.png", Image: datasets.NewImage(2, 2)}
	if err := (ColorJitter{Hue: 0.6}).Apply(&s, rng); err == nil {
		t.Error("hue 0.6 accepted")
	}
}

func TestGaussianBlur(t *testing.T) {
	for _, sigma := range []float64{0.1, 0.5, 1, 2} {
		k := GaussianKernel(sigma)
		var sum float32
		for i := range k {
			sum += k[i]
			if k[i] != k[len(k)-1-i] {
				t.Errorf("sigma %g: kernel not symmetric", sigma)
			}
		}
		if math.Abs(float64(sum)-1) > 1e-6 || len(k) != 2*max(1, int(math.Ceil(3*sigma)))+1 {
			t.Errorf("sigma %g: %d taps summing to %g", sigma, len(k), sum)
		}
	}
	// An impulse away from the borders becomes the outer product of the kernel with itself.
	const w, h = 15, 13
	px := make([]float32, w*h*3)
	px[(6*w+7)*3+1] = 1
	BlurGaussian(px, w, h, 1)
	k := GaussianKernel(1)
	for y := range h {
		for x := range w {
			want := 0.0
			if dy, dx := y-6+3, x-7+3; dy >= 0 && dy < len(k) && dx >= 0 && dx < len(k) {
				want = float64(k[dy] * k[dx])
			}
			o := (y*w + x) * 3
			if math.Abs(float64(px[o+1])-want) > 1e-7 || px[o] != 0 || px[o+2] != 0 {
				t.Fatalf("blurred impulse at (%d,%d) = %v, want green %g", x, y, px[o:o+3], want)
			}
		}
	}
	// A constant image stays constant, borders included (edges repeat).
	s := datasets.Sample{Path: "c", Image: datasets.NewImage(9, 7)}
	for i := range s.Image.Pix {
		s.Image.Pix[i] = 123
	}
	if err := (GaussianBlur{Sigma: [2]float64{0.1, 2}}).Apply(&s, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
	for _, v := range s.Image.Pix {
		if v != 123 {
			t.Fatalf("a constant image blurred to %d", v)
		}
	}
}

func TestRandomApply(t *testing.T) {
	count := func(p float64) int {
		rng := rand.New(rand.NewPCG(5, 6))
		n := 0
		for range 1000 {
			s := datasets.Sample{Image: datasets.Image{W: 1, H: 1, Pix: []uint8{200, 100, 0}}}
			if err := (RandomApply{T: RandomGrayscale{P: 1}, P: p}).Apply(&s, rng); err != nil {
				t.Fatal(err)
			}
			if s.Image.Pix[0] == s.Image.Pix[1] {
				n++
			}
		}
		return n
	}
	if n0, n1, n8 := count(0), count(1), count(0.8); n0 != 0 || n1 != 1000 || n8 < 760 || n8 > 840 {
		t.Errorf("RandomApply applied 0: %d, 1: %d, 0.8: %d times of 1000", n0, n1, n8)
	}
}

// TestViews: two views are stacked vertically (view v in rows [v·H, (v+1)·H)), drawn in turn
// from one generator, deterministic given it; labels are dropped.
func TestViews(t *testing.T) {
	base := rectSample(40, 30, [][4]int{{2, 2, 20, 20}}, 9)
	aug := SSLView(16, 12, MoCoV2View)
	s := clone(base)
	if err := (Views{aug, aug}).Apply(&s, rand.New(rand.NewPCG(7, 8))); err != nil {
		t.Fatal(err)
	}
	if s.Image.W != 16 || s.Image.H != 24 || s.Semantic != nil || s.Instances != nil {
		t.Fatalf("views: %dx%d image, semantic %v, %d instances; want 16x24 and no labels", s.Image.W, s.Image.H, s.Semantic != nil, len(s.Instances))
	}
	// The same draws by hand: view 0 then view 1 from one generator.
	rng := rand.New(rand.NewPCG(7, 8))
	for v := range 2 {
		view := clone(base)
		if err := aug.Apply(&view, rng); err != nil {
			t.Fatal(err)
		}
		half := s.Image.Pix[v*16*12*3 : (v+1)*16*12*3]
		if !slices.Equal(half, view.Image.Pix) {
			t.Errorf("view %d differs from the transform applied in turn", v)
		}
	}
	if slices.Equal(s.Image.Pix[:16*12*3], s.Image.Pix[16*12*3:]) {
		t.Error("the two views are identical")
	}
	again := clone(base)
	(Views{aug, aug}).Apply(&again, rand.New(rand.NewPCG(7, 8)))
	if !slices.Equal(again.Image.Pix, s.Image.Pix) {
		t.Error("views are not deterministic given the generator")
	}
	// Views of different sizes are an error naming the sample.
	grow := Func(func(s *datasets.Sample, rng *rand.Rand) error {
		return Resize(s, 4+rng.IntN(100), 4)
	})
	bad := clone(base)
	if err := (Views{grow, grow}).Apply(&bad, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Error("views of two sizes accepted")
	}
}

func TestSolarize(t *testing.T) {
	s := datasets.Sample{Image: datasets.Image{W: 2, H: 1, Pix: []uint8{0, 127, 128, 200, 255, 30}}}
	if err := (RandomSolarize{P: 1}).Apply(&s, rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	if want := []uint8{0, 127, 127, 55, 0, 30}; !slices.Equal(s.Image.Pix, want) {
		t.Errorf("solarized %v, want %v", s.Image.Pix, want)
	}
}

// TestBYOLViewsDiffer: BYOL's first view is never solarised, its second about a fifth of the
// time. On a white image every other step keeps values >= 153 (brightness >= 0.6), so a view
// whose pixels all fall below 128 was solarised.
func TestBYOLViewsDiffer(t *testing.T) {
	base := datasets.Sample{Path: "white", Image: datasets.NewImage(40, 30)}
	for i := range base.Image.Pix {
		base.Image.Pix[i] = 255
	}
	views := Views{SSLView(16, 12, BYOLViews[0]), SSLView(16, 12, BYOLViews[1])}
	rng := rand.New(rand.NewPCG(2, 3))
	solarized := [2]int{}
	for range 400 {
		s := clone(base)
		if err := views.Apply(&s, rng); err != nil {
			t.Fatal(err)
		}
		for v := range 2 {
			px := s.Image.Pix[v*16*12*3 : (v+1)*16*12*3]
			if slices.Max(px) < 128 {
				solarized[v]++
			} else if slices.Min(px) < 153 {
				t.Fatalf("view %d of a white image has a value %d", v, slices.Min(px))
			}
		}
	}
	if solarized[0] != 0 || solarized[1] < 55 || solarized[1] > 105 {
		t.Errorf("solarised views: %v of 400; want none of view 0 and about 80 of view 1", solarized)
	}
}
