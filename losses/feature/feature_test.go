package feature

import (
	"math"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/losses"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func t64(dims []int, data ...float64) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

// TestHandComputed checks every term on two levels small enough to work out by hand.
func TestHandComputed(t *testing.T) {
	// Level "a": one image, 1x2 pixels, 2 channels.
	//   teacher pixels (1, 3) and (2, 2): LN gives (-k, k) with k = 1/sqrt(1+eps), and (0, 0).
	//   student pixels (0, 1) and (1, 0).
	sa := t64([]int{1, 1, 2, 2}, 0, 1, 1, 0)
	ta := t64([]int{1, 1, 2, 2}, 1, 3, 2, 2)
	k := 1 / math.Sqrt(1+1e-5)
	mseA := ((0+k)*(0+k) + (1-k)*(1-k) + 1 + 0) / 4
	// Attention maps: student (1, 1)/sqrt(2); raw teacher (10, 8)/sqrt(164).
	qs, n := 1/math.Sqrt2, math.Sqrt(164)
	atA := math.Hypot(qs-10/n, qs-8/n)

	// Level "b": two images, 1x2 pixels, 1 channel. LN over one channel is 0, so MSE = mean(s²).
	//   image 0: student (1, 0), teacher (0, 2): maps (1, 0) and (0, 1), distance sqrt(2).
	//   image 1: student (1, 1), teacher (3, 3): equal maps, distance 0.
	sb := t64([]int{2, 1, 2, 1}, 1, 0, 1, 1)
	tb := t64([]int{2, 1, 2, 1}, 0, 2, 3, 3)
	mseB := (1 + 0 + 1 + 1) / 4.0
	atB := (math.Sqrt2 + 0) / 2

	want := map[string]float64{
		"mse/a": mseA, "at/a": atA, "mse/b": mseB, "at/b": atB,
		KeyMSE: (mseA + mseB) / 2, KeyAT: (atA + atB) / 2,
		losses.Total: (mseA+mseB)/2 + 10*(atA+atB)/2,
	}
	var names []string
	outs := MustExecOnceN(backend.Go(), func(sa, sb, ta, tb *Node) []*Node {
		terms := Loss(map[string]*Node{"a": sa, "b": sb}, map[string]*Node{"a": ta, "b": tb}, DefaultConfig())
		names = terms.Names()
		nodes := make([]*Node, len(names))
		for i, name := range names {
			nodes[i] = terms[name]
		}
		return nodes
	}, sa, sb, ta, tb)
	if len(names) != len(want) || names[0] != losses.Total {
		t.Errorf("terms %v, want the keys of %v with %q first", names, want, losses.Total)
	}
	for i, name := range names {
		got := outs[i].Value().(float64)
		if math.Abs(got-want[name]) > 1e-12 {
			t.Errorf("%s = %.15g, want %.15g", name, got, want[name])
		}
	}
}

// TestATInvariances: AT ignores the channel count and the scale of each example's features.
func TestATInvariances(t *testing.T) {
	s := gradcheck.RandomTensor(1, 2, 3, 3, 4)
	got := MustExecOnce(backend.Go(), func(s *Node) *Node {
		// Teacher: the student's attention map, as one channel scaled by 5 (so Q is 25x).
		teacher := MulScalar(Sqrt(ReduceAndKeep(Square(s), ReduceSum, -1)), 5)
		return AT(s, teacher)
	}, s).Value().(float64)
	if math.Abs(got) > 1e-9 {
		t.Errorf("AT of a rescaled copy of the attention map = %g, want 0", got)
	}
}

// TestGradients checks the student's gradient of every term in float64. The teacher's inputs
// get no gradient (the teacher is frozen), so only the student's are checked.
func TestGradients(t *testing.T) {
	sa, ta := gradcheck.RandomTensor(2, 2, 3, 4, 5), gradcheck.RandomTensor(3, 2, 3, 4, 5)
	sb, tb := gradcheck.RandomTensor(4, 2, 2, 2, 3), gradcheck.RandomTensor(5, 2, 2, 2, 3)
	for _, key := range []string{losses.Total, KeyMSE, KeyAT} {
		t.Run(key, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{Inputs: []int{0, 1}}, func(_ *model.Scope, in []*Node) *Node {
				return Loss(map[string]*Node{"a": in[0], "b": in[1]}, map[string]*Node{"a": in[2], "b": in[3]}, DefaultConfig())[key]
			}, sa, sb, ta, tb)
		})
	}
	t.Run("teacher-frozen", func(t *testing.T) {
		grads := MustExecOnceN(backend.Go(), func(s, tt *Node) []*Node {
			return Gradient(Loss(map[string]*Node{"a": s}, map[string]*Node{"a": tt}, DefaultConfig()).Loss(), tt)
		}, sa, ta)
		for _, v := range tensors.MustCopyFlatData[float64](grads[0]) {
			if v != 0 {
				t.Fatalf("the teacher's features get a gradient")
			}
		}
	})
}

func TestMismatchPanics(t *testing.T) {
	s := t64([]int{1, 1, 1, 2}, 1, 2)
	for name, fn := range map[string]func(a, b *Node) *Node{
		"levels": func(a, b *Node) *Node {
			return Loss(map[string]*Node{"a": a}, map[string]*Node{"b": b}, DefaultConfig()).Loss()
		},
		"shapes": func(a, b *Node) *Node {
			return Loss(map[string]*Node{"a": a}, map[string]*Node{"a": Reshape(b, 1, 1, 2, 1)}, DefaultConfig()).Loss()
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			MustExecOnce(backend.Go(), fn, s, s)
		})
	}
}

// TestGradientWhereEqual: where the student's attention map equals the teacher's, the norm in AT
// is at its kink; the gradient must be finite (zero), not NaN.
func TestGradientWhereEqual(t *testing.T) {
	s := gradcheck.RandomTensor(6, 2, 3, 3, 4)
	g := MustExecOnce(backend.Go(), func(s *Node) *Node {
		return Gradient(Loss(map[string]*Node{"a": s}, map[string]*Node{"a": s}, DefaultConfig())[KeyAT], s)[0]
	}, s)
	for _, v := range tensors.MustCopyFlatData[float64](g) {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e-9 {
			t.Fatalf("gradient %g where the maps are equal", v)
		}
	}
}
