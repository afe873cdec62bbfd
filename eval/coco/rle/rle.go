// Package rle is a Go port of the run-length mask encoding of the COCO API (pycocotools'
// common/maskApi.c): binary masks as run lengths in column-major order, their compressed
// string form, area, bounding box, polygon and box rasterisation, union/intersection, and
// mask or box IoU with COCO's crowd semantics.
//
// Every function reproduces maskApi.c's results bit for bit on valid input, so that COCO AP
// computed with it matches pycocotools. Where maskApi.c has undefined behaviour on malformed
// input (runs that do not add up to h*w, truncated strings), this package returns an error or
// stops safely instead.
//
// Counts alternate between runs of 0s and runs of 1s, starting with 0s, over the mask read
// column by column (Fortran order): pixel (y, x) is at position x*h + y.
package rle

import (
	"fmt"
	"math"
	"slices"
)

// RLE is a binary mask of H rows and W columns stored as run lengths over the mask in
// column-major order, the first run counting 0s.
type RLE struct {
	H, W   int
	Counts []uint32
}

// Validate checks that the runs cover exactly H*W pixels.
func (r RLE) Validate() error {
	if r.H < 0 || r.W < 0 {
		return fmt.Errorf("rle: negative size %dx%d", r.H, r.W)
	}
	var total uint64
	for _, c := range r.Counts {
		total += uint64(c)
	}
	if total != uint64(r.H)*uint64(r.W) {
		return fmt.Errorf("rle: runs add up to %d pixels, size %dx%d has %d", total, r.H, r.W, r.H*r.W)
	}
	return nil
}

// EncodeColumnMajor run-length encodes an h x w mask stored column by column (as
// pycocotools' encode expects of a Fortran-ordered array). Any non-zero value is foreground.
func EncodeColumnMajor(mask []uint8, h, w int) RLE {
	if len(mask) != h*w {
		panic(fmt.Sprintf("rle.EncodeColumnMajor: mask has %d values, want %d x %d", len(mask), h, w))
	}
	counts := make([]uint32, 0, 8)
	var prev uint8
	var run uint32
	for _, v := range mask {
		if v != 0 {
			v = 1
		}
		if v != prev {
			counts = append(counts, run)
			run = 0
			prev = v
		}
		run++
	}
	counts = append(counts, run)
	return RLE{H: h, W: w, Counts: counts}
}

// Encode run-length encodes an h x w mask stored row by row (the usual Go image layout).
// Any non-zero value is foreground.
func Encode(mask []uint8, h, w int) RLE {
	if len(mask) != h*w {
		panic(fmt.Sprintf("rle.Encode: mask has %d values, want %d x %d", len(mask), h, w))
	}
	col := make([]uint8, len(mask))
	for y := range h {
		for x := range w {
			col[x*h+y] = mask[y*w+x]
		}
	}
	return EncodeColumnMajor(col, h, w)
}

// DecodeColumnMajor expands r into an H*W mask of 0s and 1s stored column by column.
// Runs past H*W are an error.
func (r RLE) DecodeColumnMajor() ([]uint8, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	mask := make([]uint8, r.H*r.W)
	var v uint8
	p := 0
	for _, c := range r.Counts {
		if v == 1 {
			for k := range int(c) {
				mask[p+k] = 1
			}
		}
		p += int(c)
		v = 1 - v
	}
	return mask, nil
}

// Decode expands r into an H*W mask of 0s and 1s stored row by row.
func (r RLE) Decode() ([]uint8, error) {
	mask := make([]uint8, r.H*r.W)
	return mask, r.DecodeInto(mask)
}

// DecodeInto sets to 1 the foreground pixels of r in mask (H*W, row by row), leaving the others
// as they are: decoding several RLEs into one mask gives their union.
func (r RLE) DecodeInto(mask []uint8) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if len(mask) != r.H*r.W {
		return fmt.Errorf("rle: mask of %d pixels for a %dx%d RLE", len(mask), r.H, r.W)
	}
	var v uint32
	p := 0
	for _, c := range r.Counts {
		if v == 1 {
			for k := p; k < p+int(c); k++ {
				x, y := k/r.H, k%r.H
				mask[y*r.W+x] = 1
			}
		}
		p += int(c)
		v = 1 - v
	}
	return nil
}

