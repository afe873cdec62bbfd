package distill

import (
	"math"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func t64(dims []int, data ...float64) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

// Two pixels, two classes, τ = 4:
//
//	pixel 0: student (0, 4 ln 3) -> q = (1/4, 3/4); teacher (0, 4 ln 2) -> p = (1/3, 2/3)
//	pixel 1: student (4 ln 2, 4 ln 2) -> q = (1/2, 1/2); teacher (4 ln 4, 0) -> p = (4/5, 1/5)
var (
	student = t64([]int{1, 1, 2, 2}, 0, 4*math.Log(3), 4*math.Log(2), 4*math.Log(2))
	teacher = t64([]int{1, 1, 2, 2}, 0, 4*math.Log(2), 4*math.Log(4), 0)
	h0      = -(math.Log(0.25)/3 + 2*math.Log(0.75)/3)
	h1      = -(0.8*math.Log(0.5) + 0.2*math.Log(0.5))
)

func TestHandComputed(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(s, t *Node) *Node
		want float64
	}{
		{"mean", func(s, t *Node) *Node { return New(s, t).Done() }, (h0 + h1) / 2},
		{"tau-squared", func(s, t *Node) *Node { return New(s, t).ScaleByTauSquared(true).Done() }, 16 * (h0 + h1) / 2},
		{"mask-bool", func(s, t *Node) *Node {
			mask := Const(s.Graph(), [][][]bool{{{false, true}}})
			return New(s, t).Mask(mask).Done()
		}, h1},
		{"mask-weights", func(s, t *Node) *Node {
			mask := Const(s.Graph(), [][][]float64{{{0.5, 0.25}}})
			return New(s, t).Mask(mask).Done()
		}, (0.5*h0 + 0.25*h1) / 0.75},
		{"mask-empty", func(s, t *Node) *Node {
			mask := Const(s.Graph(), [][][]bool{{{false, false}}})
			return New(s, t).Mask(mask).Done()
		}, 0},
		{"tau-1", func(s, t *Node) *Node { return New(MulScalar(s, 0.25), MulScalar(t, 0.25)).Tau(1).Done() }, (h0 + h1) / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := MustExecOnce(backend.Go(), tc.fn, student, teacher).Value().(float64)
			if math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("got %.15g, want %.15g", got, tc.want)
			}
		})
	}
}

// TestMinimum: the cross-entropy is smallest, at the teacher's entropy, when the student's
// logits equal the teacher's.
func TestMinimum(t *testing.T) {
	got := MustExecOnce(backend.Go(), func(t *Node) *Node { return New(t, t).Done() }, teacher).Value().(float64)
	entropy := func(p ...float64) float64 {
		e := 0.0
		for _, v := range p {
			e -= v * math.Log(v)
		}
		return e
	}
	want := (entropy(1.0/3, 2.0/3) + entropy(0.8, 0.2)) / 2
	if math.Abs(got-want) > 1e-12 {
		t.Errorf("H(p, p) = %.15g, want the entropy %.15g", got, want)
	}
}

func TestGradients(t *testing.T) {
	s, tt := gradcheck.RandomTensor(1, 2, 3, 3, 5), gradcheck.RandomTensor(2, 2, 3, 3, 5)
	mask := gradcheck.RandomTensor(3, 2, 3, 3)
	for name, fn := range map[string]func(in []*Node) *Node{
		"plain": func(in []*Node) *Node { return New(in[0], in[1]).Done() },
		"tau1":  func(in []*Node) *Node { return New(in[0], in[1]).Tau(1).Done() },
		"masked": func(in []*Node) *Node {
			return New(in[0], in[1]).Mask(GreaterThan(in[2], ScalarZero(in[2].Graph(), in[2].DType()))).Done()
		},
	} {
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{Inputs: []int{0}}, func(_ *model.Scope, in []*Node) *Node { return fn(in) }, s, tt, mask)
		})
	}
}
