package nn

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// OrthogonalInit is torch.nn.init.orthogonal_ with gain 1 (Saxe et al., 2014), BigGAN's
// G_init / D_init "ortho": the weight, seen as the matrix W [fan_in, out] whose columns are its
// last axis (HWIO convs: [kh*kw*in, out]; linear layers: [in, out]), is the Q factor of the QR
// decomposition of a standard Gaussian matrix of that shape, signs fixed so that R's diagonal
// is positive (the unique Q, uniformly distributed over matrices with orthonormal columns).
// torch flattens its [out, in, kh, kw] weight to [out, in*kh*kw], the transpose of ours up to
// the order of the columns, and takes the Q of whichever orientation is tall: so does this.
// Hence Wᵀ W = I [out, out] when fan_in >= out (torch's rows are orthonormal), and
// W Wᵀ = I [fan_in, fan_in] otherwise.
//
// The Gaussian is drawn with the store's random generator and orthonormalised in the
// initialisation graph, in the weight's dtype as torch (float32 for narrower floats), by block
// Gram-Schmidt with reorthogonalisation ("twice is enough", Giraud et al. 2005; see
// OrthonormalColumns): orthonormal to the dtype's precision (~1e-7 in float32, ~1e-15 in
// float64), with no decomposition op (GoMLX has none) and no host round trip. The fan
// arguments are unused: the shape says everything.
func OrthogonalInit(scope *model.Scope, _, _ int) model.VariableInitializer {
	return func(g *Graph, shape shapes.Shape) *Node {
		return Orthogonal(scope, g, shape)
	}
}

// Orthogonal draws a tensor of the given shape (rank >= 2, float) as OrthogonalInit.
func Orthogonal(scope *model.Scope, g *Graph, shape shapes.Shape) *Node {
	if shape.Rank() < 2 || !shape.DType.IsFloat() {
		exceptions.Panicf("nn.Orthogonal at %q: want a float weight of rank >= 2, got %s", scope.Scope(), shape)
	}
	cols := shape.Dim(-1)
	rows := shape.Size() / cols
	m, n := max(rows, cols), min(rows, cols)
	dt := shape.DType
	if dt != dtypes.Float64 {
		dt = dtypes.Float32
	}
	q := OrthonormalColumns(scope.RandomNormal(g, shapes.Make(dt, m, n)))
	if rows < cols {
		q = Transpose(q, 0, 1)
	}
	return ConvertDType(Reshape(q, shape.Dimensions...), shape.DType)
}

// OrthonormalColumns returns the Q factor of the thin QR decomposition of a [m, n] (m >= n, full
// column rank), with R's diagonal positive: its columns are the Gram-Schmidt orthonormalisation
// of a's columns, in order. It is computed in a's dtype by block classical
// Gram-Schmidt with reorthogonalisation: each step of a While loop takes the next block of
// columns, removes (twice) their components along the columns already done, with matrix
// products, then orthonormalises the block column by column (again twice). It has no gradient
// (initialisation only).
func OrthonormalColumns(a *Node) *Node {
	if a.Rank() != 2 || a.Shape().Dim(0) < a.Shape().Dim(1) || !a.DType().IsFloat() {
		exceptions.Panicf("nn.OrthonormalColumns: want a float matrix [m, n] with m >= n, got %s", a.Shape())
	}
	g := a.Graph()
	n := a.Shape().Dim(1)
	dt := a.DType()
	// The block: the largest divisor of n up to 32, so that blocks tile the columns.
	b := 1
	for d := min(n, 32); d > 1; d-- {
		if n%d == 0 {
			b = d
			break
		}
	}
	// GoMLX caches scalar constants per graph, not per function: a cached scalar (AddScalar,
	// MulScalar, Scalar...) made outside a closure and used inside it, or the reverse, fails
	// ("a node from a different function scope"). The closures below use Const only.
	counter := shapes.Make(dtypes.Int32)
	cond := NewClosure(g, func(g *Graph) []*Node {
		k := Parameter(g, "k", counter)
		_ = Parameter(g, "q", a.Shape())
		return []*Node{LessThan(k, Const(g, int32(n)))}
	})
	// The state q holds the orthonormal columns 0..k-1 and a's columns k..n-1.
	body := NewClosure(g, func(g *Graph) []*Node {
		k := Parameter(g, "k", counter)
		q := Parameter(g, "q", a.Shape())
		rows := Iota(g, shapes.Make(dtypes.Int32, n, b), 0)
		offsets := Iota(g, shapes.Make(dtypes.Int32, n, b), 1)
		sel := ConvertDType(Equal(rows, Add(offsets, k)), dt)                              // [n, b]: column k+i -> i
		done := ConvertDType(LessThan(Iota(g, shapes.Make(dtypes.Int32, n, 1), 0), k), dt) // [n, 1]
		old := Dot(q, sel).Product()                                                       // [m, b]
		v := old
		for range 2 {
			v = Sub(v, Dot(q, Mul(Dot(Transpose(q, 0, 1), v).Product(), done)).Product())
		}
		cols := make([]*Node, 0, b)
		for i := range b {
			c := Slice(v, AxisRange(), AxisElem(i)) // [m, 1]
			if i > 0 {
				u := Concatenate(cols, 1) // [m, i]
				for range 2 {
					c = Sub(c, Dot(u, Dot(Transpose(u, 0, 1), c).Product()).Product())
				}
			}
			cols = append(cols, Div(c, Sqrt(ReduceAllSum(Square(c)))))
		}
		// Replace the block's columns: q + (new - old) selᵀ.
		q = Add(q, Dot(Sub(Concatenate(cols, 1), old), Transpose(sel, 0, 1)).Product())
		return []*Node{Add(k, Const(g, int32(b))), q}
	})
	return StopGradient(While(cond, body, Const(g, int32(0)), a)[1])
}
