package nn

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// invStd is 1/sqrt(variance + eps). It avoids Rsqrt, which has no gradient in GoMLX.
func invStd(variance *Node, eps float64) *Node {
	return Inverse(Sqrt(AddScalar(variance, eps)))
}

// meanAndVariance returns the mean and the biased variance of x over axes, keeping the reduced axes.
func meanAndVariance(x *Node, axes ...int) (mean, variance *Node) {
	mean = ReduceAndKeep(x, ReduceMean, axes...)
	variance = ReduceAndKeep(Square(Sub(x, mean)), ReduceMean, axes...)
	return
}

// BatchNormBuilder builds a BatchNorm layer; create it with BatchNorm.
type BatchNormBuilder struct {
	scope    *model.Scope
	x        *Node
	momentum float64
	eps      float64
	zeroInit bool
}

// BatchNorm normalises x [..., C] over all axes but the last, with torch.nn.BatchNorm2d's
// semantics: batch statistics while training (biased variance to normalise, unbiased variance
// into the running average, momentum 0.1, eps 1e-5), running statistics otherwise.
//
// Variables: "scale" and "offset" (trainable), "running_mean" and "running_var" (updated in the
// training graph, not trainable). It does not use the backend's BatchNormForTraining op, which
// the Go backend lacks.
func BatchNorm(scope *model.Scope, x *Node) *BatchNormBuilder {
	return &BatchNormBuilder{scope: scope, x: x, momentum: 0.1, eps: 1e-5}
}

// Momentum of the running statistics (PyTorch's convention: new = (1-m)*old + m*batch).
func (b *BatchNormBuilder) Momentum(m float64) *BatchNormBuilder { b.momentum = m; return b }

// Epsilon added to the variance.
func (b *BatchNormBuilder) Epsilon(eps float64) *BatchNormBuilder { b.eps = eps; return b }

// ZeroInit starts the scale at zero (ResNet's zero_init_residual for the last BN of a block).
func (b *BatchNormBuilder) ZeroInit() *BatchNormBuilder { b.zeroInit = true; return b }

// Done builds the layer.
func (b *BatchNormBuilder) Done() *Node {
	x, scope := b.x, b.scope
	g := x.Graph()
	c := x.Shape().Dim(-1)
	dtype := x.DType()
	scaleInit := OnesInit
	if b.zeroInit {
		scaleInit = ZeroInit
	}
	scale := scope.WithInitializer(scaleInit(scope, 0, 0)).VariableWithShape("scale", shapeOf(dtype, c))
	offset := scope.WithInitializer(ZeroInit(scope, 0, 0)).VariableWithShape("offset", shapeOf(dtype, c))
	runMean := scope.WithInitializer(ZeroInit(scope, 0, 0)).VariableWithShape("running_mean", shapeOf(dtype, c)).SetTrainable(false)
	runVar := scope.WithInitializer(OnesInit(scope, 0, 0)).VariableWithShape("running_var", shapeOf(dtype, c)).SetTrainable(false)

	axes := make([]int, x.Rank()-1)
	for i := range axes {
		axes[i] = i
	}
	var mean, inv *Node
	if IsTraining(scope, g) {
		var variance *Node
		mean, variance = meanAndVariance(x, axes...)
		inv = invStd(variance, b.eps)
		n := x.Shape().Size() / c
		if n < 2 {
			exceptions.Panicf("BatchNorm at %q: needs more than 1 value per channel to train, got %s", scope.Scope(), x.Shape())
		}
		m := b.momentum
		batchMean := StopGradient(Reshape(mean, c))
		batchVar := StopGradient(MulScalar(Reshape(variance, c), float64(n)/float64(n-1)))
		runMean.SetNodeValue(Add(MulScalar(runMean.NodeValue(g), 1-m), MulScalar(batchMean, m)))
		runVar.SetNodeValue(Add(MulScalar(runVar.NodeValue(g), 1-m), MulScalar(batchVar, m)))
	} else {
		mean = channelsLast(runMean.NodeValue(g), x.Rank())
		inv = invStd(channelsLast(runVar.NodeValue(g), x.Rank()), b.eps)
	}
	y := Mul(Sub(x, mean), inv)
	return Add(Mul(y, channelsLast(scale.NodeValue(g), x.Rank())), channelsLast(offset.NodeValue(g), x.Rank()))
}

// GroupNorm normalises x [N, H, W, C] (or [N, L, C]) over groups of C/groups channels and all
// positions, then applies a per-channel scale ("scale", init 1) and offset ("offset", init 0),
// as torch.nn.GroupNorm (eps 1e-5).
func GroupNorm(scope *model.Scope, x *Node, groups int, eps float64) *Node {
	dims := x.Shape().Dimensions
	c := dims[len(dims)-1]
	if c%groups != 0 {
		exceptions.Panicf("GroupNorm at %q: %d channels are not divisible into %d groups", scope.Scope(), c, groups)
	}
	grouped := Reshape(x, append(append([]int{}, dims[:len(dims)-1]...), groups, c/groups)...)
	axes := make([]int, 0, len(dims))
	for i := 1; i < grouped.Rank(); i++ {
		if i != grouped.Rank()-2 {
			axes = append(axes, i)
		}
	}
	mean, variance := meanAndVariance(grouped, axes...)
	y := Reshape(Mul(Sub(grouped, mean), invStd(variance, eps)), dims...)
	return affine(scope, y)
}

// LayerNorm normalises x over its last axis (channels-last), with a learned per-channel
// "scale" and "offset", as torch.nn.LayerNorm(C, eps).
func LayerNorm(scope *model.Scope, x *Node, eps float64) *Node {
	return affine(scope, LayerNormNoParams(x, eps))
}

// LayerNormNoParams normalises x over its last axis without learned parameters: the whitening
// DreamTeacher applies to the teacher's features before regressing them.
func LayerNormNoParams(x *Node, eps float64) *Node {
	mean, variance := meanAndVariance(x, -1)
	return Mul(Sub(x, mean), invStd(variance, eps))
}

// affine applies the learned per-channel scale and offset of a normalisation layer.
func affine(scope *model.Scope, x *Node) *Node {
	g := x.Graph()
	c := x.Shape().Dim(-1)
	scale := scope.WithInitializer(OnesInit(scope, 0, 0)).VariableWithShape("scale", shapeOf(x.DType(), c))
	offset := scope.WithInitializer(ZeroInit(scope, 0, 0)).VariableWithShape("offset", shapeOf(x.DType(), c))
	return Add(Mul(x, channelsLast(scale.NodeValue(g), x.Rank())), channelsLast(offset.NodeValue(g), x.Rank()))
}

// channelsLast reshapes a per-channel vector [C] to [1, ..., 1, C] of the given rank, to
// broadcast against a channels-last tensor (GoMLX broadcasts only between equal ranks).
func channelsLast(v *Node, rank int) *Node {
	dims := make([]int, rank)
	for i := range dims {
		dims[i] = 1
	}
	dims[rank-1] = v.Shape().Dim(0)
	return Reshape(v, dims...)
}

// FiLM modulates normalised features h [N, H, W, C] with per-example scale and shift [N, C]:
// h * (1 + scale) + shift, guided-diffusion's use_scale_shift_norm.
func FiLM(h, scale, shift *Node) *Node {
	n, c := h.Shape().Dim(0), h.Shape().Dim(-1)
	bshape := make([]int, h.Rank())
	for i := range bshape {
		bshape[i] = 1
	}
	bshape[0], bshape[len(bshape)-1] = n, c
	return Add(Mul(h, OnePlus(Reshape(scale, bshape...))), Reshape(shift, bshape...))
}
