package nn

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// ReLU is max(x, 0).
func ReLU(x *Node) *Node { return Max(x, ZerosLike(x)) }

// SiLU (Swish) is x * sigmoid(x).
func SiLU(x *Node) *Node { return Mul(x, Sigmoid(x)) }

// GELU is the exact Gaussian error linear unit x * Φ(x), torch.nn.GELU's default.
func GELU(x *Node) *Node {
	return Mul(x, MulScalar(OnePlus(Erf(DivScalar(x, math.Sqrt2))), 0.5))
}

// Dropout zeroes each element with probability rate while training and scales the rest by
// 1/(1-rate); outside training it is the identity.
func Dropout(scope *model.Scope, x *Node, rate float64) *Node {
	if rate < 0 || rate >= 1 {
		exceptions.Panicf("Dropout at %q: rate must be in [0, 1), got %g", scope.Scope(), rate)
	}
	if rate == 0 || !IsTraining(scope, x.Graph()) {
		return x
	}
	keep := LessThan(scope.RandomUniform(x.Graph(), x.Shape()), Scalar(x.Graph(), x.DType(), 1-rate))
	return Where(keep, DivScalar(x, 1-rate), ZerosLike(x))
}

// DropPath (stochastic depth) zeroes the whole residual branch of each example with
// probability rate while training, scaling kept branches by 1/(1-rate) (timm's drop_path).
func DropPath(scope *model.Scope, x *Node, rate float64) *Node {
	if rate == 0 || !IsTraining(scope, x.Graph()) {
		return x
	}
	dims := make([]int, x.Rank())
	for i := range dims {
		dims[i] = 1
	}
	dims[0] = x.Shape().Dim(0)
	keep := LessThan(scope.RandomUniform(x.Graph(), shapeOf(x.DType(), dims...)), Scalar(x.Graph(), x.DType(), 1-rate))
	mask := ConvertDType(keep, x.DType())
	return Mul(x, MulScalar(mask, 1/(1-rate)))
}
