package maskrcnn

import (
	"math"

	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// detectron2 initialises every layer of the heads with a zero bias and one of three weight
// initialisers; models/nn's builders take PyTorch's default bias, so the heads build their
// layers here, with the same variable names ("weights" HWIO or [in, out], "biases").

// weightInit returns the initial value of a weight of the given shape.
type weightInit func(scope *model.Scope) model.VariableInitializer

// c2XavierFill is fvcore's c2_xavier_fill: kaiming_uniform_(a=1), i.e. U(±sqrt(3/fan_in)).
func c2XavierFill(fanIn int) weightInit {
	bound := math.Sqrt(3 / float64(fanIn))
	return func(scope *model.Scope) model.VariableInitializer {
		return func(g *Graph, shape shapes.Shape) *Node {
			return MulScalar(AddScalar(scope.RandomUniform(g, shape), -0.5), 2*bound)
		}
	}
}

// normalInit is nn.init.normal_(std).
func normalInit(std float64) weightInit {
	return func(scope *model.Scope) model.VariableInitializer {
		return func(g *Graph, shape shapes.Shape) *Node { return MulScalar(scope.RandomNormal(g, shape), std) }
	}
}

// c2MSRAFill is fvcore's c2_msra_fill: kaiming_normal_(mode="fan_out", relu), std sqrt(2/fan_out).
func c2MSRAFill(fanOut int) weightInit { return normalInit(math.Sqrt(2 / float64(fanOut))) }

func zeroInit(*model.Scope) model.VariableInitializer {
	return func(g *Graph, shape shapes.Shape) *Node { return Zeros(g, shape) }
}

// conv2d is a k x k convolution with stride 1 and "same" padding (k odd), zero bias.
func conv2d(scope *model.Scope, x *Node, out, k int, init weightInit) *Node {
	cin := x.Shape().Dim(3)
	w := scope.WithInitializer(init(scope)).VariableWithShape("weights", shapes.Make(x.DType(), k, k, cin, out))
	y := nn.Conv2DOp(x, w.NodeValue(x.Graph()), nn.ConvConfig{Padding: nn.SymmetricPadding(k / 2)})
	b := scope.WithInitializer(zeroInit(scope)).VariableWithShape("biases", shapes.Make(x.DType(), out))
	return Add(y, Reshape(b.NodeValue(x.Graph()), 1, 1, 1, out))
}

// linear maps the last axis of x [R, in] to out features, zero bias.
func linear(scope *model.Scope, x *Node, out int, init weightInit) *Node {
	in := x.Shape().Dim(-1)
	w := scope.WithInitializer(init(scope)).VariableWithShape("weights", shapes.Make(x.DType(), in, out))
	y := Dot(x, w.NodeValue(x.Graph())).Product()
	b := scope.WithInitializer(zeroInit(scope)).VariableWithShape("biases", shapes.Make(x.DType(), out))
	return Add(y, Reshape(b.NodeValue(x.Graph()), 1, out))
}

// convTranspose2x2 is ConvTranspose2d(kernel 2, stride 2, padding 0) of x [N, H, W, Cin] to
// [N, 2H, 2W, out]. With kernel = stride every output pixel gets exactly one tap, so it is a
// matrix product to 4*out channels followed by depth-to-space — exact, with the gradients of
// DotGeneral and Transpose (GoMLX's Convolve gradient is wrong for even kernels, and input
// dilation has no gradient). Weights are HWIO [2, 2, Cin, out] (PyTorch's [Cin, out, 2, 2]
// transposed to (2, 3, 0, 1)); the bias [out] is shared by the four sub-pixels.
func convTranspose2x2(scope *model.Scope, x *Node, out int, init weightInit) *Node {
	n, h, wd, cin := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2), x.Shape().Dim(3)
	w := scope.WithInitializer(init(scope)).VariableWithShape("weights", shapes.Make(x.DType(), 2, 2, cin, out))
	wm := Reshape(TransposeAllAxes(w.NodeValue(x.Graph()), 2, 0, 1, 3), cin, 4*out) // [Cin, (a, b, out)]
	y := Dot(Reshape(x, n*h*wd, cin), wm).Product()                                 // [NHW, 4*out]
	y = Reshape(y, n, h, wd, 2, 2, out)
	y = TransposeAllAxes(y, 0, 1, 3, 2, 4, 5) // [n, h, a, w, b, out]
	y = Reshape(y, n, 2*h, 2*wd, out)
	b := scope.WithInitializer(zeroInit(scope)).VariableWithShape("biases", shapes.Make(x.DType(), out))
	return Add(y, Reshape(b.NodeValue(x.Graph()), 1, 1, 1, out))
}
