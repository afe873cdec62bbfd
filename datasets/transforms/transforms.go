// Package transforms augments and resizes samples consistently: the image, the semantic mask
// (nearest), the instance masks (nearest) and boxes (mapped, clipped; instances left empty are
// removed and counted in Sample.Dropped). Every random choice comes from the *rand.Rand given
// to Apply, so a transform is deterministic given its generator; the loader derives one per
// sample from (seed, epoch, index).
//
// Transforms modify the sample in place (datasets return freshly decoded samples).
//
// Resampling: images use PIL's antialiased bilinear filter (what torchvision applies to PIL
// images, and to tensors with antialias=True); mmsegmentation resizes with OpenCV's bilinear,
// which does not antialias when shrinking, so ADE20KTrain differs from it by that filter only.
// Masks use nearest neighbour sampled at pixel centres (PIL NEAREST, "nearest-exact").
//
// Recipes: ImageNetTrain (torchvision RandomResizedCrop + flip), ImageNetEval (resize shorter
// side + centre crop), ADE20KTrain (mmsegmentation's: random rescale 0.5..2.0 of a base scale,
// random crop with cat_max_ratio, flip, pad), SSLView (MoCo v2's and BYOL's crop, colour jitter,
// grayscale, blur, solarisation and flip; Views stacks the views of a sample for the two-view
// recipes). Normalization is applied by the loader to the float batch, or in the graph.
package transforms

