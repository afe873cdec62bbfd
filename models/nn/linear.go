package nn

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// LinearBuilder builds a fully connected layer; create it with Linear.
type LinearBuilder struct {
	scope    *model.Scope
	x        *Node
	out      int
	bias     bool
	init     Init
	biasInit Init
	zeroInit bool
	spectral bool
}

// Linear maps the last axis of x [..., in] to out features, with torch.nn.Linear's default
// initialisation. Variables: "weights" [in, out], "biases" [out].
func Linear(scope *model.Scope, x *Node, out int) *LinearBuilder {
	return &LinearBuilder{scope: scope, x: x, out: out, bias: true}
}

// Bias sets whether the layer has a bias (default true).
func (b *LinearBuilder) Bias(bias bool) *LinearBuilder { b.bias = bias; return b }

// Init sets the weights initialiser.
func (b *LinearBuilder) Init(init Init) *LinearBuilder { b.init = init; return b }

// BiasInit sets the bias initialiser (default PyTorch's Linear default).
func (b *LinearBuilder) BiasInit(init Init) *LinearBuilder { b.biasInit = init; return b }

// ZeroInit initialises weights and bias to zero.
func (b *LinearBuilder) ZeroInit() *LinearBuilder { b.zeroInit = true; return b }

// SpectralNorm divides the weights by their spectral norm (see SpectralNorm).
func (b *LinearBuilder) SpectralNorm() *LinearBuilder { b.spectral = true; return b }

// Done builds the layer.
func (b *LinearBuilder) Done() *Node {
	x := b.x
	if x.Rank() < 1 {
		exceptions.Panicf("Linear at %q: x must have at least one axis, got %s", b.scope.Scope(), x.Shape())
	}
	in := x.Shape().Dim(-1)
	init, biasInit := b.init, b.biasInit
	if init == nil {
		init = PyTorchDefaultInit
	}
	if biasInit == nil {
		biasInit = PyTorchDefaultInit
	}
	if b.zeroInit {
		init, biasInit = ZeroInit, ZeroInit
	}
	w := b.scope.WithInitializer(init(b.scope, in, b.out)).VariableWithShape("weights", shapeOf(x.DType(), in, b.out))
	wv := w.NodeValue(x.Graph())
	if b.spectral {
		wv = SpectralNorm(b.scope, wv)
	}
	y := Dot(x, wv).General([]int{x.Rank() - 1}, nil, []int{0}, nil)
	if b.bias {
		bias := b.scope.WithInitializer(biasInit(b.scope, in, b.out)).VariableWithShape("biases", shapeOf(x.DType(), b.out))
		y = Add(y, channelsLast(bias.NodeValue(x.Graph()), y.Rank()))
	}
	return y
}
