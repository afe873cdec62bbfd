package biggan

import (
	"math"

	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// layerOptions are the settings the blocks share, taken from Config. Tests change the
// unexported ones to gradient-check parts in isolation.
type layerOptions struct {
	init  Init
	bnEps float64
	// noSpectralNorm builds plain convs and linear layers (tests: spectral norm's power
	// iteration is not differentiated, so a training-mode check must leave it out).
	noSpectralNorm bool
	// gammaInit is the initial gain of the attention branch (0, as the reference).
	gammaInit float64
}

func (c Config) layerOptions() layerOptions {
	if c.testOptions != nil {
		return *c.testOptions
	}
	return layerOptions{init: c.Init, bnEps: c.bnEps()}
}

func (o layerOptions) weightInit() nn.Init {
	switch o.init {
	case InitN02:
		return func(scope *model.Scope, _, _ int) model.VariableInitializer {
			return func(g *Graph, shape shapes.Shape) *Node { return MulScalar(scope.RandomNormal(g, shape), 0.02) }
		}
	case InitXavier:
		return nn.XavierUniformInit
	}
	return nn.OrthogonalInit
}

// conv is the reference's which_conv: an SN conv with a k x k kernel, "same" padding and a bias.
func conv(scope *model.Scope, x *Node, out, k int, bias bool, o layerOptions) *Node {
	b := nn.Conv(scope, x, out).Kernel(k).Padding(k / 2).Bias(bias).Init(o.weightInit())
	if !o.noSpectralNorm {
		b.SpectralNorm()
	}
	return b.Done()
}

// linear is the reference's which_linear: an SN linear layer.
func linear(scope *model.Scope, x *Node, out int, bias bool, o layerOptions) *Node {
	b := nn.Linear(scope, x, out).Bias(bias).Init(o.weightInit())
	if !o.noSpectralNorm {
		b.SpectralNorm()
	}
	return b.Done()
}

// embedding looks up labels [N] (any integer dtype) in a table "embeddings" [numClasses, dim]
// of dtype dt, as a one-hot matrix product (whose gradient every backend has). With spectral
// norm it is the reference's SNEmbedding: the table is divided by its largest singular value,
// with the power-iteration vector u over the classes as there.
func embedding(scope *model.Scope, labels *Node, numClasses, dim int, dt dtypes.DType, spectral bool, o layerOptions) *Node {
	if labels.Rank() != 1 || !labels.DType().IsInt() {
		exceptions.Panicf("biggan embedding at %q: want integer labels [N], got %s", scope.Scope(), labels.Shape())
	}
	// torch's weight [num_embeddings, dim] has fan_in dim and fan_out num_embeddings.
	table := scope.WithInitializer(o.weightInit()(scope, dim, numClasses)).
		VariableWithShape("embeddings", shapes.Make(dt, numClasses, dim)).NodeValue(labels.Graph())
	if spectral {
		table = Transpose(nn.SpectralNorm(scope, Transpose(table, 0, 1)), 0, 1)
	}
	return Dot(OneHot(labels, numClasses, dt), table).Product()
}

// normalize is F.batch_norm without affine parameters over all axes but the channels of x
// [N, H, W, C]: batch statistics while training (the unbiased variance into the running
// average, momentum 0.1), the running statistics "running_mean" and "running_var" otherwise.
// It is nn.BatchNorm without its scale and offset, which the conditional BN replaces.
func normalize(scope *model.Scope, x *Node, eps float64) *Node {
	g := x.Graph()
	c := x.Shape().Dim(-1)
	dt := x.DType()
	zeros := func(g *Graph, s shapes.Shape) *Node { return Zeros(g, s) }
	ones := func(g *Graph, s shapes.Shape) *Node { return Ones(g, s) }
	runMean := scope.WithInitializer(zeros).VariableWithShape("running_mean", shapes.Make(dt, c)).SetTrainable(false)
	runVar := scope.WithInitializer(ones).VariableWithShape("running_var", shapes.Make(dt, c)).SetTrainable(false)
	var mean, variance *Node
	if nn.IsTraining(scope, g) {
		mean = ReduceAndKeep(x, ReduceMean, 0, 1, 2)
		variance = ReduceAndKeep(Square(Sub(x, mean)), ReduceMean, 0, 1, 2)
		n := x.Shape().Size() / c
		if n < 2 {
			exceptions.Panicf("biggan BatchNorm at %q: needs more than 1 value per channel to train, got %s", scope.Scope(), x.Shape())
		}
		const m = 0.1
		batchVar := MulScalar(Reshape(variance, c), float64(n)/float64(n-1))
		runMean.SetNodeValue(Add(MulScalar(runMean.NodeValue(g), 1-m), MulScalar(StopGradient(Reshape(mean, c)), m)))
		runVar.SetNodeValue(Add(MulScalar(runVar.NodeValue(g), 1-m), MulScalar(StopGradient(batchVar), m)))
	} else {
		mean = Reshape(runMean.NodeValue(g), 1, 1, 1, c)
		variance = Reshape(runVar.NodeValue(g), 1, 1, 1, c)
	}
	// 1/Sqrt rather than Rsqrt, which has no gradient in GoMLX.
	return Mul(Sub(x, mean), Inverse(Sqrt(AddScalar(variance, eps))))
}

// batchNorm is the reference's ccbn: normalize(x) * (1 + gain(cond)) + bias(cond), with gain
// and bias SN linear maps without bias of the per-example condition [N, D] to the C channels.
// Without a condition (unconditional G) it is plain BatchNorm with learned per-channel
// "scale" and "offset" (nn.BatchNorm; the reference's bn).
func batchNorm(scope *model.Scope, x, cond *Node, o layerOptions) *Node {
	if cond == nil {
		return nn.BatchNorm(scope, x).Epsilon(o.bnEps).Done()
	}
	n, c := x.Shape().Dim(0), x.Shape().Dim(-1)
	if cond.Rank() != 2 || cond.Shape().Dim(0) != n {
		exceptions.Panicf("biggan conditional BatchNorm at %q: want a condition [%d, D], got %s", scope.Scope(), n, cond.Shape())
	}
	gain := Reshape(OnePlus(linear(scope.In("gain"), cond, c, false, o)), n, 1, 1, c)
	bias := Reshape(linear(scope.In("bias"), cond, c, false, o), n, 1, 1, c)
	return Add(Mul(normalize(scope, x, o.bnEps), gain), bias)
}

// gBlock is the reference's GBlock: BN, ReLU, nearest 2x up-sampling, 3x3 conv "conv1", BN,
// ReLU, 3x3 conv "conv2", plus the shortcut: the 1x1 conv "conv_sc" of the up-sampled input
// (computed before up-sampling: the two commute). cond [N, D] conditions both BatchNorms (nil:
// plain BN).
func gBlock(scope *model.Scope, x, cond *Node, out int, o layerOptions) *Node {
	checkNHWC(scope, x)
	h := nn.ReLU(batchNorm(scope.In("bn1"), x, cond, o))
	h = conv(scope.In("conv1"), nn.UpsampleNearest(h, 2), out, 3, true, o)
	h = nn.ReLU(batchNorm(scope.In("bn2"), h, cond, o))
	h = conv(scope.In("conv2"), h, out, 3, true, o)
	sc := nn.UpsampleNearest(conv(scope.In("conv_sc"), x, out, 1, true, o), 2)
	return Add(h, sc)
}

// dBlock is the reference's DBlock (wide: the hidden width is out): [ReLU if preactivation],
// 3x3 conv "conv1", ReLU, 3x3 conv "conv2", [2x2 average pooling]; plus the shortcut, a 1x1
// conv "conv_sc" when the block changes the width or down-samples (applied after the pooling:
// the two commute). The first block of D has no pre-activation (the "optimized" block).
func dBlock(scope *model.Scope, x *Node, out int, preactivation, downsample bool, o layerOptions) *Node {
	checkNHWC(scope, x)
	in := x.Shape().Dim(-1)
	h := x
	if preactivation {
		h = nn.ReLU(h)
	}
	h = conv(scope.In("conv1"), h, out, 3, true, o)
	h = conv(scope.In("conv2"), nn.ReLU(h), out, 3, true, o)
	sc := x
	if downsample {
		h = nn.AvgPool2D(h, 2, 2, 0, true)
		sc = nn.AvgPool2D(sc, 2, 2, 0, true)
	}
	if in != out || downsample {
		sc = conv(scope.In("conv_sc"), sc, out, 1, true, o)
	}
	return Add(h, sc)
}

// attention is SA-GAN's non-local block as the reference's layers.Attention: 1x1 SN convs
// without bias "theta" (C/8), "phi" (C/8) and "g" (C/2), keys and values max-pooled 2x2,
// softmax(theta . phi) over the pooled positions, the attended values through the 1x1 conv "o"
// back to C channels, scaled by the learned scalar "gamma" (initially 0) and added to x.
func attention(scope *model.Scope, x *Node, o layerOptions) *Node {
	checkNHWC(scope, x)
	n, h, w, c := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2), x.Shape().Dim(3)
	if c%8 != 0 || h%2 != 0 || w%2 != 0 {
		exceptions.Panicf("biggan attention at %q: needs channels divisible by 8 and even sides, got %s", scope.Scope(), x.Shape())
	}
	theta := Reshape(conv(scope.In("theta"), x, c/8, 1, false, o), n, h*w, c/8)
	phi := Reshape(nn.MaxPool2D(conv(scope.In("phi"), x, c/8, 1, false, o), 2, 2, 0), n, h*w/4, c/8)
	g := Reshape(nn.MaxPool2D(conv(scope.In("g"), x, c/2, 1, false, o), 2, 2, 0), n, h*w/4, c/2)
	logits := Dot(theta, phi).General([]int{2}, []int{0}, []int{2}, []int{0}) // [n, hw, hw/4]
	beta := Softmax(logits, -1)
	attended := Dot(beta, g).General([]int{2}, []int{0}, []int{1}, []int{0}) // [n, hw, c/2]
	out := conv(scope.In("o"), Reshape(attended, n, h, w, c/2), c, 1, false, o)
	gammaInit := o.gammaInit
	gamma := scope.WithInitializer(func(g *Graph, s shapes.Shape) *Node { return Scalar(g, s.DType, gammaInit) }).
		VariableWithShape("gamma", shapes.Make(x.DType())).NodeValue(x.Graph())
	return Add(x, Mul(Reshape(gamma, 1, 1, 1, 1), out))
}

