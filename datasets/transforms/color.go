package transforms

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

// Photometric augmentations of the self-supervised recipes (MoCo v2, BYOL, SimCLR), with
// torchvision's parameters and semantics: ColorJitter, RandomGrayscale, GaussianBlur (MoCo's
// PIL blur), each usually wrapped in RandomApply. They change the image only: masks and boxes
// are untouched.
//
// Arithmetic: torchvision on PIL images rounds to 8 bits after every operation; these work in
// float on [0, 1], clamp after every operation as torchvision does, and round to 8 bits once at
// the end of each transform (differences of at most a few levels, no bias).

// Luma weights of RGB -> grayscale (ITU-R 601-2, PIL's convert("L") and torchvision's
// rgb_to_grayscale).
const lumaR, lumaG, lumaB = 0.299, 0.587, 0.114

// RandomApply applies T with probability P (torchvision's RandomApply).
type RandomApply struct {
	T Transform
	P float64
}

// Apply implements Transform.
func (t RandomApply) Apply(s *datasets.Sample, rng *rand.Rand) error {
	if rng.Float64() < t.P {
		return t.T.Apply(s, rng)
	}
	return nil
}

// ColorJitter changes brightness, contrast, saturation and hue by random factors, in a random
// order (torchvision's ColorJitter): brightness, contrast and saturation factors are uniform in
// [max(0, 1-v), 1+v], the hue shift uniform in [-Hue, Hue] (fractions of the colour circle,
// Hue <= 0.5). A zero strength leaves that property alone.
//
//	brightness f: x·f
//	contrast f:   f·x + (1-f)·mean gray of the image
//	saturation f: f·x + (1-f)·gray of the pixel
//	hue h:        the HSV hue rotated by h
type ColorJitter struct {
	Brightness, Contrast, Saturation, Hue float64
}

// Params draws the order of the four operations (0 brightness, 1 contrast, 2 saturation, 3 hue)
// and their factors (1 and hue 0 for those left alone), as torchvision's get_params does.
func (t ColorJitter) Params(rng *rand.Rand) (order [4]int, b, c, s, h float64) {
	perm := rng.Perm(4)
	copy(order[:], perm)
	factor := func(v float64) float64 {
		if v <= 0 {
			return 1
		}
		lo := max(0, 1-v)
		return lo + rng.Float64()*(1+v-lo)
	}
	b, c, s = factor(t.Brightness), factor(t.Contrast), factor(t.Saturation)
	if t.Hue > 0 {
		h = -t.Hue + rng.Float64()*2*t.Hue
	}
	return order, b, c, s, h
}

// Apply implements Transform.
func (t ColorJitter) Apply(s *datasets.Sample, rng *rand.Rand) error {
	if t.Hue < 0 || t.Hue > 0.5 || t.Brightness < 0 || t.Contrast < 0 || t.Saturation < 0 {
		return fmt.Errorf("%s: ColorJitter(%g, %g, %g, %g): strengths must be >= 0 and hue <= 0.5",
			s.Path, t.Brightness, t.Contrast, t.Saturation, t.Hue)
	}
	order, b, c, sat, h := t.Params(rng)
	px := toUnit(s.Image.Pix)
	for _, op := range order {
		switch op {
		case 0:
			if b != 1 {
				AdjustBrightness(px, b)
			}
		case 1:
			if c != 1 {
				AdjustContrast(px, c)
			}
		case 2:
			if sat != 1 {
				AdjustSaturation(px, sat)
			}
		case 3:
			if h != 0 {
				AdjustHue(px, h)
			}
		}
	}
	fromUnit(s.Image.Pix, px)
	return nil
}

// RandomGrayscale replaces the image by its gray level in all three channels with probability
// P (torchvision's RandomGrayscale).
type RandomGrayscale struct{ P float64 }

// Apply implements Transform.
func (t RandomGrayscale) Apply(s *datasets.Sample, rng *rand.Rand) error {
	if rng.Float64() < t.P {
		Grayscale(s.Image)
	}
	return nil
}

