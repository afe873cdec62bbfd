package nn

import (
	"math"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// TestSpectralNormTrainingGradient checks SpectralNorm in training mode against its definition,
// torch.nn.utils.spectral_norm's: one power iteration from the stored u,
//
//	v = normalize(Wᵀ u), u' = normalize(W v), σ = u'ᵀ W v, output W/σ,
//
// computed without gradient, so that the gradient of the output with respect to W is that of
// W/σ(W) with u' and v held constant. Here W is a random (far from converged) HWIO kernel, and
// the gradient of sum(P ∘ W/σ) is compared with central finite differences of that function of W
// with u' and v fixed, computed here in plain Go. Without the StopGradient in SpectralNorm the
// gradient also flows through u' and v and this test fails.
func TestSpectralNormTrainingGradient(t *testing.T) {
	const kh, kw, in, out = 3, 3, 2, 4
	rest := kh * kw * in
	w := gradcheck.RandomTensor(21, kh, kw, in, out)
	p := gradcheck.RandomTensor(22, kh, kw, in, out)
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(5); err != nil {
		t.Fatal(err)
	}
	exec := model.MustNewExec(backend.Go(), store, func(scope *model.Scope, w, p *Node) []*Node {
		store.SetTraining(w.Graph(), true)
		y := SpectralNorm(scope.In("sn"), w)
		return []*Node{y, Gradient(ReduceAllSum(Mul(y, p)), w)[0]}
	})
	variable := func(name string) []float64 {
		for v := range store.IterVariables() {
			if strings.HasSuffix(v.Path(), "/"+name) {
				return tensors.MustCopyFlatData[float64](v.MustValue())
			}
		}
		t.Fatalf("no variable %q", name)
		return nil
	}
	exec.MustCall(w, p) // creates u and v at random, then takes one step
	u0 := variable("sn_u")
	outs := exec.MustCall(w, p)
	u, v := variable("sn_u"), variable("sn_v")

	// mat is PyTorch's weight.view(out, -1) of the HWIO kernel: mat[o][r] = w[r*out+o].
	wf := tensors.MustCopyFlatData[float64](w)
	mat := func(wf []float64, o, r int) float64 { return wf[r*out+o] }
	normalize := func(x []float64) []float64 {
		n := 0.0
		for _, e := range x {
			n += e * e
		}
		n = max(math.Sqrt(n), 1e-12)
		y := make([]float64, len(x))
		for i, e := range x {
			y[i] = e / n
		}
		return y
	}
	// The stored vectors are one power iteration from the previous u.
	wantV, wantU := make([]float64, rest), make([]float64, out)
	for r := range rest {
		for o := range out {
			wantV[r] += mat(wf, o, r) * u0[o]
		}
	}
	wantV = normalize(wantV)
	for o := range out {
		for r := range rest {
			wantU[o] += mat(wf, o, r) * wantV[r]
		}
	}
	wantU = normalize(wantU)
	checkVec(t, "v", v, wantV, 1e-12)
	checkVec(t, "u", u, wantU, 1e-12)

	sigma := func(wf []float64) float64 {
		s := 0.0
		for o := range out {
			for r := range rest {
				s += u[o] * mat(wf, o, r) * v[r]
			}
		}
		return s
	}
	pf := tensors.MustCopyFlatData[float64](p)
	loss := func(wf []float64) float64 {
		s, l := sigma(wf), 0.0
		for i := range wf {
			l += pf[i] * wf[i] / s
		}
		return l
	}
	// Forward: W/σ with these u and v.
	s := sigma(wf)
	wantY := make([]float64, len(wf))
	for i := range wf {
		wantY[i] = wf[i] / s
	}
	checkVec(t, "W/σ", tensors.MustCopyFlatData[float64](outs[0]), wantY, 1e-12)

	// Gradient: finite differences of W/σ(W) with u and v fixed.
	const eps = 1e-6
	numeric := make([]float64, len(wf))
	for i := range wf {
		pert := append([]float64(nil), wf...)
		pert[i] = wf[i] + eps
		lp := loss(pert)
		pert[i] = wf[i] - eps
		numeric[i] = (lp - loss(pert)) / (2 * eps)
	}
	analytic := tensors.MustCopyFlatData[float64](outs[1])
	var diff2, norm2 float64
	for i := range numeric {
		diff2 += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i])
		norm2 += numeric[i] * numeric[i]
	}
	if rel := math.Sqrt(diff2 / norm2); rel > 1e-7 {
		t.Errorf("gradient of W/σ: relative error %.3g against finite differences with u, v fixed; "+
			"the power-iteration vectors must be constants (StopGradient)", rel)
	} else {
		t.Logf("gradient of W/σ: relative error %.2e", rel)
	}
}

func checkVec(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", name, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol {
			t.Fatalf("%s[%d] = %.15g, want %.15g", name, i, got[i], want[i])
		}
	}
}