import (
	"math"
	"math/rand/v2"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

// Transform changes a sample in place.
type Transform interface {
	Apply(s *datasets.Sample, rng *rand.Rand) error
}

// Func adapts a function to Transform.
type Func func(s *datasets.Sample, rng *rand.Rand) error

// Apply implements Transform.
func (f Func) Apply(s *datasets.Sample, rng *rand.Rand) error { return f(s, rng) }

// Compose applies transforms in order, stopping at the first error.
func Compose(ts ...Transform) Transform {
	return Func(func(s *datasets.Sample, rng *rand.Rand) error {
		for _, t := range ts {
			if err := t.Apply(s, rng); err != nil {
				return err
			}
		}
		return nil
	})
}

// RandomResizedCrop crops a random region of random area and aspect ratio and resizes it to
// W x H, with torchvision's sampling: area fraction uniform in Scale, log aspect ratio uniform
// in log(Ratio), 10 attempts, then a centre crop clamped to Ratio.
type RandomResizedCrop struct {
	W, H  int
	Scale [2]float64 // default (0.08, 1)
	Ratio [2]float64 // default (3/4, 4/3)
}

// Params draws the crop (x0, y0, w, h) for a width x height image.
func (t RandomResizedCrop) Params(width, height int, rng *rand.Rand) (x0, y0, w, h int) {
	scale, ratio := t.Scale, t.Ratio
	if scale == [2]float64{} {
		scale = [2]float64{0.08, 1}
	}
	if ratio == [2]float64{} {
		ratio = [2]float64{3. / 4, 4. / 3}
	}
	area := float64(width * height)
	logR := [2]float64{math.Log(ratio[0]), math.Log(ratio[1])}
	for attempt := 0; attempt < 10; attempt++ {
		target := area * (scale[0] + rng.Float64()*(scale[1]-scale[0]))
		ar := math.Exp(logR[0] + rng.Float64()*(logR[1]-logR[0]))
		w := int(math.RoundToEven(math.Sqrt(target * ar)))
		h := int(math.RoundToEven(math.Sqrt(target / ar)))
		if 0 < w && w <= width && 0 < h && h <= height {
			y0 := rng.IntN(height - h + 1)
			x0 := rng.IntN(width - w + 1)
			return x0, y0, w, h
		}
	}
	inRatio := float64(width) / float64(height)
	switch {
	case inRatio < min(ratio[0], ratio[1]):
		w = width
		h = int(math.RoundToEven(float64(w) / min(ratio[0], ratio[1])))
	case inRatio > max(ratio[0], ratio[1]):
		h = height
		w = int(math.RoundToEven(float64(h) * max(ratio[0], ratio[1])))
	default:
		w, h = width, height
	}
	return (width - w) / 2, (height - h) / 2, w, h
}

// Apply implements Transform.
func (t RandomResizedCrop) Apply(s *datasets.Sample, rng *rand.Rand) error {
	x0, y0, w, h := t.Params(s.Image.W, s.Image.H, rng)
	return CropResize(s, x0, y0, w, h, t.W, t.H)
}

// HFlip mirrors the sample left-right with probability P.
type HFlip struct{ P float64 }

// Apply implements Transform.
func (t HFlip) Apply(s *datasets.Sample, rng *rand.Rand) error {
	if rng.Float64() < t.P {
		FlipH(s)
	}
	return nil
}

// ResizeTo resizes to exactly W x H, ignoring the aspect ratio.
type ResizeTo struct{ W, H int }

// Apply implements Transform.
func (t ResizeTo) Apply(s *datasets.Sample, _ *rand.Rand) error { return Resize(s, t.W, t.H) }

// ResizeShorter resizes so that the shorter side is Size, keeping the aspect ratio
// (torchvision Resize(int): the longer side becomes int(Size * long / short)).
type ResizeShorter struct{ Size int }

// Apply implements Transform.
func (t ResizeShorter) Apply(s *datasets.Sample, _ *rand.Rand) error {
	w, h := s.Image.W, s.Image.H
	if w <= h {
		return Resize(s, t.Size, int(float64(t.Size)*float64(h)/float64(w)))
	}
	return Resize(s, int(float64(t.Size)*float64(w)/float64(h)), t.Size)
}

// CenterCrop cuts the central W x H region (torchvision: offsets round((size - crop) / 2)),
// padding first (image 0, labels 255) where the image is smaller.
type CenterCrop struct{ W, H int }

// Apply implements Transform.
func (t CenterCrop) Apply(s *datasets.Sample, _ *rand.Rand) error {
	if s.Image.W < t.W || s.Image.H < t.H {
		padCentred(s, t.W, t.H)
	}
	x0 := int(math.RoundToEven(float64(s.Image.W-t.W) / 2))
	y0 := int(math.RoundToEven(float64(s.Image.H-t.H) / 2))
	return Crop(s, x0, y0, t.W, t.H)
}

// padCentred pads to at least w x h with the image centred, as torchvision's CenterCrop does.
func padCentred(s *datasets.Sample, w, h int) {
	W, H := s.Image.W, s.Image.H
	left, top := max(0, (w-W)/2), max(0, (h-H)/2)
	nw, nh := max(W, w), max(H, h)
	// Pad bottom-right to the full size, then shift the content by (left, top).
	PadTo(s, nw, nh)
	if left == 0 && top == 0 {
		return
	}
	shift := func(m []uint8, ch int, fill uint8) {
		for y := nh - 1; y >= 0; y-- {
			row := m[y*nw*ch : (y+1)*nw*ch]
			if y-top >= 0 && y-top < H {
				src := m[(y-top)*nw*ch : (y-top)*nw*ch+W*ch]
				copy(row[left*ch:], src)
				for i := 0; i < left*ch; i++ {
					row[i] = fill
				}
				for i := (left + W) * ch; i < len(row); i++ {
					row[i] = fill
				}
			} else {
				for i := range row {
					row[i] = fill
				}
			}
		}
	}
	shift(s.Image.Pix, 3, 0)
	if s.Semantic != nil {
		shift(s.Semantic, 1, datasets.IgnoreLabel)
	}
	for k := range s.Instances {
		inst := &s.Instances[k]
		if inst.Mask != nil {
			shift(inst.Mask, 1, 0)
		}
		inst.Box[0] += float32(left)
		inst.Box[2] += float32(left)
		inst.Box[1] += float32(top)
		inst.Box[3] += float32(top)
	}
}

// Pad extends the sample on the right and bottom to at least W x H (image 0, labels 255).
type Pad struct{ W, H int }

// Apply implements Transform.
func (t Pad) Apply(s *datasets.Sample, _ *rand.Rand) error {
	PadTo(s, t.W, t.H)
	return nil
}

// RandomRescale is mmsegmentation's Resize with ratio_range and keep_ratio: a ratio r uniform in
// RatioRange scales the base Scale (long, short edge), and the image is rescaled by the largest
// factor that fits both edges: min(long*r / long side, short*r / short side).
type RandomRescale struct {
	Scale      [2]int     // (long edge, short edge), e.g. (2048, 512)
	RatioRange [2]float64 // e.g. (0.5, 2.0)
}

// Apply implements Transform.
func (t RandomRescale) Apply(s *datasets.Sample, rng *rand.Rand) error {
	r := t.RatioRange[0] + rng.Float64()*(t.RatioRange[1]-t.RatioRange[0])
	long, short := float64(int(float64(t.Scale[0])*r)), float64(int(float64(t.Scale[1])*r))
	if long < short {
		long, short = short, long
	}
	w, h := float64(s.Image.W), float64(s.Image.H)
	f := math.Min(long/math.Max(w, h), short/math.Min(w, h))
	return Resize(s, max(1, int(w*f+0.5)), max(1, int(h*f+0.5)))
}

// RandomCrop cuts a random W x H region (smaller where the image is), mmsegmentation's
// RandomCrop: with CatMaxRatio < 1 and a semantic mask, up to 10 draws are retried while one
// class (ignore excluded) covers CatMaxRatio or more of the crop or the crop has one class only.
type RandomCrop struct {
	W, H        int
	CatMaxRatio float64 // 0 or >= 1 disables the check
}

// Apply implements Transform.
func (t RandomCrop) Apply(s *datasets.Sample, rng *rand.Rand) error {
	W, H := s.Image.W, s.Image.H
	cw, ch := min(t.W, W), min(t.H, H)
	draw := func() (int, int) {
		y0 := rng.IntN(max(H-t.H, 0) + 1)
		x0 := rng.IntN(max(W-t.W, 0) + 1)
		return x0, y0
	}
	x0, y0 := draw()
	if t.CatMaxRatio > 0 && t.CatMaxRatio < 1 && s.Semantic != nil {
		for attempt := 0; attempt < 10; attempt++ {
			var cnt [256]int
			for y := y0; y < y0+ch; y++ {
				for _, v := range s.Semantic[y*W+x0 : y*W+x0+cw] {
					cnt[v]++
				}
			}
			cnt[datasets.IgnoreLabel] = 0
			classes, most, total := 0, 0, 0
			for _, c := range cnt {
				if c > 0 {
					classes++
					most = max(most, c)
					total += c
				}
			}
			if classes > 1 && float64(most)/float64(total) < t.CatMaxRatio {
				break
			}
			x0, y0 = draw()
		}
	}
	return Crop(s, x0, y0, cw, ch)
}

// ImageNetTrain is the standard classification training augmentation at size x size:
// RandomResizedCrop with torchvision's defaults and a horizontal flip with probability 0.5.
func ImageNetTrain(size int) Transform {
	return Compose(RandomResizedCrop{W: size, H: size}, HFlip{P: 0.5})
}

// ImageNetEval resizes the shorter side to size*256/224 and centre-crops size x size.
func ImageNetEval(size int) Transform {
	return Compose(ResizeShorter{Size: size * 256 / 224}, CenterCrop{W: size, H: size})
}

// ADE20KTrain is mmsegmentation's ADE20K training pipeline for a crop x crop input: rescale
// with ratio 0.5..2.0 of (4*crop, crop) keeping the aspect ratio ((2048, 512) for 512), random
// crop with cat_max_ratio 0.75, flip 0.5, pad to crop x crop (image 0, labels 255).
// (mmseg's PhotoMetricDistortion is not applied.)
func ADE20KTrain(crop int) Transform {
	return Compose(
		RandomRescale{Scale: [2]int{4 * crop, crop}, RatioRange: [2]float64{0.5, 2.0}},
		RandomCrop{W: crop, H: crop, CatMaxRatio: 0.75},
		HFlip{P: 0.5},
		Pad{W: crop, H: crop},
	)
}

// SegEval is mmsegmentation's test-time resize: keep the aspect ratio and fit (4*crop, crop).
// Sizes then vary by image: batch them one at a time, or follow with Pad for fixed shapes.
func SegEval(crop int) Transform {
	return Func(func(s *datasets.Sample, _ *rand.Rand) error {
		w, h := float64(s.Image.W), float64(s.Image.H)
		long, short := float64(4*crop), float64(crop)
		f := math.Min(long/math.Max(w, h), short/math.Min(w, h))
		return Resize(s, max(1, int(w*f+0.5)), max(1, int(h*f+0.5)))
	})
}