// Area is the number of foreground pixels (maskApi.c's rleArea).
func (r RLE) Area() uint32 {
	var a uint32
	for j := 1; j < len(r.Counts); j += 2 {
		a += r.Counts[j]
	}
	return a
}

// ToBbox is the tightest box [x, y, width, height] around the foreground, or all zeros for an
// empty mask (maskApi.c's rleToBbox: a run of 1s that wraps from one column into the next
// spans all rows).
func (r RLE) ToBbox() [4]float64 {
	m := len(r.Counts) / 2 * 2
	if m == 0 || r.H == 0 {
		return [4]float64{}
	}
	h := uint32(r.H)
	xs, ys := uint32(r.W), h
	var xe, ye, cc, xp uint32
	for j := range m {
		cc += r.Counts[j]
		t := cc - uint32(j%2)
		y := t % h
		x := (t - y) / h
		if j%2 == 0 {
			xp = x
		} else if xp < x {
			ys, ye = 0, h-1
		}
		xs, xe = min(xs, x), max(xe, x)
		ys, ye = min(ys, y), max(ye, y)
	}
	return [4]float64{float64(xs), float64(ys), float64(xe - xs + 1), float64(ye - ys + 1)}
}

// FrBbox rasterises the box [x, y, width, height] in an h x w image, as a 4-point polygon
// (maskApi.c's rleFrBbox).
func FrBbox(bb [4]float64, h, w int) RLE {
	xs, xe := bb[0], bb[0]+bb[2]
	ys, ye := bb[1], bb[1]+bb[3]
	return FrPoly([]float64{xs, ys, xs, ye, xe, ye, xe, ys}, h, w)
}

