package transforms

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

// CropResize replaces s by its region (x0, y0, w, h), which must lie inside the image, resized
// to outW x outH: the image with antialiased bilinear resampling, the semantic and instance
// masks with nearest neighbour, boxes scaled and clipped. When the region cuts the image, boxes
// of instances with masks are recomputed from the cropped masks (detectron2's
// recompute_boxes). Instances left empty are removed and counted in s.Dropped.
func CropResize(s *datasets.Sample, x0, y0, w, h, outW, outH int) error {
	W, H := s.Image.W, s.Image.H
	if x0 < 0 || y0 < 0 || w <= 0 || h <= 0 || x0+w > W || y0+h > H || outW <= 0 || outH <= 0 {
		return fmt.Errorf("%s: crop (%d,%d) %dx%d -> %dx%d does not fit the %dx%d image", s.Path, x0, y0, w, h, outW, outH, W, H)
	}
	if x0 == 0 && y0 == 0 && w == W && h == H && outW == W && outH == H {
		return nil
	}
	s.Image = resampleImage(s.Image, float64(x0), float64(y0), float64(w), float64(h), outW, outH)
	if s.Semantic == nil && len(s.Instances) == 0 {
		return nil
	}
	xs := nearestMap(W, float64(x0), float64(w), outW)
	ys := nearestMap(H, float64(y0), float64(h), outH)
	if s.Semantic != nil {
		s.Semantic = resampleNearest(s.Semantic, W, xs, ys)
	}
	if len(s.Instances) == 0 {
		return nil
	}
	cropped := x0 > 0 || y0 > 0 || w < W || h < H
	sx, sy := float32(outW)/float32(w), float32(outH)/float32(h)
	kept := s.Instances[:0]
	for _, inst := range s.Instances {
		b := inst.Box
		b = [4]float32{
			clampf((b[0]-float32(x0))*sx, 0, float32(outW)),
			clampf((b[1]-float32(y0))*sy, 0, float32(outH)),
			clampf((b[2]-float32(x0))*sx, 0, float32(outW)),
			clampf((b[3]-float32(y0))*sy, 0, float32(outH)),
		}
		if b[2] <= b[0] || b[3] <= b[1] {
			s.Dropped++
			continue
		}
		if inst.Mask != nil {
			inst.Mask = resampleNearest(inst.Mask, W, xs, ys)
			area := 0
			for _, v := range inst.Mask {
				area += int(v)
			}
			if area == 0 {
				s.Dropped++
				continue
			}
			inst.Area = float64(area)
			if cropped {
				b = maskBox(inst.Mask, outW, outH)
			}
		} else {
			inst.Area = float64((b[2] - b[0]) * (b[3] - b[1]))
		}
		inst.Box = b
		kept = append(kept, inst)
	}
	clear(s.Instances[len(kept):])
	s.Instances = kept
	return nil
}

// Resize resizes s to w x h (see CropResize).
func Resize(s *datasets.Sample, w, h int) error {
	return CropResize(s, 0, 0, s.Image.W, s.Image.H, w, h)
}

// Crop cuts the region (x0, y0, w, h) out of s without resizing (see CropResize).
func Crop(s *datasets.Sample, x0, y0, w, h int) error {
	return CropResize(s, x0, y0, w, h, w, h)
}

// FlipH mirrors s left-right: image, masks and boxes.
func FlipH(s *datasets.Sample) {
	W, H := s.Image.W, s.Image.H
	for y := 0; y < H; y++ {
		row := s.Image.Pix[y*W*3 : (y+1)*W*3]
		for i, j := 0, W-1; i < j; i, j = i+1, j-1 {
			row[3*i], row[3*j] = row[3*j], row[3*i]
			row[3*i+1], row[3*j+1] = row[3*j+1], row[3*i+1]
			row[3*i+2], row[3*j+2] = row[3*j+2], row[3*i+2]
		}
	}
	flipMask := func(m []uint8) {
		for y := 0; y < H; y++ {
			row := m[y*W : (y+1)*W]
			for i, j := 0, W-1; i < j; i, j = i+1, j-1 {
				row[i], row[j] = row[j], row[i]
			}
		}
	}
	if s.Semantic != nil {
		flipMask(s.Semantic)
	}
	for k := range s.Instances {
		inst := &s.Instances[k]
		if inst.Mask != nil {
			flipMask(inst.Mask)
		}
		inst.Box[0], inst.Box[2] = float32(W)-inst.Box[2], float32(W)-inst.Box[0]
	}
}

// PadTo extends s on the right and bottom to at least w x h: image with 0, semantic mask with
// datasets.IgnoreLabel, instance masks with 0 (mmseg's Pad with seg_pad_val=255).
func PadTo(s *datasets.Sample, w, h int) {
	W, H := s.Image.W, s.Image.H
	nw, nh := max(W, w), max(H, h)
	if nw == W && nh == H {
		return
	}
	img := datasets.NewImage(nw, nh)
	for y := 0; y < H; y++ {
		copy(img.Pix[y*nw*3:], s.Image.Pix[y*W*3:(y+1)*W*3])
	}
	s.Image = img
	pad := func(m []uint8, fill uint8) []uint8 {
		out := make([]uint8, nw*nh)
		if fill != 0 {
			for i := range out {
				out[i] = fill
			}
		}
		for y := 0; y < H; y++ {
			copy(out[y*nw:], m[y*W:(y+1)*W])
		}
		return out
	}
	if s.Semantic != nil {
		s.Semantic = pad(s.Semantic, datasets.IgnoreLabel)
	}
	for k := range s.Instances {
		if s.Instances[k].Mask != nil {
			s.Instances[k].Mask = pad(s.Instances[k].Mask, 0)
		}
	}
}

func clampf(v, lo, hi float32) float32 { return min(max(v, lo), hi) }

// maskBox is the tight box of a mask's non-zero pixels.
func maskBox(mask []uint8, w, h int) [4]float32 {
	x0, y0, x1, y1 := w, h, -1, -1
	for y := 0; y < h; y++ {
		row := mask[y*w : (y+1)*w]
		for x, v := range row {
			if v != 0 {
				if x < x0 {
					x0 = x
				}
				if x > x1 {
					x1 = x
				}
				y1 = y
				if y < y0 {
					y0 = y
				}
			}
		}
	}
	if x1 < 0 {
		return [4]float32{}
	}
	return [4]float32{float32(x0), float32(y0), float32(x1 + 1), float32(y1 + 1)}
}
