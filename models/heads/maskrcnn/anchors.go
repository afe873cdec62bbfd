package maskrcnn

import (
	"math"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/support/exceptions"
)

// CellAnchors returns detectron2's DefaultAnchorGenerator.generate_cell_anchors: for each size,
// for each aspect ratio (height/width), the box of area size² and that ratio centred at the
// origin, (-w/2, -h/2, w/2, h/2). It is computed in float64 and stored in float32, as
// detectron2 builds a float tensor from Python floats; detectron2 (unlike Detectron) does not
// round the anchors to integers.
func CellAnchors(sizes, ratios []float64) [][4]float32 {
	out := make([][4]float32, 0, len(sizes)*len(ratios))
	for _, size := range sizes {
		area := size * size
		for _, r := range ratios {
			w := math.Sqrt(area / r)
			h := r * w
			out = append(out, [4]float32{float32(-w / 2), float32(-h / 2), float32(w / 2), float32(h / 2)})
		}
	}
	return out
}

// GridAnchors places cell anchors at every location of an h x w feature map with the given
// stride, as _grid_anchors: location (i, j) is shifted by (offset + j, offset + i) * stride.
// Anchors are ordered by row, column, then cell anchor — the order of the RPN head's outputs.
func GridAnchors(cell [][4]float32, h, w, stride int, offset float64) [][4]float32 {
	out := make([][4]float32, 0, h*w*len(cell))
	start := float32(offset * float64(stride))
	for i := range h {
		sy := start + float32(i*stride)
		for j := range w {
			sx := start + float32(j*stride)
			for _, c := range cell {
				out = append(out, [4]float32{sx + c[0], sy + c[1], sx + c[2], sy + c[3]})
			}
		}
	}
	return out
}

// LevelShape is the spatial size and stride of one RPN level.
type LevelShape struct {
	Height, Width, Stride int
}

// Anchors returns the anchors of every level concatenated ([sum_l H_l*W_l*A, 4], float32),
// level by level, with one size per level as Base-RCNN-FPN.
func Anchors(levels []LevelShape, cfg Config) *tensors.Tensor {
	if len(levels) != len(cfg.AnchorSizes) {
		exceptions.Panicf("maskrcnn.Anchors: %d levels and %d anchor sizes", len(levels), len(cfg.AnchorSizes))
	}
	var flat []float32
	for l, lv := range levels {
		cell := CellAnchors(cfg.AnchorSizes[l:l+1], cfg.AspectRatios)
		for _, a := range GridAnchors(cell, lv.Height, lv.Width, lv.Stride, cfg.AnchorOffset) {
			flat = append(flat, a[:]...)
		}
	}
	return tensors.FromFlatDataAndDimensions(flat, len(flat)/4, 4)
}
