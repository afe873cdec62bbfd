package maskrcnn

import (
	"fmt"
	"math"

	"github.com/dreamteacher-go/dreamteacher/eval/coco"
	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
	"github.com/gomlx/gomlx/core/tensors"
)

// ImageDetections are the valid detections of one image on the host, best first, in input
// pixels (the coordinates Detect works in).
type ImageDetections struct {
	Boxes    [][4]float32
	Scores   []float32
	Classes  []int
	Masks    [][]float32 // MaskSize*MaskSize probabilities each, row by row
	MaskSize int
}

// FetchDetections copies the valid detections out of the executed Detections tensors
// (boxes [N,D,4], scores [N,D], classes [N,D], masks [N,D,M,M], valid [N,D]).
func FetchDetections(boxes, scores, classes, masks, valid *tensors.Tensor) ([]ImageDetections, error) {
	bd := boxes.Shape().Dimensions
	if len(bd) != 3 || bd[2] != 4 || masks.Shape().Rank() != 4 {
		return nil, fmt.Errorf("maskrcnn.FetchDetections: want boxes [N,D,4] and masks [N,D,M,M], got %s and %s", boxes.Shape(), masks.Shape())
	}
	n, d, m := bd[0], bd[1], masks.Shape().Dim(2)
	for name, t := range map[string]*tensors.Tensor{"scores": scores, "classes": classes, "valid": valid} {
		if t.Shape().Rank() != 2 || t.Shape().Dim(0) != n || t.Shape().Dim(1) != d {
			return nil, fmt.Errorf("maskrcnn.FetchDetections: %s is %s, want [%d, %d]", name, t.Shape(), n, d)
		}
	}
	b := tensors.MustCopyFlatData[float32](boxes)
	s := tensors.MustCopyFlatData[float32](scores)
	c := tensors.MustCopyFlatData[int32](classes)
	mk := tensors.MustCopyFlatData[float32](masks)
	v := tensors.MustCopyFlatData[bool](valid)
	out := make([]ImageDetections, n)
	for i := range n {
		out[i].MaskSize = m
		for j := range d {
			k := i*d + j
			if !v[k] {
				continue
			}
			out[i].Boxes = append(out[i].Boxes, [4]float32{b[4*k], b[4*k+1], b[4*k+2], b[4*k+3]})
			out[i].Scores = append(out[i].Scores, s[k])
			out[i].Classes = append(out[i].Classes, int(c[k]))
			out[i].Masks = append(out[i].Masks, append([]float32(nil), mk[k*m*m:(k+1)*m*m]...))
		}
	}
	return out, nil
}

// PasteMask is detectron2's paste_masks_in_image for one mask: the m x m probabilities, laid
// over box (x1, y1, x2, y2) of an h x w image with F.grid_sample (bilinear,
// align_corners=False, zero padding) at pixel centres, thresholded (>= threshold). Returns h*w
// bytes (0 or 1), row by row. Computed in float32 as torch.
func PasteMask(probs []float32, m int, box [4]float32, h, w int, threshold float32) []uint8 {
	out := make([]uint8, h*w)
	x0, y0, x1, y1 := box[0], box[1], box[2], box[3]
	// Only the box's neighbourhood can be non-zero (detectron2's skip_empty path).
	xs := max(int(math.Floor(float64(x0)))-1, 0)
	ys := max(int(math.Floor(float64(y0)))-1, 0)
	xe := min(int(math.Ceil(float64(x1)))+1, w)
	ye := min(int(math.Ceil(float64(y1)))+1, h)
	at := func(yy, xx int) float32 {
		if yy < 0 || yy >= m || xx < 0 || xx >= m {
			return 0
		}
		return probs[yy*m+xx]
	}
	src := func(p, lo, hi float32) float32 { // pixel centre -> grid_sample source index
		g := (p+0.5-lo)/(hi-lo)*2 - 1
		return ((g+1)*float32(m) - 1) / 2
	}
	for y := ys; y < ye; y++ {
		iy := src(float32(y), y0, y1)
		yn := int(math.Floor(float64(iy)))
		ty := iy - float32(yn)
		for x := xs; x < xe; x++ {
			ix := src(float32(x), x0, x1)
			xn := int(math.Floor(float64(ix)))
			tx := ix - float32(xn)
			v := at(yn, xn)*(1-tx)*(1-ty) + at(yn, xn+1)*tx*(1-ty) + at(yn+1, xn)*(1-tx)*ty + at(yn+1, xn+1)*tx*ty
			if v >= threshold {
				out[y*w+x] = 1
			}
		}
	}
	return out
}

// ImageInfo describes an image for COCO results.
type ImageInfo struct {
	ID int64
	// Height, Width: the original image size, which results are reported in.
	Height, Width int
	// InputHeight, InputWidth: the size of the resized image the model saw (without padding).
	InputHeight, InputWidth int
}

// COCOResults turns detections into COCO results, as detectron2's detector_postprocess and
// instances_to_coco_json: boxes are scaled from the input to the original size and clipped,
// detections whose box became empty are dropped, masks are pasted at the original size with
// threshold maskThreshold and RLE-encoded; bbox is [x, y, width, height]. categoryIDs maps class
// k to its dataset category id (datasets/coco's CategoryIDs); nil keeps k.
func COCOResults(dets []ImageDetections, infos []ImageInfo, categoryIDs []int64, maskThreshold float64) ([]coco.Result, error) {
	if len(dets) != len(infos) {
		return nil, fmt.Errorf("maskrcnn.COCOResults: %d images of detections, %d image infos", len(dets), len(infos))
	}
	var out []coco.Result
	for i, d := range dets {
		info := infos[i]
		if info.InputHeight <= 0 || info.InputWidth <= 0 || info.Height <= 0 || info.Width <= 0 {
			return nil, fmt.Errorf("maskrcnn.COCOResults: image %d has sizes %+v", info.ID, info)
		}
		sx := float32(float64(info.Width) / float64(info.InputWidth))
		sy := float32(float64(info.Height) / float64(info.InputHeight))
		for j, b := range d.Boxes {
			clip := func(v float32, hi int) float32 { return min(max(v, 0), float32(hi)) }
			box := [4]float32{clip(b[0]*sx, info.Width), clip(b[1]*sy, info.Height), clip(b[2]*sx, info.Width), clip(b[3]*sy, info.Height)}
			if !(box[2]-box[0] > 0 && box[3]-box[1] > 0) {
				continue
			}
			cat := int64(d.Classes[j])
			if categoryIDs != nil {
				if d.Classes[j] < 0 || d.Classes[j] >= len(categoryIDs) {
					return nil, fmt.Errorf("maskrcnn.COCOResults: class %d out of the %d categories", d.Classes[j], len(categoryIDs))
				}
				cat = categoryIDs[d.Classes[j]]
			}
			r := coco.Result{
				ImageID: info.ID, CategoryID: cat, Score: float64(d.Scores[j]),
				BBox: []float64{float64(box[0]), float64(box[1]), float64(box[2] - box[0]), float64(box[3] - box[1])},
			}
			if j < len(d.Masks) && d.Masks[j] != nil {
				mask := PasteMask(d.Masks[j], d.MaskSize, box, info.Height, info.Width, float32(maskThreshold))
				r.Segmentation = coco.SegmentationFromRLE(rle.Encode(mask, info.Height, info.Width))
			}
			out = append(out, r)
		}
	}
	return out, nil
}
