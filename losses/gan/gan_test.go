package gan

import (
	"math"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/losses"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

var (
	dReal = []float64{2, 0.5, -1}
	dFake = []float64{-2, 0.3, 1.5}
)

func softplus(x float64) float64 { return math.Log1p(math.Exp(x)) }

func mean(f func(float64) float64, xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += f(x)
	}
	return s / float64(len(xs))
}

// run evaluates the terms on D outputs real and fake ([N]).
func run(t *testing.T, fn func(real, fake *Node) losses.Terms, real, fake []float64) map[string]float64 {
	t.Helper()
	var names []string
	outs := MustExecOnceN(backend.Go(), func(r, f *Node) []*Node {
		terms := fn(r, f)
		names = terms.Names()
		nodes := make([]*Node, len(names))
		for i, n := range names {
			nodes[i] = terms[n]
		}
		return nodes
	}, real, fake)
	got := map[string]float64{}
	for i, n := range names {
		got[n] = outs[i].Value().(float64)
	}
	return got
}

func TestHandComputed(t *testing.T) {
	hingeReal := (0 + 0.5 + 2) / 3.0 // relu(1 - (2, 0.5, -1))
	hingeFake := (0 + 1.3 + 2.5) / 3.0
	nsReal := mean(func(x float64) float64 { return softplus(-x) }, dReal)
	nsFake := mean(softplus, dFake)
	for _, tc := range []struct {
		name string
		fn   func(real, fake *Node) losses.Terms
		want map[string]float64
	}{
		{"hinge/D", func(r, f *Node) losses.Terms { return DiscriminatorLoss(Hinge, r, f) }, map[string]float64{
			"loss": hingeReal + hingeFake, KeyReal: hingeReal, KeyFake: hingeFake, KeyDReal: 0.5, KeyDFake: -0.2 / 3}},
		{"hinge/G", func(_, f *Node) losses.Terms { return GeneratorLoss(Hinge, f) }, map[string]float64{
			"loss": 0.2 / 3, KeyDFake: -0.2 / 3}},
		{"nonsaturating/D", func(r, f *Node) losses.Terms { return DiscriminatorLoss(NonSaturating, r, f) }, map[string]float64{
			"loss": nsReal + nsFake, KeyReal: nsReal, KeyFake: nsFake, KeyDReal: 0.5, KeyDFake: -0.2 / 3}},
		{"nonsaturating/G", func(_, f *Node) losses.Terms { return GeneratorLoss(NonSaturating, f) }, map[string]float64{
			"loss": mean(func(x float64) float64 { return softplus(-x) }, dFake), KeyDFake: -0.2 / 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, tc.fn, dReal, dFake)
			if len(got) != len(tc.want) {
				t.Errorf("terms %v, want the keys of %v", got, tc.want)
			}
			for k, w := range tc.want {
				if g, ok := got[k]; !ok || math.Abs(g-w) > 1e-12 {
					t.Errorf("%s = %.15g, want %.15g", k, g, w)
				}
			}
		})
	}
}

// TestNonSaturatingIsStable: confident logits give finite losses (softplus is not log(1+exp)).
func TestNonSaturatingIsStable(t *testing.T) {
	got := run(t, func(r, f *Node) losses.Terms { return DiscriminatorLoss(NonSaturating, r, f) }, []float64{800, -800}, []float64{800, -800})
	// real: softplus(-800) + softplus(800) = 800; fake: the same.
	if math.Abs(got["real"]-400) > 1e-9 || math.Abs(got["fake"]-400) > 1e-9 {
		t.Errorf("terms %v, want real = fake = 400", got)
	}
}

// TestHingeMargins: the hinge D loss is 0 once real logits are >= 1 and fake ones <= -1.
func TestHingeMargins(t *testing.T) {
	got := run(t, func(r, f *Node) losses.Terms { return DiscriminatorLoss(Hinge, r, f) }, []float64{1, 3}, []float64{-1, -5})
	if got["loss"] != 0 {
		t.Errorf("loss %g, want 0", got["loss"])
	}
}

func TestGradients(t *testing.T) {
	// Logits away from the hinge's kinks at ±1.
	r := tensors.FromValue([]float64{0.2, -0.7, 1.8, 0.4})
	f := tensors.FromValue([]float64{-0.3, 0.6, -1.6, 2.1})
	for _, kind := range []Loss{Hinge, NonSaturating} {
		t.Run(kind.String(), func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{}, func(_ *model.Scope, in []*Node) *Node {
				return Add(DiscriminatorLoss(kind, in[0], in[1]).Loss(), MulScalar(GeneratorLoss(kind, in[1]).Loss(), 0.3))
			}, r, f)
		})
	}
}

func TestParseLoss(t *testing.T) {
	for name, want := range map[string]Loss{"hinge": Hinge, "NS": NonSaturating, "nonsaturating": NonSaturating} {
		if got, err := ParseLoss(name); err != nil || got != want {
			t.Errorf("ParseLoss(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseLoss("wgan"); err == nil || !strings.Contains(err.Error(), "hinge, nonsaturating") {
		t.Errorf("ParseLoss(wgan): %v", err)
	}
}
