package transforms

import (
	"math"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

// Image resampling: separable convolution with the triangle (bilinear) filter widened by the
// scale factor when shrinking, in 8-bit fixed point — the algorithm of PIL's
// Image.resize(BILINEAR), which torchvision applies to PIL images and to tensors with
// antialias=True. Sampling is half-pixel centred (align_corners=False).

const precisionBits = 32 - 8 - 2

// coeffs holds, for each output coordinate, the first input coordinate and the fixed-point
// weights of the taps that follow it.
type coeffs struct {
	start []int
	n     []int // non-zero taps of each output
	taps  int
	w     []int32 // len(start) * taps
}

// computeCoeffs resamples input coordinates [in0, in0+inLen) of an axis of inSize pixels to
// outSize pixels.
func computeCoeffs(inSize int, in0, inLen float64, outSize int) coeffs {
	scale := inLen / float64(outSize)
	filterscale := math.Max(scale, 1)
	support := filterscale // bilinear support 1, widened when shrinking
	taps := int(math.Ceil(support))*2 + 1
	c := coeffs{start: make([]int, outSize), n: make([]int, outSize), taps: taps, w: make([]int32, outSize*taps)}
	k := make([]float64, taps)
	for xx := 0; xx < outSize; xx++ {
		center := in0 + (float64(xx)+0.5)*scale
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		n := xmax - xmin
		if n > taps {
			n = taps
		}
		ww := 0.0
		for x := 0; x < n; x++ {
			t := math.Abs((float64(x+xmin) - center + 0.5) / filterscale)
			v := 0.0
			if t < 1 {
				v = 1 - t
			}
			k[x] = v
			ww += v
		}
		if n <= 0 || ww == 0 { // degenerate: nearest pixel
			xmin = min(max(int(center), 0), inSize-1)
			n = 1
			k[0], ww = 1, 1
		}
		// Trim zero weights at both ends.
		for n > 1 && k[n-1] == 0 {
			n--
		}
		lead := 0
		for lead < n-1 && k[lead] == 0 {
			lead++
		}
		c.start[xx], c.n[xx] = xmin+lead, n-lead
		row := c.w[xx*taps : (xx+1)*taps]
		for x := 0; x < taps; x++ {
			if x < n-lead {
				row[x] = int32(math.Floor(k[x+lead]/ww*(1<<precisionBits) + 0.5))
			} else {
				row[x] = 0
			}
		}
	}
	return c
}

func clip8(acc int32) uint8 {
	v := acc >> precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// resampleImage resamples the region (x0, y0, w, h) of src (in pixels, may be fractional,
// must lie inside src) to outW x outH.
func resampleImage(src datasets.Image, x0, y0, w, h float64, outW, outH int) datasets.Image {
	out := datasets.NewImage(outW, outH)
	if x0 == math.Trunc(x0) && y0 == math.Trunc(y0) && w == float64(outW) && h == float64(outH) {
		// Pure crop.
		ix, iy := int(x0), int(y0)
		for y := 0; y < outH; y++ {
			copy(out.Pix[y*outW*3:(y+1)*outW*3], src.Pix[((iy+y)*src.W+ix)*3:])
		}
		return out
	}
	cx := computeCoeffs(src.W, x0, w, outW)
	cy := computeCoeffs(src.H, y0, h, outH)
	// Rows of src the vertical pass reads.
	rowLo, rowHi := src.H, 0
	for yy := 0; yy < outH; yy++ {
		rowLo = min(rowLo, cy.start[yy])
		rowHi = max(rowHi, min(cy.start[yy]+cy.taps, src.H))
	}
	// Horizontal pass into tmp (rows rowLo..rowHi-1, width outW).
	tmp := make([]uint8, (rowHi-rowLo)*outW*3)
	half := int32(1) << (precisionBits - 1)
	for y := rowLo; y < rowHi; y++ {
		srow := src.Pix[y*src.W*3 : (y+1)*src.W*3]
		trow := tmp[(y-rowLo)*outW*3 : (y-rowLo+1)*outW*3]
		for xx := 0; xx < outW; xx++ {
			xmin, n := cx.start[xx], cx.n[xx]
			k := cx.w[xx*cx.taps : xx*cx.taps+n]
			p := srow[xmin*3 : (xmin+n)*3]
			r, g, b := half, half, half
			for _, wt := range k {
				_ = p[2]
				r += int32(p[0]) * wt
				g += int32(p[1]) * wt
				b += int32(p[2]) * wt
				p = p[3:]
			}
			o := trow[3*xx : 3*xx+3]
			o[0], o[1], o[2] = clip8(r), clip8(g), clip8(b)
		}
	}
	// Vertical pass.
	stride := outW * 3
	acc := make([]int32, stride)
	for yy := 0; yy < outH; yy++ {
		ymin, n := cy.start[yy], cy.n[yy]
		k := cy.w[yy*cy.taps : yy*cy.taps+n]
		orow := out.Pix[yy*stride : (yy+1)*stride]
		row := func(t int) []uint8 { return tmp[(ymin+t-rowLo)*stride : (ymin+t-rowLo+1)*stride] }
		switch n {
		case 1:
			copy(orow, row(0)) // weight 1
		case 2: // upscaling: two taps, no accumulator
			r0, r1 := row(0), row(1)
			w0, w1 := k[0], k[1]
			r0, r1 = r0[:len(orow)], r1[:len(orow)]
			for i := range orow {
				orow[i] = clip8(half + int32(r0[i])*w0 + int32(r1[i])*w1)
			}
		default:
			for i := range acc {
				acc[i] = half
			}
			for t, wt := range k {
				trow := row(t)[:len(acc)]
				for i, v := range trow {
					acc[i] += int32(v) * wt
				}
			}
			for i, a := range acc {
				orow[i] = clip8(a)
			}
		}
	}
	return out
}

// nearestMap maps each of outSize output coordinates to the input coordinate whose pixel
// contains its centre (PIL NEAREST, "nearest-exact"), for the region [in0, in0+inLen).
func nearestMap(inSize int, in0, inLen float64, outSize int) []int {
	m := make([]int, outSize)
	scale := inLen / float64(outSize)
	for o := range m {
		v := int(math.Floor(in0 + (float64(o)+0.5)*scale))
		m[o] = min(max(v, 0), inSize-1)
	}
	return m
}

// resampleNearest resamples an HxW single-channel map with the index maps.
func resampleNearest(src []uint8, srcW int, xs, ys []int) []uint8 {
	out := make([]uint8, len(xs)*len(ys))
	for oy, sy := range ys {
		srow := src[sy*srcW : (sy+1)*srcW]
		orow := out[oy*len(xs) : (oy+1)*len(xs)]
		for ox, sx := range xs {
			orow[ox] = srow[sx]
		}
	}
	return out
}
