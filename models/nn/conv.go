package nn

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/backend"
	_ "github.com/dreamteacher-go/dreamteacher/internal/gomlxfix"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Lowering selects how Conv2DOp computes a convolution.
type Lowering int

const (
	// LoweringAuto uses the backend's native convolution on XLA and matrix multiplications on
	// the Go backend, whose native convolution is a direct loop (~0.7 GFLOP/s).
	LoweringAuto Lowering = iota
	// LoweringNative uses the backend's convolution op on every backend (except for patchify
	// convolutions and even kernels, see Conv2DOp): tests use it to check that op on the Go backend.
	LoweringNative
	// LoweringMatMul always lowers to patch extraction + DotGeneral.
	LoweringMatMul
)

func (l Lowering) String() string {
	switch l {
	case LoweringAuto:
		return "auto"
	case LoweringNative:
		return "native"
	case LoweringMatMul:
		return "matmul"
	}
	return fmt.Sprintf("Lowering(%d)", int(l))
}

// ConvConfig describes a 2-D convolution of an NHWC input with an HWIO kernel. The zero value of
// every field means PyTorch's default (stride 1, no padding, dilation 1, 1 group).
type ConvConfig struct {
	Stride   [2]int    // (height, width)
	Padding  [2][2]int // ((top, bottom), (left, right))
	Dilation [2]int    // (height, width)
	Groups   int
	Lowering Lowering
}

func (c ConvConfig) withDefaults() ConvConfig {
	for i := range 2 {
		if c.Stride[i] == 0 {
			c.Stride[i] = 1
		}
		if c.Dilation[i] == 0 {
			c.Dilation[i] = 1
		}
	}
	if c.Groups == 0 {
		c.Groups = 1
	}
	return c
}

// SymmetricPadding returns the padding of p pixels on each side of both spatial axes.
func SymmetricPadding(p int) [2][2]int { return [2][2]int{{p, p}, {p, p}} }

// ConvOutputSize is the spatial output size of a convolution along one axis.
func ConvOutputSize(in, kernel, stride, dilation int, pad [2]int) int {
	return (in+pad[0]+pad[1]-dilation*(kernel-1)-1)/stride + 1
}

// Conv2DOp convolves x [N, H, W, Cin] with kernel [kh, kw, Cin/groups, Cout] and returns
// [N, H', W', Cout]. It gives the same numbers (to float rounding) with every lowering:
//
//   - A patchify convolution (kernel = stride, no padding, no dilation, 1 group), e.g. ConvNeXt's
//     stem and down-samplers, is a reshape + transpose + matmul on every backend.
//   - Kernels of even size never use the native op: GoMLX's gradient of Convolve with respect to
//     its input is wrong for even kernels (on every backend; relative error ~1), so they take the
//     matmul lowering, whose gradient is built from Slice, Concatenate and DotGeneral.
//   - Otherwise LoweringAuto uses the native op on XLA and the matmul lowering on the Go backend.
func Conv2DOp(x, kernel *Node, cfg ConvConfig) *Node {
	cfg = cfg.withDefaults()
	if x.Rank() != 4 || kernel.Rank() != 4 {
		exceptions.Panicf("Conv2DOp: want x [N,H,W,C] and kernel [kh,kw,in,out], got x %s and kernel %s", x.Shape(), kernel.Shape())
	}
	cin, kh, kw := x.Shape().Dim(3), kernel.Shape().Dim(0), kernel.Shape().Dim(1)
	kin, cout := kernel.Shape().Dim(2), kernel.Shape().Dim(3)
	if kin*cfg.Groups != cin || cout%cfg.Groups != 0 {
		exceptions.Panicf("Conv2DOp: input with %d channels and %d groups needs a kernel [kh,kw,%d,k*%d], got %s",
			cin, cfg.Groups, cin/max(cfg.Groups, 1), cfg.Groups, kernel.Shape())
	}
	h, w := x.Shape().Dim(1), x.Shape().Dim(2)
	ho := ConvOutputSize(h, kh, cfg.Stride[0], cfg.Dilation[0], cfg.Padding[0])
	wo := ConvOutputSize(w, kw, cfg.Stride[1], cfg.Dilation[1], cfg.Padding[1])
	if ho <= 0 || wo <= 0 {
		exceptions.Panicf("Conv2DOp: input %dx%d is too small for a %dx%d kernel (stride %v, dilation %v, padding %v)",
			h, w, kh, kw, cfg.Stride, cfg.Dilation, cfg.Padding)
	}

	switch chooseConvPath(h, w, kh, kw, cfg, backend.IsGo(x.Graph().Backend())) {
	case pathPatchify:
		return patchifyConv(x, kernel)
	case pathNative:
		return Convolve(x, kernel).
			StridePerAxis(cfg.Stride[0], cfg.Stride[1]).
			PaddingPerDim(cfg.Padding[:]).
			DilationPerAxis(cfg.Dilation[0], cfg.Dilation[1]).
			ChannelGroupCount(cfg.Groups).
			Done()
	default:
		return matmulConv(x, kernel, cfg, ho, wo)
	}
}

