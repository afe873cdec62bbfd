package regressor

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// features makes backbone levels C2..C5 (or the last len(channels)) of a size x size image from
// one flat input x, so that tests can feed them as a single parameter.
func features(x *Node, n, size int, channels []int) backbones.Features {
	var f backbones.Features
	offset := 0
	first := 4 - len(channels)
	for i, c := range channels {
		stride := 4 << (first + i)
		s := size / stride
		m := Slice(x, AxisRange(), AxisRange(offset, offset+s*s*c))
		offset += s * s * c
		f.Add(backbones.Info{Name: backbones.LevelNames[first+i], Channels: c, Stride: stride}, Reshape(m, n, s, s, c))
	}
	return f
}

func flatSize(size int, channels []int) int {
	total := 0
	first := 4 - len(channels)
	for i, c := range channels {
		s := size / (4 << (first + i))
		total += s * s * c
	}
	return total
}

// TestShapesAndParameters builds the regressor on C2..C5 of a 64x64 image (graph only) and
// checks the outputs, the level each target is taken from, and the parameter count against a
// hand count.
func TestShapesAndParameters(t *testing.T) {
	const n, size, width = 2, 64, 8
	channels := []int{8, 16, 32, 64}
	targets := []Target{
		{Name: "dec3", Channels: 12, Height: 2, Width: 2},                 // C5's size
		{Name: "dec6", Channels: 6, Height: 4, Width: 4},                  // C4's size
		{Name: "dec9", Channels: 10, Height: 8, Width: 8},                 // C3's size
		{Name: "dec12", Channels: 4, Height: 32, Width: 32},               // nearest to C2, resized
		{Name: "explicit", Level: "C4", Channels: 3, Height: 5, Width: 5}, // resized 4 -> 5
	}
	var pyramid backbones.Features
	r, err := flops.Inspect(backend.Go(), shapes.Make(dtypes.Float32, n, flatSize(size, channels)),
		func(scope *model.Scope, x *Node) map[string]*Node {
			out := New(scope.In("regressor"), features(x, n, size, channels), targets).Width(width).Build()
			pyramid = out.Pyramid
			return out.Targets
		})
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		want := shapes.Make(dtypes.Float32, n, tg.Height, tg.Width, tg.Channels)
		if got := r.Outputs[tg.Name]; !got.Equal(want) {
			t.Errorf("%s: %s, want %s", tg.Name, got, want)
		}
	}
	if got := pyramid.Names(); !slices.Equal(got, []string{"P2", "P3", "P4", "P5"}) {
		t.Errorf("pyramid levels %v", got)
	}
	for i, info := range pyramid.Info {
		s := size / info.Stride
		if want := shapes.Make(dtypes.Float32, n, s, s, width); !pyramid.Maps[info.Name].Shape().Equal(want) || info.Stride != 4<<i {
			t.Errorf("%+v: %s, want %s", info, pyramid.Maps[info.Name].Shape(), want)
		}
	}

	// Hand count: ConvBNReLU(in, out, k) has k*k*in*out conv weights and 2*out BN parameters.
	cbr := func(in, out, k int) int64 { return int64(k*k*in*out + 2*out) }
	var want int64
	for range 4 { // PPM branches, scales 1, 2, 3, 6
		want += cbr(64, width, 1)
	}
	want += cbr(64+4*width, width, 3) // PPM bottleneck
	for _, c := range channels[:3] {
		want += cbr(c, width, 1) + cbr(width, width, 3) // lateral and FPN convs of C2..C4
	}
	for _, tg := range targets {
		want += int64(width*tg.Channels + tg.Channels) // 1x1 projection with bias
	}
	if r.Params != want {
		t.Errorf("%d parameters, hand count %d", r.Params, want)
	}
	// Every target's projection is where its level says.
	for _, path := range []string{"/regressor/proj/dec3/weights", "/regressor/ppm/pool6/conv/weights",
		"/regressor/ppm/bottleneck/bn/scale", "/regressor/fpn/lateral_convs/C2/conv/weights",
		"/regressor/fpn/fpn_convs/C4/bn/offset"} {
		if _, ok := r.Variables[path]; !ok {
			t.Errorf("no variable %s", path)
		}
	}
	for path := range r.Variables {
		if strings.Contains(path, "lateral_convs/C5") || strings.Contains(path, "fpn_convs/C5") {
			t.Errorf("the top level should come from the PPM, found %s", path)
		}
	}
}

