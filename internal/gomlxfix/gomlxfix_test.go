package gomlxfix

import (
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

func TestDotGradientHasNoIdentityTranspose(t *testing.T) {
	g := NewGraph(backend.Go(), "dot")
	a := Parameter(g, "a", shapes.Make(dtypes.Float32, 6, 4))
	b := Parameter(g, "b", shapes.Make(dtypes.Float32, 4, 4))
	grads := Gradient(ReduceAllSum(Dot(a, b).Product()), a, b)
	if grads[0].Type() == NodeTypeTranspose {
		t.Errorf("gradient of the lhs is %s, want no identity transpose", grads[0])
	}
	// The rhs gradient transposes the smaller operand (dC [6,4] vs a [6,4]: dC) and the result.
	if grads[1].Type() != NodeTypeTranspose || isIdentityTranspose(grads[1]) {
		t.Errorf("gradient of the rhs is %s, want its transpose kept", grads[1])
	}
	// A general DotGeneral (with a batch axis) keeps GoMLX's gradient, minus identity transposes.
	x := Parameter(g, "x", shapes.Make(dtypes.Float32, 2, 6, 4))
	y := Parameter(g, "y", shapes.Make(dtypes.Float32, 2, 4, 3))
	bg := Gradient(ReduceAllSum(Dot(x, y).General([]int{2}, []int{0}, []int{1}, []int{0})), x)
	if bg[0].Type() == NodeTypeTranspose && isIdentityTranspose(bg[0]) {
		t.Errorf("batched gradient %s is an identity transpose", bg[0])
	}
}

func TestMatMulGradientValues(t *testing.T) {
	// Both branches of matMulVJP (N <= K and N > K) against the batched (unpatched) formula.
	for _, dims := range [][3]int{{5, 3, 2}, {5, 2, 3}} {
		m, k, n := dims[0], dims[1], dims[2]
		a := tensors.FromShape(shapes.Make(dtypes.Float64, m, k))
		b := tensors.FromShape(shapes.Make(dtypes.Float64, k, n))
		fill := func(t *tensors.Tensor, seed float64) {
			tensors.MustMutableFlatData(t, func(f []float64) {
				for i := range f {
					f[i] = float64(i)*0.37 + seed
				}
			})
		}
		fill(a, 0.1)
		fill(b, -0.5)
		out := MustExecOnceN(backend.Go(), func(a, b *Node) []*Node {
			w := Sin(IotaFull(a.Graph(), shapes.Make(dtypes.Float64, m, n)))
			fast := Gradient(ReduceAllSum(Mul(Dot(a, b).Product(), w)), a, b)
			a3, b3 := ExpandAxes(a, 0), ExpandAxes(b, 0)
			ref := Gradient(ReduceAllSum(Mul(Reshape(Dot(a3, b3).General([]int{2}, []int{0}, []int{1}, []int{0}), m, n), w)), a, b)
			return append(fast, ref...)
		}, a, b)
		for i := range 2 {
			f, r := tensors.MustCopyFlatData[float64](out[i]), tensors.MustCopyFlatData[float64](out[i+2])
			for j := range f {
				if d := f[j] - r[j]; d > 1e-12 || d < -1e-12 {
					t.Fatalf("dims %v: gradient %d element %d = %g, want %g", dims, i, j, f[j], r[j])
				}
			}
		}
	}
}

func TestDotGradientValues(t *testing.T) {
	// d/dA sum(A·B) = 1·Bᵀ, d/dB = Aᵀ·1.
	a := tensors.FromValue([][]float64{{1, 2}, {3, 4}})
	b := tensors.FromValue([][]float64{{5, 6}, {7, 8}})
	out := MustExecOnceN(backend.Go(), func(a, b *Node) []*Node {
		return Gradient(ReduceAllSum(Dot(a, b).Product()), a, b)
	}, a, b)
	wantA := [][]float64{{11, 15}, {11, 15}}
	wantB := [][]float64{{4, 4}, {6, 6}}
	if got := out[0].Value().([][]float64); !equal(got, wantA) {
		t.Errorf("dA = %v, want %v", got, wantA)
	}
	if got := out[1].Value().([][]float64); !equal(got, wantB) {
		t.Errorf("dB = %v, want %v", got, wantB)
	}
}

func equal(a, b [][]float64) bool {
	for i := range a {
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}