// FrPoly rasterises a polygon given as x0,y0,x1,y1,... in an h x w image exactly as
// maskApi.c's rleFrPoly: the vertices are scaled by 5 and rounded, the boundary is walked
// pixel by pixel on that fine grid, and a pixel column is filled between the boundary crossings
// of its centre line. A pixel is inside when its centre is (up to the 1/5 grid rounding).
// An odd trailing coordinate is ignored, as maskApi.c does (k = len/2 points).
func FrPoly(xy []float64, h, w int) RLE {
	const scale = 5.0
	k := len(xy) / 2
	if k == 0 {
		return RLE{H: h, W: w, Counts: []uint32{uint32(h * w)}}
	}
	// Vertices on the fine grid, closed.
	x := make([]int, k+1)
	y := make([]int, k+1)
	for j := range k {
		x[j] = int(float64(scale*xy[2*j]) + .5) // no FMA, as in C
		y[j] = int(float64(scale*xy[2*j+1]) + .5)
	}
	x[k], y[k] = x[0], y[0]

	// Every fine-grid point along the boundary, each edge walked along its longer axis.
	n := 0
	for j := range k {
		n += max(absInt(x[j]-x[j+1]), absInt(y[j]-y[j+1])) + 1
	}
	u := make([]int, 0, n)
	v := make([]int, 0, n)
	for j := range k {
		xs, xe, ys, ye := x[j], x[j+1], y[j], y[j+1]
		dx, dy := absInt(xe-xs), absInt(ys-ye)
		flip := (dx >= dy && xs > xe) || (dx < dy && ys > ye)
		if flip {
			xs, xe = xe, xs
			ys, ye = ye, ys
		}
		// maskApi.c divides 0 by 0 for a repeated vertex; the point it then makes is never
		// read (its neighbours share its column), so any slope gives the same mask.
		var s float64
		switch {
		case dx >= dy && dx > 0:
			s = float64(ye-ys) / float64(dx)
		case dx < dy:
			s = float64(xe-xs) / float64(dy)
		}
		if dx >= dy {
			for d := 0; d <= dx; d++ {
				t := d
				if flip {
					t = dx - d
				}
				u = append(u, t+xs)
				// The explicit conversion keeps the compiler from fusing into an FMA, which
				// rounds differently from the C code.
				v = append(v, int(float64(ys)+float64(s*float64(t))+.5))
			}
		} else {
			for d := 0; d <= dy; d++ {
				t := d
				if flip {
					t = dy - d
				}
				v = append(v, t+ys)
				u = append(u, int(float64(xs)+float64(s*float64(t))+.5))
			}
		}
	}

	// Where the boundary crosses a pixel-centre column, record the first pixel below it.
	var starts []uint32
	for j := 1; j < len(u); j++ {
		if u[j] == u[j-1] {
			continue
		}
		var xd float64
		if u[j] < u[j-1] {
			xd = float64(u[j])
		} else {
			xd = float64(u[j] - 1)
		}
		xd = (xd+.5)/scale - .5
		if math.Floor(xd) != xd || xd < 0 || xd > float64(w-1) {
			continue
		}
		yd := float64(min(v[j], v[j-1]))
		yd = (yd+.5)/scale - .5
		if yd < 0 {
			yd = 0
		} else if yd > float64(h) {
			yd = float64(h)
		}
		yd = math.Ceil(yd)
		starts = append(starts, uint32(int(xd)*h+int(yd)))
	}

	// Crossings sorted in column-major order toggle the mask: their gaps are the runs.
	a := append(starts, uint32(h*w))
	slices.Sort(a)
	var p uint32
	for j, t := range a {
		a[j] = t - p
		p = t
	}
	// Zero-length runs cancel: merge the run after a zero into the one before it.
	b := make([]uint32, 0, len(a))
	b = append(b, a[0])
	for j := 1; j < len(a); {
		if a[j] > 0 {
			b = append(b, a[j])
			j++
			continue
		}
		j++
		if j < len(a) {
			b[len(b)-1] += a[j]
			j++
		}
	}
	return RLE{H: h, W: w, Counts: b}
}

func absInt(a int) int {
	if a < 0 {
		return -a
	}
	return a
}

// runReader walks the runs of one RLE in step with another (the merge and IoU loops of
// maskApi.c). A missing first run is read as an empty mask.
type runReader struct {
	counts []uint32
	next   int    // index of the next run to load
	left   uint32 // pixels left in the current run
	on     bool   // whether the current run is foreground
}

func newRunReader(r RLE) runReader {
	if len(r.Counts) == 0 {
		return runReader{counts: []uint32{uint32(r.H * r.W)}, next: 1, left: uint32(r.H * r.W)}
	}
	return runReader{counts: r.Counts, next: 1, left: r.Counts[0]}
}

// advance consumes c pixels and loads the next run when the current one is used up; it
// reports whether a new run was loaded.
func (rr *runReader) advance(c uint32) bool {
	rr.left -= c
	if rr.left == 0 && rr.next < len(rr.counts) {
		rr.left = rr.counts[rr.next]
		rr.next++
		rr.on = !rr.on
		return true
	}
	return false
}

// Merge is the union (or, with intersect, the intersection) of masks of one size
// (maskApi.c's rleMerge). Merging nothing gives an empty 0x0 mask.
func Merge(rs []RLE, intersect bool) (RLE, error) {
	if len(rs) == 0 {
		return RLE{}, nil
	}
	h, w := rs[0].H, rs[0].W
	acc := RLE{H: h, W: w, Counts: slices.Clone(rs[0].Counts)}
	for i := 1; i < len(rs); i++ {
		b := rs[i]
		if b.H != h || b.W != w {
			return RLE{}, fmt.Errorf("rle.Merge: mask %d is %dx%d, mask 0 is %dx%d", i, b.H, b.W, h, w)
		}
		ra, rb := newRunReader(acc), newRunReader(b)
		var out []uint32
		var v bool
		var cc uint32
		for {
			c := min(ra.left, rb.left)
			cc += c
			movedA := ra.advance(c)
			movedB := rb.advance(c)
			rest := ra.left + rb.left
			vp := v
			if intersect {
				v = ra.on && rb.on
			} else {
				v = ra.on || rb.on
			}
			if v != vp || rest == 0 {
				out = append(out, cc)
				cc = 0
			}
			if rest == 0 {
				break
			}
			if c == 0 && !movedA && !movedB {
				return RLE{}, fmt.Errorf("rle.Merge: runs of mask 0..%d and %d do not cover the same %dx%d pixels", i-1, i, h, w)
			}
		}
		acc = RLE{H: h, W: w, Counts: out}
	}
	return acc, nil
}