// GaussianBlur blurs with a Gaussian of standard deviation uniform in Sigma (pixels), MoCo
// v2's augmentation (its loader's GaussianBlur: PIL's ImageFilter.GaussianBlur(radius=sigma),
// radius being PIL's name for the standard deviation). The kernel is the sampled Gaussian,
// normalised, truncated at ceil(3 sigma) pixels; borders repeat the edge pixels (as PIL does).
// PIL approximates the Gaussian by three box blurs; this is the exact one.
type GaussianBlur struct{ Sigma [2]float64 }

// Apply implements Transform.
func (t GaussianBlur) Apply(s *datasets.Sample, rng *rand.Rand) error {
	if !(t.Sigma[0] > 0) || t.Sigma[1] < t.Sigma[0] {
		return fmt.Errorf("%s: GaussianBlur sigma %v: want 0 < lo <= hi", s.Path, t.Sigma)
	}
	sigma := t.Sigma[0] + rng.Float64()*(t.Sigma[1]-t.Sigma[0])
	px := toUnit(s.Image.Pix)
	BlurGaussian(px, s.Image.W, s.Image.H, sigma)
	fromUnit(s.Image.Pix, px)
	return nil
}

// Views makes one augmented view of each sample per transform, for the two-view (Siamese)
// self-supervised recipes: transform v is applied to a copy of the sample, in turn, each
// drawing from the same generator (so the views differ, and are deterministic given it), and
// the views are stacked vertically into one image len(Views) times as high. A loader batch
// [B, V·H, W, 3] then reshapes, without copying, to [B, V, H, W, 3]: view v of sample b is
// [b, v]. The views must come out with one size. Masks and instances are dropped: views are for
// training without labels. MoCo applies one augmentation twice ({aug, aug}); BYOL two.
type Views []Transform

// Apply implements Transform.
func (t Views) Apply(s *datasets.Sample, rng *rand.Rand) error {
	if len(t) == 0 {
		return fmt.Errorf("%s: Views: no transform", s.Path)
	}
	orig := s.Image
	var out datasets.Image
	for v, tf := range t {
		view := datasets.Sample{Path: s.Path, Label: s.Label,
			Image: datasets.Image{W: orig.W, H: orig.H, Pix: append([]uint8(nil), orig.Pix...)}}
		if err := tf.Apply(&view, rng); err != nil {
			return err
		}
		if v == 0 {
			out = datasets.NewImage(view.Image.W, len(t)*view.Image.H)
		} else if view.Image.W != out.W || view.Image.H*len(t) != out.H {
			return fmt.Errorf("%s: Views: view %d is %dx%d, view 0 %dx%d: the transforms must give one size",
				s.Path, v, view.Image.W, view.Image.H, out.W, out.H/len(t))
		}
		copy(out.Pix[v*len(view.Image.Pix):], view.Image.Pix)
	}
	s.Image, s.Semantic, s.Instances = out, nil, nil
	return nil
}

// RandomSolarize inverts the pixel values at or above 128 (v -> 255-v) with probability P
// (PIL's ImageOps.solarize(threshold=128); BYOL's solarisation).
type RandomSolarize struct{ P float64 }

// Apply implements Transform.
func (t RandomSolarize) Apply(s *datasets.Sample, rng *rand.Rand) error {
	if rng.Float64() < t.P {
		for i, v := range s.Image.Pix {
			if v >= 128 {
				s.Image.Pix[i] = 255 - v
			}
		}
	}
	return nil
}

// toUnit converts 8-bit values to float32 in [0, 1].
func toUnit(pix []uint8) []float32 {
	out := make([]float32, len(pix))
	ToFloat(out, pix, nil)
	return out
}

// fromUnit writes float32 values in [0, 1] back as 8-bit values, rounded to the nearest.
func fromUnit(dst []uint8, px []float32) {
	for i, v := range px {
		dst[i] = uint8(min(max(v*255+0.5, 0), 255))
	}
}

func clamp01(v float32) float32 { return min(max(v, 0), 1) }

func luma(r, g, b float32) float32 { return lumaR*r + lumaG*g + lumaB*b }