// convPath is how Conv2DOp computes a convolution.
type convPath int

const (
	pathPatchify convPath = iota // reshape + transpose + matmul (kernel = stride)
	pathNative                   // the backend's Convolve
	pathMatMul                   // patch extraction + DotGeneral
)

func (p convPath) String() string { return [...]string{"patchify", "native", "matmul"}[p] }

// chooseConvPath picks the computation of a convolution of an h x w input with a kh x kw kernel
// (cfg with defaults), onGo telling whether the graph runs on the Go backend. It is the one
// place that decides, so that a test can check the decision for every backend: even kernels
// never reach the native op, whose input gradient is wrong for them.
func chooseConvPath(h, w, kh, kw int, cfg ConvConfig, onGo bool) convPath {
	switch {
	case isPatchify(h, w, kh, kw, cfg):
		return pathPatchify
	case kh%2 == 0 || kw%2 == 0:
		return pathMatMul
	case cfg.Lowering == LoweringNative || (cfg.Lowering == LoweringAuto && !onGo):
		return pathNative
	default:
		return pathMatMul
	}
}

func isPatchify(h, w, kh, kw int, cfg ConvConfig) bool {
	return kh == cfg.Stride[0] && kw == cfg.Stride[1] && cfg.Dilation == [2]int{1, 1} &&
		cfg.Padding == [2][2]int{} && cfg.Groups == 1 && h%kh == 0 && w%kw == 0
}

// patchifyConv is a convolution whose kernel equals its stride: non-overlapping patches.
func patchifyConv(x, kernel *Node) *Node {
	n, h, w, c := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2), x.Shape().Dim(3)
	kh, kw, cout := kernel.Shape().Dim(0), kernel.Shape().Dim(1), kernel.Shape().Dim(3)
	p := Reshape(x, n, h/kh, kh, w/kw, kw, c)
	p = TransposeAllAxes(p, 0, 1, 3, 2, 4, 5) // [n, h/kh, w/kw, kh, kw, c]
	p = Reshape(p, n*(h/kh)*(w/kw), kh*kw*c)
	y := Dot(p, Reshape(kernel, kh*kw*c, cout)).Product()
	return Reshape(y, n, h/kh, w/kw, cout)
}

// PadSpatial zero-pads the height and width axes of x [N, H, W, C]. It concatenates zeros
// instead of using the Pad op, which has no gradient in GoMLX.
func PadSpatial(x *Node, pad [2][2]int) *Node {
	for axis := 1; axis <= 2; axis++ {
		before, after := pad[axis-1][0], pad[axis-1][1]
		if before == 0 && after == 0 {
			continue
		}
		parts := make([]*Node, 0, 3)
		zerosOf := func(size int) *Node {
			dims := x.Shape().Clone().Dimensions
			dims[axis] = size
			return Zeros(x.Graph(), shapeOf(x.DType(), dims...))
		}
		if before > 0 {
			parts = append(parts, zerosOf(before))
		}
		parts = append(parts, x)
		if after > 0 {
			parts = append(parts, zerosOf(after))
		}
		x = Concatenate(parts, axis)
	}
	return x
}