// IoU is the mask intersection over union of every detection with every ground truth,
// indexed [detection][ground truth] (pycocotools' mask.iou). For a crowd ground truth the
// union is the detection's area alone. Masks of different sizes get -1, as in maskApi.c.
// iscrowd may be nil (no crowds) or have one flag per ground truth.
func IoU(dt, gt []RLE, iscrowd []bool) [][]float64 {
	if iscrowd != nil && len(iscrowd) != len(gt) {
		panic(fmt.Sprintf("rle.IoU: %d crowd flags for %d ground truths", len(iscrowd), len(gt)))
	}
	db := make([][4]float64, len(dt))
	for d, r := range dt {
		db[d] = r.ToBbox()
	}
	gb := make([][4]float64, len(gt))
	for g, r := range gt {
		gb[g] = r.ToBbox()
	}
	out := BoxIoU(db, gb, iscrowd)
	for d := range dt {
		for g := range gt {
			// Boxes that do not overlap cannot hold overlapping masks.
			if out[d][g] <= 0 {
				continue
			}
			if dt[d].H != gt[g].H || dt[d].W != gt[g].W {
				out[d][g] = -1
				continue
			}
			crowd := iscrowd != nil && iscrowd[g]
			out[d][g] = maskIoU(dt[d], gt[g], crowd)
		}
	}
	return out
}

func maskIoU(dt, gt RLE, crowd bool) float64 {
	ra, rb := newRunReader(dt), newRunReader(gt)
	var inter, union uint32
	for {
		c := min(ra.left, rb.left)
		if ra.on || rb.on {
			union += c
			if ra.on && rb.on {
				inter += c
			}
		}
		movedA := ra.advance(c)
		movedB := rb.advance(c)
		if ra.left+rb.left == 0 || (c == 0 && !movedA && !movedB) {
			break
		}
	}
	if inter == 0 {
		union = 1
	} else if crowd {
		union = dt.Area()
	}
	return float64(inter) / float64(union)
}

// BoxIoU is the intersection over union of boxes [x, y, width, height], indexed
// [detection][ground truth] (maskApi.c's bbIou). For a crowd ground truth the union is the
// detection box's area alone. iscrowd may be nil or have one flag per ground truth.
func BoxIoU(dt, gt [][4]float64, iscrowd []bool) [][]float64 {
	if iscrowd != nil && len(iscrowd) != len(gt) {
		panic(fmt.Sprintf("rle.BoxIoU: %d crowd flags for %d ground truths", len(iscrowd), len(gt)))
	}
	out := make([][]float64, len(dt))
	for d := range dt {
		out[d] = make([]float64, len(gt))
	}
	for g, G := range gt {
		ga := G[2] * G[3]
		crowd := iscrowd != nil && iscrowd[g]
		for d, D := range dt {
			da := D[2] * D[3]
			w := math.Min(D[2]+D[0], G[2]+G[0]) - math.Max(D[0], G[0])
			if w <= 0 {
				continue
			}
			h := math.Min(D[3]+D[1], G[3]+G[1]) - math.Max(D[1], G[1])
			if h <= 0 {
				continue
			}
			i := w * h
			u := da + ga - i
			if crowd {
				u = da
			}
			out[d][g] = i / u
		}
	}
	return out
}