// AdjustBrightness multiplies interleaved RGB values in [0, 1] by f (clamped).
func AdjustBrightness(px []float32, f float64) {
	for i, v := range px {
		px[i] = clamp01(v * float32(f))
	}
}

// AdjustContrast blends interleaved RGB values in [0, 1] with the image's mean gray level:
// f·x + (1-f)·mean (clamped).
func AdjustContrast(px []float32, f float64) {
	var sum float64
	for i := 0; i+2 < len(px); i += 3 {
		sum += float64(luma(px[i], px[i+1], px[i+2]))
	}
	mean := float32(sum / float64(len(px)/3))
	ff := float32(f)
	for i, v := range px {
		px[i] = clamp01(ff*v + (1-ff)*mean)
	}
}

// AdjustSaturation blends each pixel of interleaved RGB values in [0, 1] with its gray level:
// f·x + (1-f)·gray (clamped).
func AdjustSaturation(px []float32, f float64) {
	ff := float32(f)
	for i := 0; i+2 < len(px); i += 3 {
		g := luma(px[i], px[i+1], px[i+2])
		for c := range 3 {
			px[i+c] = clamp01(ff*px[i+c] + (1-ff)*g)
		}
	}
}

// AdjustHue rotates the hue of interleaved RGB values in [0, 1] by h (a fraction of the colour
// circle, in [-0.5, 0.5]), keeping saturation and value (HSV).
func AdjustHue(px []float32, h float64) {
	for i := 0; i+2 < len(px); i += 3 {
		hue, s, v := rgbToHSV(float64(px[i]), float64(px[i+1]), float64(px[i+2]))
		hue = math.Mod(hue+h+1, 1)
		r, g, b := hsvToRGB(hue, s, v)
		px[i], px[i+1], px[i+2] = float32(r), float32(g), float32(b)
	}
}

// rgbToHSV converts RGB in [0, 1] to hue in [0, 1), saturation and value in [0, 1] (Python's
// colorsys).
func rgbToHSV(r, g, b float64) (h, s, v float64) {
	maxc, minc := max(r, g, b), min(r, g, b)
	v = maxc
	if maxc == minc {
		return 0, 0, v
	}
	d := maxc - minc
	s = d / maxc
	rc, gc, bc := (maxc-r)/d, (maxc-g)/d, (maxc-b)/d
	switch {
	case r == maxc:
		h = bc - gc
	case g == maxc:
		h = 2 + rc - bc
	default:
		h = 4 + gc - rc
	}
	h = math.Mod(h/6+1, 1)
	return h, s, v
}

// hsvToRGB is the inverse of rgbToHSV.
func hsvToRGB(h, s, v float64) (r, g, b float64) {
	if s == 0 {
		return v, v, v
	}
	i := math.Floor(h * 6)
	f := h*6 - i
	p, q, t := v*(1-s), v*(1-s*f), v*(1-s*(1-f))
	switch int(i) % 6 {
	case 0:
		return v, t, p
	case 1:
		return q, v, p
	case 2:
		return p, v, t
	case 3:
		return p, q, v
	case 4:
		return t, p, v
	}
	return v, p, q
}

// Grayscale replaces each pixel of m by its gray level in all three channels (rounded).
func Grayscale(m datasets.Image) {
	for i := 0; i+2 < len(m.Pix); i += 3 {
		g := uint8(min(luma(float32(m.Pix[i]), float32(m.Pix[i+1]), float32(m.Pix[i+2]))+0.5, 255))
		m.Pix[i], m.Pix[i+1], m.Pix[i+2] = g, g, g
	}
}

// GaussianKernel is the sampled Gaussian of standard deviation sigma over [-r, r], r =
// ceil(3 sigma) (at least 1), normalised to sum 1.
func GaussianKernel(sigma float64) []float32 {
	r := max(1, int(math.Ceil(3*sigma)))
	k := make([]float64, 2*r+1)
	var sum float64
	for i := range k {
		d := float64(i - r)
		k[i] = math.Exp(-d * d / (2 * sigma * sigma))
		sum += k[i]
	}
	out := make([]float32, len(k))
	for i := range k {
		out[i] = float32(k[i] / sum)
	}
	return out
}