// convTaps returns the kh*kw shifted (and strided) views of the padded input that a kernel tap
// multiplies, in the kernel's row-major (i, j) order. Each is [N, ho, wo, C].
func convTaps(xp *Node, kh, kw, ho, wo int, cfg ConvConfig) []*Node {
	taps := make([]*Node, 0, kh*kw)
	for i := range kh {
		for j := range kw {
			y0, x0 := i*cfg.Dilation[0], j*cfg.Dilation[1]
			taps = append(taps, Slice(xp, AxisRange(),
				AxisRange(y0, y0+(ho-1)*cfg.Stride[0]+1).Stride(cfg.Stride[0]),
				AxisRange(x0, x0+(wo-1)*cfg.Stride[1]+1).Stride(cfg.Stride[1]),
				AxisRange()))
		}
	}
	return taps
}

// matmulConv lowers the convolution to patch extraction (one strided slice per kernel tap,
// concatenated on the channel axis) followed by one matrix multiplication.
func matmulConv(x, kernel *Node, cfg ConvConfig, ho, wo int) *Node {
	n, cin := x.Shape().Dim(0), x.Shape().Dim(3)
	kh, kw, kin, cout := kernel.Shape().Dim(0), kernel.Shape().Dim(1), kernel.Shape().Dim(2), kernel.Shape().Dim(3)
	taps := convTaps(PadSpatial(x, cfg.Padding), kh, kw, ho, wo, cfg)
	m := n * ho * wo

	if cfg.Groups > 1 && kin == 1 && cout == cin {
		// Depthwise: a weighted sum of the taps, no matmul.
		w := Reshape(kernel, kh*kw, cout)
		var y *Node
		for t, tap := range taps {
			term := Mul(tap, Reshape(Slice(w, AxisElem(t)), 1, 1, 1, cout))
			if y == nil {
				y = term
			} else {
				y = Add(y, term)
			}
		}
		return y
	}

	patches := taps[0]
	if len(taps) > 1 {
		patches = Concatenate(taps, 3) // [n, ho, wo, kh*kw*cin], tap-major like the HWIO kernel
	}
	if cfg.Groups == 1 {
		y := Dot(Reshape(patches, m, kh*kw*cin), Reshape(kernel, kh*kw*cin, cout)).Product()
		return Reshape(y, n, ho, wo, cout)
	}
	// Grouped: one batched matmul over the groups.
	g, og := cfg.Groups, cout/cfg.Groups
	p := Reshape(patches, m, kh*kw, g, kin)
	p = Reshape(TransposeAllAxes(p, 2, 0, 1, 3), g, m, kh*kw*kin)
	w := Reshape(kernel, kh*kw*kin, g, og)
	w = TransposeAllAxes(w, 1, 0, 2)                               // [g, kh*kw*kin, og]
	y := Dot(p, w).General([]int{2}, []int{0}, []int{1}, []int{0}) // [g, m, og]
	y = TransposeAllAxes(y, 1, 0, 2)
	return Reshape(y, n, ho, wo, cout)
}

// ConvBuilder builds a Conv2D layer; create it with Conv.
type ConvBuilder struct {
	scope    *model.Scope
	x        *Node
	out      int
	kernel   [2]int
	cfg      ConvConfig
	bias     bool
	padSame  bool
	init     Init
	biasInit Init
	zeroInit bool
	spectral bool
}

// Conv creates a 2-D convolution layer of x [N, H, W, Cin] to `out` channels, with PyTorch's
// defaults: 1x1 kernel unless set, stride 1, no padding, bias, and Conv2d's default
// initialisation (uniform in ±1/sqrt(fan_in) for weights and bias). Variables: "weights"
// [kh, kw, Cin/groups, out] and "biases" [out].
func Conv(scope *model.Scope, x *Node, out int) *ConvBuilder {
	return &ConvBuilder{scope: scope, x: x, out: out, kernel: [2]int{1, 1}, bias: true}
}

// Kernel sets a square kernel size.
func (b *ConvBuilder) Kernel(k int) *ConvBuilder { b.kernel = [2]int{k, k}; return b }

// Stride sets the same stride on both spatial axes.
func (b *ConvBuilder) Stride(s int) *ConvBuilder { b.cfg.Stride = [2]int{s, s}; return b }

// Padding sets p pixels of zero padding on each side.
func (b *ConvBuilder) Padding(p int) *ConvBuilder { b.cfg.Padding = SymmetricPadding(p); return b }