func TestNearestLevel(t *testing.T) {
	g := NewGraph(backend.Go(), "test")
	defer g.Finalize()
	x := Parameter(g, "x", shapes.Make(dtypes.Float32, 1, flatSize(256, []int{1, 1, 1, 1})))
	f := features(x, 1, 256, []int{1, 1, 1, 1}) // 64, 32, 16, 8
	for _, tc := range []struct {
		h, w int
		want string
	}{{64, 64, "C2"}, {128, 128, "C2"}, {32, 32, "C3"}, {24, 24, "C3"}, {23, 23, "C3"}, {22, 22, "C4"}, {8, 8, "C5"}, {2, 2, "C5"}, {32, 16, "C3"}} {
		if got := nearestLevel(f, tc.h, tc.w); got != tc.want {
			t.Errorf("%dx%d -> %s, want %s", tc.h, tc.w, got, tc.want)
		}
	}
}

// TestProjectionOrder checks that resizing before or after the 1x1 projection gives the same
// result (the regressor picks the cheaper order).
func TestProjectionOrder(t *testing.T) {
	x := gradcheck.RandomTensor(31, 2, 3, 4, 5)
	store := model.NewStore()
	outs := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x *Node) []*Node {
		few := project(scope.In("p"), x, Target{Name: "few", Channels: 2, Height: 7, Width: 5}) // project, then resize
		// The same conv, resized first.
		w := store.GetVariable("/p/weights").NodeValue(x.Graph())
		b := store.GetVariable("/p/biases").NodeValue(x.Graph())
		y := Dot(nn.ResizeBilinear(x, 7, 5), Reshape(w, 5, 2)).General([]int{3}, nil, []int{0}, nil)
		return []*Node{few, Add(y, Reshape(b, 1, 1, 1, 2))}
	}, x)
	a, b := tensors.MustCopyFlatData[float64](outs[0]), tensors.MustCopyFlatData[float64](outs[1])
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-12 {
			t.Fatalf("element %d: %g projecting first, %g resizing first", i, a[i], b[i])
		}
	}
}

// TestGradients checks the whole regressor (PPM, FPN, projections with both resize orders) in
// training mode (BatchNorm batch statistics) against finite differences, for the backbone
// features and every variable.
func TestGradients(t *testing.T) {
	const n, size = 2, 64
	channels := []int{3, 4, 5} // C3..C5: 8x8, 4x4, 2x2
	x := gradcheck.RandomTensor(32, n, flatSize(size, channels))
	targets := []Target{
		{Name: "top", Channels: 3, Height: 2, Width: 2},
		{Name: "fine", Level: "C3", Channels: 2, Height: 5, Width: 5}, // projected, then resized
		{Name: "mid", Level: "C4", Channels: 6, Height: 6, Width: 6},  // resized, then projected
	}
	for _, ppm := range []bool{true, false} {
		name := map[bool]string{true: "ppm+fpn", false: "fpn"}[ppm]
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{Training: true, MaxElements: 20}, func(scope *model.Scope, in []*Node) *Node {
				out := New(scope, features(in[0], n, size, channels), targets).Width(4).PoolScales(1, 2).PPM(ppm).Done()
				parts := []*Node{}
				for _, tg := range targets {
					parts = append(parts, Reshape(out[tg.Name], n, -1))
				}
				return Concatenate(parts, 1)
			}, x)
		})
	}
}

func TestPanics(t *testing.T) {
	for name, targets := range map[string][]Target{
		"bad name":    {{Name: "a/b", Channels: 1, Height: 1, Width: 1}},
		"duplicate":   {{Name: "a", Channels: 1, Height: 1, Width: 1}, {Name: "a", Channels: 1, Height: 1, Width: 1}},
		"bad level":   {{Name: "a", Level: "C9", Channels: 1, Height: 1, Width: 1}},
		"no channels": {{Name: "a", Height: 1, Width: 1}},
		"none":        nil,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := flops.Inspect(backend.Go(), shapes.Make(dtypes.Float32, 2, flatSize(64, []int{2, 2})),
				func(scope *model.Scope, x *Node) map[string]*Node {
					return New(scope, features(x, 2, 64, []int{2, 2}), targets).Width(4).Done()
				})
			if err == nil {
				t.Error("no error")
			} else {
				t.Log(err)
			}
		})
	}
}
