package nn

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// Init makes a variable initialiser for a weight with the given fan-in and fan-out
// (for a conv: kh*kw*in/groups and kh*kw*out/groups; for a linear layer: in and out).
type Init func(scope *model.Scope, fanIn, fanOut int) model.VariableInitializer

func shapeOf(dtype dtypes.DType, dims ...int) shapes.Shape { return shapes.Make(dtype, dims...) }

// uniform returns values uniform in [-bound, bound).
func uniform(scope *model.Scope, bound float64) model.VariableInitializer {
	return func(g *Graph, shape shapes.Shape) *Node {
		u := scope.RandomUniform(g, shape)
		return MulScalar(AddScalar(u, -0.5), 2*bound)
	}
}

func normal(scope *model.Scope, std float64) model.VariableInitializer {
	return func(g *Graph, shape shapes.Shape) *Node {
		return MulScalar(scope.RandomNormal(g, shape), std)
	}
}

// PyTorchDefaultInit is the default of torch.nn.Conv2d and torch.nn.Linear for weights and
// biases: kaiming_uniform with a=sqrt(5), i.e. uniform in ±1/sqrt(fan_in).
func PyTorchDefaultInit(scope *model.Scope, fanIn, _ int) model.VariableInitializer {
	return uniform(scope, 1/math.Sqrt(float64(max(fanIn, 1))))
}

// KaimingNormalFanOut is torchvision ResNet's conv init: normal with std sqrt(2/fan_out).
func KaimingNormalFanOut(scope *model.Scope, _, fanOut int) model.VariableInitializer {
	return normal(scope, math.Sqrt(2/float64(max(fanOut, 1))))
}

// XavierUniformInit is Glorot's uniform init: ±sqrt(6/(fan_in+fan_out)).
func XavierUniformInit(scope *model.Scope, fanIn, fanOut int) model.VariableInitializer {
	return uniform(scope, math.Sqrt(6/float64(max(fanIn+fanOut, 1))))
}

// TruncNormalInit returns timm's trunc_normal_(std) init, truncated at ±2 std, by the inverse
// CDF: u uniform in [Φ(-2), Φ(2)], x = √2·erfinv(2u-1) (one uniform draw per value).
func TruncNormalInit(std float64) Init {
	return func(scope *model.Scope, _, _ int) model.VariableInitializer {
		return func(g *Graph, shape shapes.Shape) *Node {
			lo := 0.5 * (1 + math.Erf(-2/math.Sqrt2))
			u := AddScalar(MulScalar(scope.RandomUniform(g, shape), 1-2*lo), lo)
			x := MulScalar(ErfInv(AddScalar(MulScalar(u, 2), -1)), math.Sqrt2)
			return MulScalar(ClipScalar(x, -2, 2), std)
		}
	}
}

// ErfInv is the inverse error function on (-1, 1), by M. Giles' single-precision rational
// approximation ("Approximating the erfinv function", 2010), accurate to ~1e-7 relative: enough
// for initialisation, not for gradients (none is defined through it).
func ErfInv(x *Node) *Node {
	g := x.Graph()
	w := Neg(Log(OneMinus(Square(x)))) // -log((1-x)(1+x))
	poly := func(t *Node, coeffs []float64) *Node {
		p := Scalar(g, x.DType(), coeffs[0])
		for _, c := range coeffs[1:] {
			p = AddScalar(Mul(p, t), c)
		}
		return p
	}
	central := poly(AddScalar(w, -2.5), []float64{2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
		0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941})
	tail := poly(AddScalar(Sqrt(Max(w, Scalar(g, x.DType(), 5))), -3), []float64{-0.000200214257, 0.000100950558,
		0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682})
	p := Where(LessThan(w, Scalar(g, x.DType(), 5)), central, tail)
	return StopGradient(Mul(p, x))
}

// ZeroInit initialises to zeros.
func ZeroInit(_ *model.Scope, _, _ int) model.VariableInitializer {
	return func(g *Graph, shape shapes.Shape) *Node { return Zeros(g, shape) }
}

// OnesInit initialises to ones.
func OnesInit(_ *model.Scope, _, _ int) model.VariableInitializer {
	return func(g *Graph, shape shapes.Shape) *Node { return Ones(g, shape) }
}

// ConstInit initialises every element to v.
func ConstInit(v float64) Init {
	return func(_ *model.Scope, _, _ int) model.VariableInitializer {
		return func(g *Graph, shape shapes.Shape) *Node {
			return BroadcastToShape(Scalar(g, shape.DType, v), shape)
		}
	}
}
