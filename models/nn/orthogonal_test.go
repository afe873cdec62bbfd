package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// gram returns the Gram matrix of w viewed as [rows, cols] (cols = its last axis): WᵀW
// [cols, cols] when byColumns, else W Wᵀ [rows, rows].
func gram(w []float64, cols int, byColumns bool) (g []float64, size int) {
	rows := len(w) / cols
	at := func(r, c int) float64 { return w[r*cols+c] }
	if byColumns {
		g = make([]float64, cols*cols)
		for i := range cols {
			for j := range cols {
				for r := range rows {
					g[i*cols+j] += at(r, i) * at(r, j)
				}
			}
		}
		return g, cols
	}
	g = make([]float64, rows*rows)
	for i := range rows {
		for j := range rows {
			for c := range cols {
				g[i*rows+j] += at(i, c) * at(j, c)
			}
		}
	}
	return g, rows
}

// maxDevFromIdentity is max |G - I|.
func maxDevFromIdentity(g []float64, n int) float64 {
	var dev float64
	for i := range n {
		for j := range n {
			want := 0.0
			if i == j {
				want = 1
			}
			dev = max(dev, math.Abs(g[i*n+j]-want))
		}
	}
	return dev
}

// TestOrthogonalInit: weights drawn by OrthogonalInit, seen as [fan_in, out] (HWIO convs,
// [in, out] linear layers), have orthonormal columns when fan_in >= out and orthonormal rows
// otherwise (torch's [out, fan_in] view: W Wᵀ = I when out <= fan_in); the same seed draws
// the same weights, another seed others.
func TestOrthogonalInit(t *testing.T) {
	for _, tc := range []struct {
		dims []int
		dt   dtypes.DType
	}{
		{[]int{3, 3, 4, 8}, dtypes.Float64},   // conv, fan_in 36 > out 8
		{[]int{3, 3, 2, 24}, dtypes.Float32},  // conv, fan_in 18 < out 24
		{[]int{1, 1, 16, 16}, dtypes.Float64}, // square 1x1 conv
		{[]int{6, 40}, dtypes.Float32},        // linear, in < out
		{[]int{40, 6}, dtypes.Float64},        // linear (or an embedding table), in > out
	} {
		t.Run(fmt.Sprintf("%v_%s", tc.dims, tc.dt), func(t *testing.T) {
			draw := func(seed int64) []float64 {
				store := model.NewStore()
				if err := store.SetRNGStateFromSeed(seed); err != nil {
					t.Fatal(err)
				}
				out := model.MustExecOnce(backend.Go(), store, func(scope *model.Scope, g *Graph) *Node {
					// Scalar constants 1..40 in the initialisation graph after the orthogonal
					// one (GoMLX caches them per graph: none made in its While loop, whose
					// counter is int32, may be reused outside it).
					scalars := func(g *Graph, s shapes.Shape) *Node {
						x := Zeros(g, s)
						for i := 1; i <= 40; i++ {
							x = AddScalar(x, float64(i))
						}
						return x
					}
					v := scope.WithInitializer(OrthogonalInit(scope, 0, 0)).VariableWithShape("w", shapes.Make(tc.dt, tc.dims...))
					after := scope.WithInitializer(scalars).VariableWithShape("after", shapes.Make(dtypes.Int32))
					w := ConvertDType(v.NodeValue(g), dtypes.Float64)
					return Add(w, ConvertDType(AddScalar(after.NodeValue(g), -820), dtypes.Float64))
				})
				return tensors.MustCopyFlatData[float64](out)
			}
			w := draw(1)
			cols := tc.dims[len(tc.dims)-1]
			fanIn := len(w) / cols
			g, n := gram(w, cols, fanIn >= cols)
			tol := 1e-12
			if tc.dt == dtypes.Float32 {
				tol = 1e-6
			}
			if dev := maxDevFromIdentity(g, n); dev > tol {
				t.Errorf("fan_in %d, out %d: the Gram matrix [%d x %d] deviates from I by %.3g", fanIn, cols, n, n, dev)
			}
			if !slices.Equal(w, draw(1)) {
				t.Errorf("the same seed drew different weights")
			}
			if slices.Equal(w, draw(2)) {
				t.Errorf("another seed drew the same weights")
			}
		})
	}
}

// TestOrthonormalColumnsIsQR: for fixed random matrices A (one block of columns, two blocks, 37
// blocks of one), Q = OrthonormalColumns(A) has orthonormal columns and R = QᵀA is upper
// triangular with a positive diagonal and QR = A: Q is the unique Q of torch.linalg.qr(A)
// after orthogonal_'s sign fix (q *= sign(diag(r))).
func TestOrthonormalColumnsIsQR(t *testing.T) {
	for _, size := range [][2]int{{7, 4}, {70, 36}, {40, 37}} {
		m, n := size[0], size[1]
		rng := rand.New(rand.NewPCG(uint64(m), uint64(n)))
		a := make([]float64, m*n)
		for i := range a {
			a[i] = rng.Float64()*2 - 1
		}
		out := model.MustExecOnce(backend.Go(), model.NewStore(), func(_ *model.Scope, x *Node) *Node { return OrthonormalColumns(x) },
			tensors.FromFlatDataAndDimensions(a, m, n))
		q := tensors.MustCopyFlatData[float64](out)
		g, _ := gram(q, n, true)
		if dev := maxDevFromIdentity(g, n); dev > 1e-13 {
			t.Errorf("%dx%d: QᵀQ deviates from I by %.3g", m, n, dev)
		}
		r := make([]float64, n*n)
		for i := range n {
			for j := range n {
				for k := range m {
					r[i*n+j] += q[k*n+i] * a[k*n+j]
				}
			}
		}
		var lower, recon float64
		for i := range n {
			if r[i*n+i] <= 0 {
				t.Errorf("%dx%d: R[%d,%d] = %g, want > 0", m, n, i, i, r[i*n+i])
			}
			for j := range i {
				lower = max(lower, math.Abs(r[i*n+j]))
			}
		}
		for k := range m {
			for j := range n {
				var qr float64
				for i := range n {
					qr += q[k*n+i] * r[i*n+j]
				}
				recon = max(recon, math.Abs(qr-a[k*n+j]))
			}
		}
		if lower > 1e-12 || recon > 1e-12 {
			t.Errorf("%dx%d: R's largest entry below the diagonal %.3g, max |QR - A| %.3g", m, n, lower, recon)
		}
	}
}
