package interpreter

import (
	"math"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// pyramid names three levels of a 16x16 image at strides 4, 2 and 1, as tensors in
// (name-unsorted) order.
var pyramid = []struct {
	name     string
	side, ch int
}{{"dec_s4", 4, 6}, {"dec_s2", 8, 5}, {"output/level0/block1", 16, 3}}

func featsOf(in []*Node) map[string]*Node {
	feats := map[string]*Node{}
	for i, p := range pyramid {
		feats[p.name] = in[i]
	}
	return feats
}

func TestShapesAndVariables(t *testing.T) {
	for _, tc := range []struct {
		cfg          Config
		wantH, wantW int
	}{
		{Config{Width: 8}, 16, 16},
		{Config{Width: 8, OutHeight: 24, OutWidth: 20}, 24, 20},
	} {
		store := model.NewStore()
		inputs := []*tensors.Tensor{
			tensors.FromShape(shapes.Make(dtypes.Float32, 2, 4, 4, 6)),
			tensors.FromShape(shapes.Make(dtypes.Float32, 2, 8, 8, 5)),
			tensors.FromShape(shapes.Make(dtypes.Float32, 2, 16, 16, 3)),
		}
		out := model.MustExecOnce(backend.Go(), store, func(scope *model.Scope, in []*Node) *Node {
			store.SetTraining(in[0].Graph(), true)
			return Build(scope.In("interpreter"), featsOf(in), 7, tc.cfg)
		}, inputs)
		if want := shapes.Make(dtypes.Float32, 2, tc.wantH, tc.wantW, 7); !out.Shape().Equal(want) {
			t.Errorf("config %+v: logits %s, want %s", tc.cfg, out.Shape(), want)
		}
		want := map[string][]int{
			"/interpreter/lateral/dec_s4/weights":               {1, 1, 6, 8},
			"/interpreter/lateral/output_level0_block1/weights": {1, 1, 3, 8},
			"/interpreter/fuse/depthwise/weights":               {3, 3, 1, 24},
			"/interpreter/fuse/pointwise/weights":               {1, 1, 24, 8},
			"/interpreter/fuse/norm/scale":                      {8},
			"/interpreter/logits/biases":                        {7},
		}
		for path, dims := range want {
			v := store.GetVariable(path)
			if v == nil {
				t.Errorf("missing variable %s", path)
			} else if !v.Shape().Equal(shapes.Make(dtypes.Float32, dims...)) {
				t.Errorf("%s: shape %s, want %v", path, v.Shape(), dims)
			}
		}
	}
}

func TestNormGroups(t *testing.T) {
	for width, want := range map[int]int{256: 32, 64: 32, 32: 32, 16: 16, 8: 8, 24: 8, 3: 1} {
		if got := NormGroups(width); got != want {
			t.Errorf("NormGroups(%d) = %d, want %d", width, got, want)
		}
	}
}

// The whole head, in float64, against finite differences: inputs and every variable, with
// dropout active (the gradient checker restores the RNG state, so the mask is fixed).
func TestGradients(t *testing.T) {
	var inputs []*tensors.Tensor
	for i, p := range pyramid {
		inputs = append(inputs, gradcheck.RandomTensor(uint64(i+1), 2, p.side/2, p.side/2, p.ch))
	}
	gradcheck.Check(t, gradcheck.Options{Training: true, MaxElements: 24}, func(scope *model.Scope, in []*Node) *Node {
		return Build(scope.In("interpreter"), featsOf(in), 3, Config{Width: 4, OutHeight: 10, OutWidth: 6})
	}, inputs...)
}

// TeacherLogits is the interpreter in inference mode even in a training graph, and passes no
// gradient.
func TestTeacherLogits(t *testing.T) {
	x := []*tensors.Tensor{gradcheck.RandomTensor(1, 2, 2, 2, 6), gradcheck.RandomTensor(2, 2, 4, 4, 5), gradcheck.RandomTensor(3, 2, 8, 8, 3)}
	store := model.NewStore()
	cfg := Config{Width: 8, Dropout: 0.5}
	runMode := func(training bool) []*tensors.Tensor {
		e := model.MustNewExec(backend.Go(), store, func(scope *model.Scope, in []*Node) []*Node {
			g := in[0].Graph()
			store.SetTraining(g, training)
			var logits *Node
			if training {
				logits = TeacherLogits(scope.In("teacher_interpreter"), featsOf(in), 4, cfg)
			} else {
				logits = Build(scope.In("teacher_interpreter"), featsOf(in), 4, cfg)
			}
			w := store.GetVariable("/teacher_interpreter/logits/weights").NodeValue(g)
			return append([]*Node{logits}, Gradient(ReduceAllSum(Square(logits)), in[0], w)...)
		})
		return e.MustCall(x[0], x[1], x[2])
	}
	inference := runMode(false)
	training := runMode(true)
	a, b := tensors.MustCopyFlatData[float64](inference[0]), tensors.MustCopyFlatData[float64](training[0])
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-12 {
			t.Fatalf("logit %d: %g in inference, %g as the frozen teacher in a training graph", i, a[i], b[i])
		}
	}
	for i, gr := range training[1:] {
		for _, v := range tensors.MustCopyFlatData[float64](gr) {
			if v != 0 {
				t.Fatalf("gradient %d through the teacher's logits: %g, want 0", i, v)
			}
		}
	}
	p := model.MustExecOnce(backend.Go(), model.NewStore(), func(_ *model.Scope, z *Node) *Node { return SoftLabels(z, 4) },
		tensors.FromFlatDataAndDimensions([]float64{0, 4, 8}, 1, 3))
	got := tensors.MustCopyFlatData[float64](p)
	e1, e2 := math.Exp(1), math.Exp(2)
	for i, want := range []float64{1 / (1 + e1 + e2), e1 / (1 + e1 + e2), e2 / (1 + e1 + e2)} {
		if math.Abs(got[i]-want) > 1e-12 {
			t.Errorf("soft label %d: %g, want %g", i, got[i], want)
		}
	}
}