func checkNHWC(scope *model.Scope, x *Node) {
	if x.Rank() != 4 {
		exceptions.Panicf("biggan at %q: want a feature map [N, H, W, C], got %s", scope.Scope(), x.Shape())
	}
}

// erfInv is the inverse error function for x in (-1, 1), computed in float64: Giles'
// single-precision approximation ("Approximating the erfinv function", GPU Computing Gems,
// 2011) refined by two Newton steps on Erf. It is used for sampling only (no gradient needed).
func erfInv(x *Node) *Node {
	x = ConvertDType(x, dtypes.Float64)
	g := x.Graph()
	w := Neg(Log(Mul(OneMinus(x), OnePlus(x))))
	poly := func(t *Node, coeffs ...float64) *Node {
		p := Scalar(g, dtypes.Float64, coeffs[0])
		for _, k := range coeffs[1:] {
			p = AddScalar(Mul(p, t), k)
		}
		return p
	}
	central := poly(AddScalar(w, -2.5), 2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
		0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
	tail := poly(AddScalar(Sqrt(Max(w, Scalar(g, dtypes.Float64, 5))), -3), -0.000200214257, 0.000100950558,
		0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)
	y := Mul(Where(LessThan(w, Scalar(g, dtypes.Float64, 5)), central, tail), x)
	for range 2 {
		// Newton: y -= (erf(y) - x) / erf'(y), erf'(y) = 2/sqrt(pi) exp(-y^2).
		y = Sub(y, Div(Sub(Erf(y), x), MulScalar(Exp(Neg(Square(y))), 2/math.Sqrt(math.Pi))))
	}
	return y
}