// PaddingSame pads so that the output size is ceil(input/stride), as PyTorch's padding="same"
// for stride 1 (extra padding, if odd, goes after).
func (b *ConvBuilder) PaddingSame() *ConvBuilder { b.padSame = true; return b }

// Dilation sets the kernel dilation on both spatial axes.
func (b *ConvBuilder) Dilation(d int) *ConvBuilder { b.cfg.Dilation = [2]int{d, d}; return b }

// Groups sets the number of channel groups (Cin for a depthwise convolution).
func (b *ConvBuilder) Groups(g int) *ConvBuilder { b.cfg.Groups = g; return b }

// Bias sets whether the layer has a bias (default true).
func (b *ConvBuilder) Bias(bias bool) *ConvBuilder { b.bias = bias; return b }

// Init sets the weights initialiser (default PyTorch's Conv2d default).
func (b *ConvBuilder) Init(init Init) *ConvBuilder { b.init = init; return b }

// BiasInit sets the bias initialiser (default PyTorch's Conv2d default).
func (b *ConvBuilder) BiasInit(init Init) *ConvBuilder { b.biasInit = init; return b }

// ZeroInit initialises weights and bias to zero, as guided-diffusion's zero_module: the
// residual branch that ends in this conv starts as the identity.
func (b *ConvBuilder) ZeroInit() *ConvBuilder { b.zeroInit = true; return b }

// SpectralNorm divides the weights by their spectral norm (see SpectralNorm), as BigGAN's layers.
func (b *ConvBuilder) SpectralNorm() *ConvBuilder { b.spectral = true; return b }

// WithLowering forces a lowering (for tests and benchmarks).
func (b *ConvBuilder) WithLowering(l Lowering) *ConvBuilder { b.cfg.Lowering = l; return b }

// Done builds the layer and returns [N, H', W', out].
func (b *ConvBuilder) Done() *Node {
	x := b.x
	if x.Rank() != 4 {
		exceptions.Panicf("Conv at %q: want x [N,H,W,C], got %s", b.scope.Scope(), x.Shape())
	}
	cfg := b.cfg.withDefaults()
	cin := x.Shape().Dim(3)
	if cin%cfg.Groups != 0 || b.out%cfg.Groups != 0 {
		exceptions.Panicf("Conv at %q: %d input and %d output channels are not divisible by %d groups",
			b.scope.Scope(), cin, b.out, cfg.Groups)
	}
	if b.padSame {
		for i := range 2 {
			in := x.Shape().Dim(1 + i)
			outSize := (in + cfg.Stride[i] - 1) / cfg.Stride[i]
			total := max((outSize-1)*cfg.Stride[i]+cfg.Dilation[i]*(b.kernel[i]-1)+1-in, 0)
			cfg.Padding[i] = [2]int{total / 2, total - total/2}
		}
	}
	kin := cin / cfg.Groups
	fanIn := b.kernel[0] * b.kernel[1] * kin
	dtype := x.DType()
	init := b.init
	if init == nil {
		init = PyTorchDefaultInit
	}
	if b.zeroInit {
		init = ZeroInit
	}
	wShape := shapeOf(dtype, b.kernel[0], b.kernel[1], kin, b.out)
	weights := b.scope.WithInitializer(init(b.scope, fanIn, b.kernel[0]*b.kernel[1]*b.out/cfg.Groups)).
		VariableWithShape("weights", wShape)
	w := weights.NodeValue(x.Graph())
	if b.spectral {
		w = SpectralNorm(b.scope, w)
	}
	y := Conv2DOp(x, w, cfg)
	if b.bias {
		biasInit := b.biasInit
		if biasInit == nil {
			biasInit = PyTorchDefaultInit
		}
		if b.zeroInit {
			biasInit = ZeroInit
		}
		biases := b.scope.WithInitializer(biasInit(b.scope, fanIn, 0)).VariableWithShape("biases", shapeOf(dtype, b.out))
		y = Add(y, Reshape(biases.NodeValue(x.Graph()), 1, 1, 1, b.out))
	}
	return y
}

// String describes the builder's configuration, for error messages.
func (b *ConvBuilder) String() string {
	return fmt.Sprintf("Conv(%s, out=%d, kernel=%v, %+v)", b.scope.Scope(), b.out, b.kernel, b.cfg)
}
