package maskrcnn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// refRoIAlign is torchvision's roi_align CPU kernel (aligned=True) in plain Go, float64:
// x [H][W][C] of one image, one box, out x out bins.
func refRoIAlign(x [][][]float64, box [4]float64, scale float64, out, samplingRatio int) [][][]float64 {
	h, w, c := len(x), len(x[0]), len(x[0][0])
	sw, sh := box[0]*scale-0.5, box[1]*scale-0.5
	ew, eh := box[2]*scale-0.5, box[3]*scale-0.5
	rw, rh := ew-sw, eh-sh
	bh, bw := rh/float64(out), rw/float64(out)
	gh, gw := samplingRatio, samplingRatio
	if samplingRatio <= 0 {
		gh, gw = int(math.Ceil(rh/float64(out))), int(math.Ceil(rw/float64(out)))
	}
	count := max(gh*gw, 1)
	interp := func(y, xx float64, ch int) float64 {
		if y < -1 || y > float64(h) || xx < -1 || xx > float64(w) {
			return 0
		}
		y, xx = max(y, 0), max(xx, 0)
		yl, xl := int(y), int(xx)
		var yh, xh int
		if yl >= h-1 {
			yl, yh, y = h-1, h-1, float64(h-1)
		} else {
			yh = yl + 1
		}
		if xl >= w-1 {
			xl, xh, xx = w-1, w-1, float64(w-1)
		} else {
			xh = xl + 1
		}
		ly, lx := y-float64(yl), xx-float64(xl)
		hy, hx := 1-ly, 1-lx
		return hy*hx*x[yl][xl][ch] + hy*lx*x[yl][xh][ch] + ly*hx*x[yh][xl][ch] + ly*lx*x[yh][xh][ch]
	}
	res := make([][][]float64, out)
	for ph := range out {
		res[ph] = make([][]float64, out)
		for pw := range out {
			res[ph][pw] = make([]float64, c)
			for ch := range c {
				var sum float64
				for iy := range gh {
					y := sh + float64(ph)*bh + (float64(iy)+0.5)*bh/float64(gh)
					for ix := range gw {
						xx := sw + float64(pw)*bw + (float64(ix)+0.5)*bw/float64(gw)
						sum += interp(y, xx, ch)
					}
				}
				res[ph][pw][ch] = sum / float64(count)
			}
		}
	}
	return res
}

// image returns image n of an NHWC float64 tensor as [H][W][C].
func image(t *tensors.Tensor, n int) [][][]float64 {
	d := t.Shape().Dimensions
	flat := tensors.MustCopyFlatData[float64](t)
	h, w, c := d[1], d[2], d[3]
	x := make([][][]float64, h)
	for y := range h {
		x[y] = make([][]float64, w)
		for xx := range w {
			off := ((n*h+y)*w + xx) * c
			x[y][xx] = flat[off : off+c]
		}
	}
	return x
}

func boxesTensor(boxes [][][4]float64) *tensors.Tensor {
	n, r := len(boxes), len(boxes[0])
	flat := make([]float32, 0, n*r*4)
	for _, img := range boxes {
		for _, b := range img {
			flat = append(flat, float32(b[0]), float32(b[1]), float32(b[2]), float32(b[3]))
		}
	}
	return tensors.FromFlatDataAndDimensions(flat, n, r, 4)
}

func TestRoIAlignHandComputed(t *testing.T) {
	// f(y, x) = 4y + x on a 4x4 map, scale 1: bilinear interpolation of a linear function is
	// exact inside the map, so every bin is f at the mean of its samples.
	f := make([]float64, 16)
	for i := range f {
		f[i] = float64(i)
	}
	x := tensors.FromFlatDataAndDimensions(f, 1, 4, 4, 1)
	cases := []struct {
		name string
		box  [4]float64
		out  int
		want []float64
	}{
		// start 0.5, bin 1, grid 1: samples at 1 and 2 on each axis.
		{"interior", [4]float64{1, 1, 3, 3}, 2, []float64{5, 6, 9, 10}},
		// start -0.5, bin 4, grid 4: samples at 0, 1, 2, 3: the mean of the map.
		{"whole map", [4]float64{0, 0, 4, 4}, 1, []float64{7.5}},
		// grid 2 wide, 1 high: samples (0, 0.5), (0, 1.5).
		{"adaptive grid", [4]float64{0.5, 0, 2.5, 1}, 1, []float64{1}},
		// samples at 3 and 4: clamped to the last row and column.
		{"past the edge", [4]float64{3, 3, 5, 5}, 1, []float64{15}},
		// samples at -4 and -3: more than one pixel outside, zero.
		{"outside", [4]float64{-4, -4, -2, -2}, 1, []float64{0}},
		// x samples at -1 (kept, clamped to 0) and 0; y samples at 1 and 2: f = 4 and 8.
		{"one pixel out", [4]float64{-1, 1, 1, 3}, 1, []float64{6}},
	}
	for _, tc := range cases {
		got := model.MustCallOnce(backend.Go(), model.NewStore(), func(_ *model.Scope, x, b *Node) *Node {
			return RoIAlign(x, b, tc.out, 1, 0)
		}, x, boxesTensor([][][4]float64{{tc.box}}))
		flat := tensors.MustCopyFlatData[float64](got)
		for i := range tc.want {
			if math.Abs(flat[i]-tc.want[i]) > 1e-6 {
				t.Errorf("%s: got %v, want %v", tc.name, flat, tc.want)
				break
			}
		}
	}
}

