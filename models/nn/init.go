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

// TruncNormalInit returns timm's trunc_normal_(std) init, truncated at ±2 std.
func TruncNormalInit(std float64) Init {
	return func(scope *model.Scope, _, _ int) model.VariableInitializer {
		return func(g *Graph, shape shapes.Shape) *Node {
			// Redraw the values outside ±2 a few times; the few left (probability 0.046^4) are clipped.
			x := scope.RandomNormal(g, shape)
			for range 3 {
				outside := GreaterThan(Abs(x), Scalar(g, shape.DType, 2))
				x = Where(outside, scope.RandomNormal(g, shape), x)
			}
			return MulScalar(ClipScalar(x, -2, 2), std)
		}
	}
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
