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

	var y *Node
	if IsTraining(scope, g) {
		// With splits > 1 the batch is viewed as [splits, N/splits, ...]: axis 0 separates the
		// parts, whose statistics are reduced over the other axes but the channels.
		splits := model.GetParamOr(scope, splitsParam, 1)
		xs := x
		if splits > 1 {
			if x.Rank() < 2 || x.Shape().Dim(0)%splits != 0 {
				exceptions.Panicf("BatchNorm at %q: a batch %s does not split into %d equal parts", scope.Scope(), x.Shape(), splits)
			}
			dims := append([]int{splits, x.Shape().Dim(0) / splits}, x.Shape().Dimensions[1:]...)
			xs = Reshape(x, dims...)
		}
		axes := make([]int, 0, xs.Rank()-1)
		for i := range xs.Rank() - 1 {
			if splits <= 1 || i > 0 {
				axes = append(axes, i)
			}
		}
		mean, variance := meanAndVariance(xs, axes...)
		y = Reshape(Mul(Sub(xs, mean), invStd(variance, b.eps)), x.Shape().Dimensions...)
		n := x.Shape().Size() / c / max(splits, 1)
		if n < 2 {
			exceptions.Panicf("BatchNorm at %q: needs more than 1 value per channel to train, got %s in %d parts", scope.Scope(), x.Shape(), max(splits, 1))
		}
		// The running statistics take the mean over the parts of their batch statistics (as
		// the average of n devices' running statistics would be).
		m := b.momentum
		batchMean := StopGradient(Reshape(ReduceMean(Reshape(mean, -1, c), 0), c))
		batchVar := StopGradient(MulScalar(Reshape(ReduceMean(Reshape(variance, -1, c), 0), c), float64(n)/float64(n-1)))
		runMean.SetNodeValue(Add(MulScalar(runMean.NodeValue(g), 1-m), MulScalar(batchMean, m)))
		runVar.SetNodeValue(Add(MulScalar(runVar.NodeValue(g), 1-m), MulScalar(batchVar, m)))
	} else {
		mean := channelsLast(runMean.NodeValue(g), x.Rank())
		y = Mul(Sub(x, mean), invStd(channelsLast(runVar.NodeValue(g), x.Rank()), b.eps))
	}
	return Add(Mul(y, channelsLast(scale.NodeValue(g), x.Rank())), channelsLast(offset.NodeValue(g), x.Rank()))
}

// splitsParam is the scope setting SplitBatchNorm sets.
const splitsParam = "bn_splits"

// SplitBatchNorm makes every BatchNorm under scope normalise, while training, each of n equal
// consecutive parts of the batch (axis 0) with the part's own statistics, as n devices without
// synchronised BatchNorm do; the running statistics follow the mean of the parts' statistics.
// MoCo's "shuffle BN" needs it on one device: the batch statistics of a query and of its
// positive key must come from different subsets of the batch. n <= 1 is plain BatchNorm.
func SplitBatchNorm(scope *model.Scope, n int) { scope.SetParam(splitsParam, n) }

// GroupNorm normalises x [N, H, W, C] (or [N, L, C]) over groups of C/groups channels and all
// positions, then applies a per-channel scale ("scale", init 1) and offset ("offset", init 0),
// as torch.nn.GroupNorm (eps 1e-5).
//
// The statistics are reduced per channel over the positions first ([N, C]: every reduction and
// broadcast then runs over contiguous rows of C channels), then per group ([N, G], tiny), and
// broadcast back per channel. Reshaping x to [..., G, C/G] instead would make the normalisation's
// broadcasts and reductions run over innermost runs of C/G elements (2 with ADM's 64 channels in
// 32 groups), which the Go backend executes element by element: that layout cost ~20% of an
// adm_camvid training step (docs/BENCHMARKS.md).
func GroupNorm(scope *model.Scope, x *Node, groups int, eps float64) *Node {
	dims := x.Shape().Dimensions
	rank := len(dims)
	n, c := dims[0], dims[rank-1]
	if rank < 3 {
		exceptions.Panicf("GroupNorm at %q: needs [N, positions..., C], got %s", scope.Scope(), x.Shape())
	}
	if c%groups != 0 {
		exceptions.Panicf("GroupNorm at %q: %d channels are not divisible into %d groups", scope.Scope(), c, groups)
	}
	positions := make([]int, rank-2)
	for i := range positions {
		positions[i] = i + 1
	}
	perGroup := float64(x.Shape().Size() / n / groups)
	statsShape := make([]int, rank) // [N, 1, ..., 1, C]
	for i := range statsShape {
		statsShape[i] = 1
	}
	statsShape[0], statsShape[rank-1] = n, c
	// groupMean returns the mean of v over each group's channels and all positions, per channel.
	groupMean := func(v *Node) *Node {
		perChannel := ReduceSum(v, positions...)                        // [N, C]
		sums := ReduceSum(Reshape(perChannel, n, groups, c/groups), -1) // [N, G]
		mean := BroadcastToDims(Reshape(DivScalar(sums, perGroup), n, groups, 1), n, groups, c/groups)
		return Reshape(mean, statsShape...)
	}
	centred := Sub(x, groupMean(x))
	variance := groupMean(Square(centred))
	return affine(scope, Mul(centred, invStd(variance, eps)))
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