// BlurGaussian blurs interleaved RGB values of a w x h image in place with GaussianKernel(sigma),
// rows then columns, repeating the edge pixels beyond the borders.
func BlurGaussian(px []float32, w, h int, sigma float64) {
	k := GaussianKernel(sigma)
	r := len(k) / 2
	tmp := make([]float32, len(px))
	// Rows.
	for y := range h {
		row := px[y*w*3 : (y+1)*w*3]
		out := tmp[y*w*3 : (y+1)*w*3]
		for x := range w {
			var acc [3]float32
			for j, kv := range k {
				xx := min(max(x+j-r, 0), w-1)
				acc[0] += kv * row[3*xx]
				acc[1] += kv * row[3*xx+1]
				acc[2] += kv * row[3*xx+2]
			}
			out[3*x], out[3*x+1], out[3*x+2] = acc[0], acc[1], acc[2]
		}
	}
	// Columns.
	for y := range h {
		for x := range w {
			var acc [3]float32
			for j, kv := range k {
				yy := min(max(y+j-r, 0), h-1)
				o := (yy*w + x) * 3
				acc[0] += kv * tmp[o]
				acc[1] += kv * tmp[o+1]
				acc[2] += kv * tmp[o+2]
			}
			o := (y*w + x) * 3
			px[o], px[o+1], px[o+2] = acc[0], acc[1], acc[2]
		}
	}
}

// SSLView is one view of the Siamese self-supervised recipes at w x h with cfg's parameters:
// RandomResizedCrop, colour jitter, grayscale, Gaussian blur, solarisation, horizontal flip, in
// that order (MoCo v2's main_moco.py --aug-plus; BYOL's, whose two views differ in blur and
// solarisation). Each random step is skipped when its probability is 0.
func SSLView(w, h int, cfg SSLViewConfig) Transform {
	return Compose(
		RandomResizedCrop{W: w, H: h, Scale: cfg.Scale},
		RandomApply{T: ColorJitter{cfg.Jitter[0], cfg.Jitter[1], cfg.Jitter[2], cfg.Jitter[3]}, P: cfg.JitterP},
		RandomGrayscale{P: cfg.GrayP},
		RandomApply{T: GaussianBlur{Sigma: cfg.BlurSigma}, P: cfg.BlurP},
		RandomSolarize{P: cfg.SolarizeP},
		HFlip{P: cfg.FlipP},
	)
}

// SSLViewConfig holds the parameters of SSLView.
type SSLViewConfig struct {
	Scale     [2]float64 // RandomResizedCrop area fraction
	Jitter    [4]float64 // brightness, contrast, saturation, hue
	JitterP   float64
	GrayP     float64
	BlurSigma [2]float64 // pixels (of a 224x224 view in the papers)
	BlurP     float64
	SolarizeP float64
	FlipP     float64
}

// MoCoV2View is MoCo v2's augmentation at 224x224 (both views).
var MoCoV2View = SSLViewConfig{
	Scale: [2]float64{0.2, 1}, Jitter: [4]float64{0.4, 0.4, 0.4, 0.1}, JitterP: 0.8, GrayP: 0.2,
	BlurSigma: [2]float64{0.1, 2}, BlurP: 0.5, FlipP: 0.5,
}

// BYOLViews are BYOL's two augmentations at 224x224 (Grill et al. 2020, appendix B, table 6):
// blur always on the first view and with probability 0.1 on the second, solarisation on the
// second only.
var BYOLViews = [2]SSLViewConfig{
	{Scale: [2]float64{0.08, 1}, Jitter: [4]float64{0.4, 0.4, 0.2, 0.1}, JitterP: 0.8, GrayP: 0.2,
		BlurSigma: [2]float64{0.1, 2}, BlurP: 1, SolarizeP: 0, FlipP: 0.5},
	{Scale: [2]float64{0.08, 1}, Jitter: [4]float64{0.4, 0.4, 0.2, 0.1}, JitterP: 0.8, GrayP: 0.2,
		BlurSigma: [2]float64{0.1, 2}, BlurP: 0.1, SolarizeP: 0.2, FlipP: 0.5},
}
