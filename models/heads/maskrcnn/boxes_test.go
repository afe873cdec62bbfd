package maskrcnn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func exec1(t *testing.T, fn func(g *Graph, in []*Node) *Node, args ...any) *tensors.Tensor {
	t.Helper()
	return model.MustCallOnce(backend.Go(), model.NewStore(), func(scope *model.Scope, g *Graph, in []*Node) *Node { return fn(g, in) }, args...)
}

func closeTo(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

func TestCellAnchors(t *testing.T) {
	// detectron2: size 32, ratio 0.5 -> w = sqrt(1024/0.5), h = 0.5 w; ratio 2 -> w = sqrt(512).
	got := CellAnchors([]float64{32}, []float64{0.5, 1, 2})
	w0 := math.Sqrt(2048)
	w2 := math.Sqrt(512)
	want := [][4]float64{{-w0 / 2, -w0 / 4, w0 / 2, w0 / 4}, {-16, -16, 16, 16}, {-w2 / 2, -w2, w2 / 2, w2}}
	for i := range want {
		for j := range 4 {
			if got[i][j] != float32(want[i][j]) {
				t.Errorf("anchor %d coord %d: got %v, want %v", i, j, got[i][j], float32(want[i][j]))
			}
		}
	}
	// Grid: row-major locations, cell anchors innermost, offset 0.
	grid := GridAnchors(got, 2, 3, 8, 0)
	if len(grid) != 2*3*3 {
		t.Fatalf("got %d anchors", len(grid))
	}
	// Location (row 1, col 2) = index (1*3+2)*3 + 1 for the square anchor: shift (16, 8).
	if a := grid[(1*3+2)*3+1]; a != [4]float32{0, -8, 32, 24} {
		t.Errorf("square anchor at (1, 2): %v", a)
	}
	all := Anchors([]LevelShape{{2, 2, 4}, {1, 1, 8}}, Config{AnchorSizes: []float64{8, 16}, AspectRatios: []float64{1}})
	flat := tensors.MustCopyFlatData[float32](all)
	want2 := []float32{-4, -4, 4, 4, 0, -4, 8, 4, -4, 0, 4, 8, 0, 0, 8, 8, -8, -8, 8, 8}
	for i := range want2 {
		if flat[i] != want2[i] {
			t.Fatalf("anchors %v, want %v", flat, want2)
		}
	}
}

func TestBoxTransformRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 50
	src, dst := make([]float32, 4*n), make([]float32, 4*n)
	for i := range n {
		x, y := rng.Float32()*100, rng.Float32()*100
		// Size ratios stay below the scale clamp (1000/16).
		src[4*i], src[4*i+1], src[4*i+2], src[4*i+3] = x, y, x+10+rng.Float32()*80, y+10+rng.Float32()*80
		x, y = rng.Float32()*100, rng.Float32()*100
		dst[4*i], dst[4*i+1], dst[4*i+2], dst[4*i+3] = x, y, x+1+rng.Float32()*80, y+1+rng.Float32()*80
	}
	for _, w := range [][4]float64{{1, 1, 1, 1}, {10, 10, 5, 5}} {
		tf := BoxTransform{Weights: w, ScaleClamp: math.Log(1000.0 / 16)}
		out := exec1(t, func(g *Graph, in []*Node) *Node { return tf.Decode(tf.Encode(in[0], in[1]), in[0]) },
			tensors.FromFlatDataAndDimensions(src, n, 4), tensors.FromFlatDataAndDimensions(dst, n, 4))
		got := tensors.MustCopyFlatData[float32](out)
		for i := range dst {
			if !closeTo(float64(got[i]), float64(dst[i]), 1e-4) {
				t.Fatalf("weights %v: decode(encode) = %v, want %v (index %d)", w, got[i], dst[i], i)
			}
		}
	}
	// Known deltas: a box shifted by half its width, twice as tall.
	tf := BoxTransform{Weights: [4]float64{10, 10, 5, 5}, ScaleClamp: math.Log(1000.0 / 16)}
	out := exec1(t, func(g *Graph, in []*Node) *Node { return tf.Encode(in[0], in[1]) },
		tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10}, 1, 4), tensors.FromFlatDataAndDimensions([]float32{5, -5, 15, 15}, 1, 4))
	want := []float64{10 * 0.5, 0, 0, 5 * math.Log(2)}
	for i, v := range tensors.MustCopyFlatData[float32](out) {
		if !closeTo(float64(v), want[i], 1e-5) {
			t.Errorf("encode: %v, want %v", v, want)
		}
	}
	// The scale clamp bounds exp(dw) at 1000/16.
	out = exec1(t, func(g *Graph, in []*Node) *Node { return tf.Decode(in[0], in[1]) },
		tensors.FromFlatDataAndDimensions([]float32{0, 0, 100, 0}, 1, 4), tensors.FromFlatDataAndDimensions([]float32{0, 0, 16, 16}, 1, 4))
	if w := tensors.MustCopyFlatData[float32](out); !closeTo(float64(w[2]-w[0]), 1000, 1e-5) || !closeTo(float64(w[3]-w[1]), 16, 1e-6) {
		t.Errorf("clamped decode: %v", w)
	}
}

func TestPairwiseIoU(t *testing.T) {
	a := tensors.FromFlatDataAndDimensions([]float32{0, 0, 10, 10, 0, 0, 0, 0}, 1, 2, 4)
	b := tensors.FromFlatDataAndDimensions([]float32{5, 0, 15, 10, 20, 20, 30, 30, 0, 0, 10, 10, 0, 0, 0, 0}, 1, 4, 4)
	got := tensors.MustCopyFlatData[float32](exec1(t, func(g *Graph, in []*Node) *Node { return PairwiseIoU(in[0], in[1]) }, a, b))
	want := []float32{50.0 / 150, 0, 1, 0, 0, 0, 0, 0}
	for i := range want {
		if !closeTo(float64(got[i]), float64(want[i]), 1e-6) {
			t.Fatalf("IoU %v, want %v", got, want)
		}
	}
}