func randomBoxes(rng *rand.Rand, n, r int, size float64) [][][4]float64 {
	out := make([][][4]float64, n)
	for i := range out {
		out[i] = make([][4]float64, r)
		for j := range out[i] {
			x1, y1 := rng.Float64()*size*1.1-0.1*size, rng.Float64()*size*1.1-0.1*size
			w, h := rng.Float64()*size*0.9+0.3, rng.Float64()*size*0.6+0.3
			if j%5 == 0 {
				w, h = h, w*0.1 // thin boxes
			}
			out[i][j] = [4]float64{x1, y1, x1 + w, y1 + h}
		}
	}
	return out
}

func TestRoIAlignMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := gradcheck.RandomTensor(3, 2, 6, 9, 3)
	boxes := randomBoxes(rng, 2, 7, 18) // scale 0.5: up to ~10 feature pixels, grids up to 4
	for _, sr := range []int{0, 2} {
		got := model.MustCallOnce(backend.Go(), model.NewStore(), func(_ *model.Scope, x, b *Node) *Node {
			return RoIAlign(x, b, 3, 0.5, sr)
		}, x, boxesTensor(boxes))
		flat := tensors.MustCopyFlatData[float64](got)
		for n := range 2 {
			img := image(x, n)
			for r := range 7 {
				b := boxes[n][r]
				bf := [4]float64{float64(float32(b[0])), float64(float32(b[1])), float64(float32(b[2])), float64(float32(b[3]))}
				want := refRoIAlign(img, bf, 0.5, 3, sr)
				for ph := range 3 {
					for pw := range 3 {
						for c := range 3 {
							g := flat[(((n*7+r)*3+ph)*3+pw)*3+c]
							if math.Abs(g-want[ph][pw][c]) > 1e-5 {
								t.Fatalf("sr %d image %d box %v bin (%d,%d,%d): got %g, want %g", sr, n, b, ph, pw, c, g, want[ph][pw][c])
							}
						}
					}
				}
			}
		}
	}
}

func TestMultiLevelRoIAlign(t *testing.T) {
	// Three levels with strides 4, 8, 16 of a 64x64 image, canonical size 16 at level 3.
	levels := []*tensors.Tensor{gradcheck.RandomTensor(4, 1, 16, 16, 2), gradcheck.RandomTensor(5, 1, 8, 8, 2), gradcheck.RandomTensor(6, 1, 4, 4, 2)}
	boxes := [][][4]float64{{{0, 0, 8, 8}, {10, 10, 26, 26}, {0, 0, 32, 32}, {5, 5, 60, 40}, {3, 3, 10.9, 11}}}
	wantLevel := []int{0, 1, 2, 2, 0} // sizes 8, 16, 32, ~47, ~8
	got := model.MustCallOnceN(backend.Go(), model.NewStore(), func(_ *model.Scope, in []*Node) []*Node {
		lv := AssignLevels(in[3], 2, 4, 16, 3)
		return []*Node{MultiLevelRoIAlign(in[:3], 2, in[3], 2, 0, 16, 3), lv}
	}, levels[0], levels[1], levels[2], boxesTensor(boxes))
	lv := tensors.MustCopyFlatData[int32](got[1])
	flat := tensors.MustCopyFlatData[float64](got[0])
	for r, b := range boxes[0] {
		if int(lv[r]) != wantLevel[r] {
			t.Errorf("box %v: level %d, want %d", b, lv[r], wantLevel[r])
		}
		want := refRoIAlign(image(levels[wantLevel[r]], 0), b, 1/float64(int(4)<<wantLevel[r]), 2, 0)
		for i := range 8 {
			ph, pw, c := i/4, (i/2)%2, i%2
			if math.Abs(flat[r*8+i]-want[ph][pw][c]) > 1e-5 {
				t.Fatalf("box %v bin %d: got %g, want %g", b, i, flat[r*8+i], want[ph][pw][c])
			}
		}
	}
}

func TestAssignLevelsBoundaries(t *testing.T) {
	// sqrt(area) exactly 112, 224, 448: levels 3, 4, 5 (floor of 4 + log2(size/224 + 1e-8)).
	boxes := [][][4]float64{{{0, 0, 111.9, 112}, {0, 0, 112, 112}, {0, 0, 224, 224}, {0, 0, 448, 448}, {0, 0, 447, 448}, {0, 0, 2000, 2000}, {0, 0, 1, 1}}}
	got := model.MustCallOnce(backend.Go(), model.NewStore(), func(_ *model.Scope, b *Node) *Node {
		return AssignLevels(b, 2, 5, 224, 4)
	}, boxesTensor(boxes))
	want := []int32{0, 1, 2, 3, 2, 3, 0}
	for i, v := range tensors.MustCopyFlatData[int32](got) {
		if v != want[i] {
			t.Errorf("box %v: level index %d, want %d", boxes[0][i], v, want[i])
		}
	}
}

func TestRoIAlignGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	boxes := boxesTensor(randomBoxes(rng, 2, 4, 16))
	x := gradcheck.RandomTensor(7, 2, 5, 7, 2)
	gradcheck.Check(t, gradcheck.Options{MaxElements: 70}, func(_ *model.Scope, in []*Node) *Node {
		return RoIAlign(in[0], Const(in[0].Graph(), boxes), 3, 0.5, 0)
	}, x)
	// Several levels at once (the gradient is split back to each level).
	l2, l3 := gradcheck.RandomTensor(8, 1, 8, 8, 2), gradcheck.RandomTensor(9, 1, 4, 4, 2)
	mb := boxesTensor([][][4]float64{{{0, 0, 8, 8}, {4, 6, 30, 28}, {1, 2, 3, 20}}})
	gradcheck.Check(t, gradcheck.Options{MaxElements: 70}, func(_ *model.Scope, in []*Node) *Node {
		return MultiLevelRoIAlign(in, 2, Const(in[0].Graph(), mb), 2, 0, 16, 3)
	}, l2, l3)
}
