// Package convnext implements ConvNeXt-T/S/B ("A ConvNet for the 2020s", Liu et al. 2022) with
// timm's layout, on NHWC feature maps:
//
//   - stem: 4x4 stride-4 patchify convolution + LayerNorm (eps 1e-6);
//   - four stages of depths 3,3,9,3 (T) or 3,3,27,3 (S, B) and widths 96..768 (T, S) or
//     128..1024 (B); stages 2..4 start with a down-sampler, LayerNorm + 2x2 stride-2 conv;
//   - block: depthwise 7x7 conv, LayerNorm (channels-last), Linear to 4x width, GELU, Linear
//     back, layer scale (init 1e-6), stochastic depth, residual;
//   - head: global average pooling, LayerNorm, Linear.
//
// Convolutions and linear layers are initialised with trunc_normal(std=.02) and zero biases, as
// timm's _init_weights. Parameter counts equal timm's and torchvision's (convnext_tiny 28,589,128).
//
// Backbone levels C2..C5 are the outputs of the four stages, strides 4, 8, 16, 32. With
// backbones.Options.SmallInputStem the stem is a 2x2 stride-2 patchify convolution instead,
// for tiny images: strides 2, 4, 8, 16 (not ResNet's 1, 2, 4, 8: a stride-1 stem would run the
// first stage's 7x7 depthwise blocks at full resolution).
//
// Variables are named so that timm's checkpoints map one-to-one (see TimmKey):
//
//	stem/conv, stem/norm                        stem.0, stem.1
//	stages/stage1/downsample/norm, .../conv     stages.1.downsample.0, stages.1.downsample.1
//	stages/stage0/block2/conv_dw                stages.0.blocks.2.conv_dw
//	stages/stage0/block2/norm                   stages.0.blocks.2.norm
//	stages/stage0/block2/mlp/fc1, .../mlp/fc2   stages.0.blocks.2.mlp.fc1, ...mlp.fc2
//	stages/stage0/block2/gamma                  stages.0.blocks.2.gamma
//	head/norm, head/fc                          head.norm, head.fc
package convnext

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Config of a ConvNeXt. Zero fields take timm's defaults (see WithDefaults).
type Config struct {
	Depths [4]int // blocks per stage
	Dims   [4]int // channels per stage
	// KernelSize of the depthwise convolutions (7).
	KernelSize int
	// MLPRatio is the hidden width of the block's MLP over its input width (4).
	MLPRatio int
	// LayerScaleInit is the initial value of the per-channel layer scale "gamma" (1e-6).
	LayerScaleInit float64
	// NormEps is the epsilon of every LayerNorm (1e-6).
	NormEps float64
}

// WithDefaults fills the zero fields with timm's defaults.
func (c Config) WithDefaults() Config {
	if c.KernelSize == 0 {
		c.KernelSize = 7
	}
	if c.MLPRatio == 0 {
		c.MLPRatio = 4
	}
	if c.LayerScaleInit == 0 {
		c.LayerScaleInit = 1e-6
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-6
	}
	return c
}

// Configs of the registered sizes.
var Configs = map[string]Config{
	"convnext_tiny":  {Depths: [4]int{3, 3, 9, 3}, Dims: [4]int{96, 192, 384, 768}},
	"convnext_small": {Depths: [4]int{3, 3, 27, 3}, Dims: [4]int{96, 192, 384, 768}},
	"convnext_base":  {Depths: [4]int{3, 3, 27, 3}, Dims: [4]int{128, 256, 512, 1024}},
}

// referenceCounts are the parameter counts with the 1000-class head of timm's and torchvision's
// models of the same name (sum(p.numel() for p in model.parameters())).
var referenceCounts = map[string]int{
	"convnext_tiny": 28_589_128, "convnext_small": 50_223_688, "convnext_base": 88_591_464,
}

func init() {
	for name, cfg := range Configs {
		cfg := cfg
		backbones.Register(backbones.Entry{
			Name: name, Family: "convnext", Levels: cfg.Levels(),
			Build: func(scope *model.Scope, x *Node, opts backbones.Options) backbones.Output {
				return Build(scope, x, cfg, opts)
			},
			Reference:      "timm.create_model(\"" + name + "\") / torchvision.models." + name + "()",
			ReferenceCount: referenceCounts[name],
		})
	}
}

// Levels declares the feature levels C2..C5 of cfg with the standard (4x4 patchify) stem.
func (cfg Config) Levels() []backbones.Info {
	levels := make([]backbones.Info, 4)
	for i := range levels {
		levels[i] = backbones.Info{Name: backbones.LevelNames[i], Channels: cfg.Dims[i], Stride: 4 << i}
	}
	return levels
}

// DropPathRate returns the stochastic depth rate of the block with global index i (counted over
// all stages) out of total blocks, for the last block's rate maxRate: timm's
// torch.linspace(0, drop_path_rate, sum(depths)).
func DropPathRate(i, total int, maxRate float64) float64 {
	if total <= 1 {
		return 0
	}
	return maxRate * float64(i) / float64(total-1)
}

// Build builds a ConvNeXt on images x [N, H, W, C] under scope.
func Build(scope *model.Scope, x *Node, cfg Config, opts backbones.Options) backbones.Output {
	cfg = cfg.WithDefaults()
	if x.Rank() != 4 {
		exceptions.Panicf("convnext: want images [N, H, W, C], got %s", x.Shape())
	}
	if opts.DropPath < 0 || opts.DropPath >= 1 {
		exceptions.Panicf("convnext: DropPath must be in [0, 1), got %g", opts.DropPath)
	}
	patch := 4
	if opts.SmallInputStem {
		patch = 2
	}
	if x.Shape().Dim(1) < patch<<3 || x.Shape().Dim(2) < patch<<3 {
		exceptions.Panicf("convnext: images %s are too small: the last stage needs at least %dx%d pixels",
			x.Shape(), patch<<3, patch<<3)
	}

	stem := scope.In("stem")
	x = conv(stem.In("conv"), x, cfg.Dims[0], patch, patch, 0, 1)
	x = nn.LayerNorm(stem.In("norm"), x, cfg.NormEps)
	stride := patch

	total := 0
	for _, d := range cfg.Depths {
		total += d
	}
	stages := scope.In("stages")
	var out backbones.Output
	blockIndex := 0
	for s, depth := range cfg.Depths {
		stage := stages.In("stage%d", s)
		dim := cfg.Dims[s]
		if s > 0 {
			ds := stage.In("downsample")
			x = nn.LayerNorm(ds.In("norm"), x, cfg.NormEps)
			x = conv(ds.In("conv"), x, dim, 2, 2, 0, 1)
			stride *= 2
		}
		for b := range depth {
			x = Block(stage.In("block%d", b), x, cfg, DropPathRate(blockIndex, total, opts.DropPath))
			blockIndex++
		}
		out.Features.Add(backbones.Info{Name: backbones.LevelNames[s], Channels: dim, Stride: stride}, x)
	}
	if opts.NumClasses > 0 {
		head := scope.In("head")
		h := nn.LayerNorm(head.In("norm"), nn.GlobalAvgPool(x), cfg.NormEps)
		out.Logits = linear(head.In("fc"), h, opts.NumClasses)
	}
	return out
}

// Block is one ConvNeXt block on x [N, H, W, dim]: x + DropPath(gamma * MLP(LN(DWConv(x)))).
func Block(scope *model.Scope, x *Node, cfg Config, dropPath float64) *Node {
	cfg = cfg.WithDefaults()
	dim := x.Shape().Dim(-1)
	k := cfg.KernelSize
	h := conv(scope.In("conv_dw"), x, dim, k, 1, k/2, dim)
	h = nn.LayerNorm(scope.In("norm"), h, cfg.NormEps)
	mlp := scope.In("mlp")
	h = nn.GELU(linear(mlp.In("fc1"), h, cfg.MLPRatio*dim))
	h = linear(mlp.In("fc2"), h, dim)
	gamma := scope.WithInitializer(nn.ConstInit(cfg.LayerScaleInit)(scope, 0, 0)).
		VariableWithShape("gamma", shapes.Make(x.DType(), dim))
	h = Mul(h, Reshape(gamma.NodeValue(x.Graph()), 1, 1, 1, dim))
	h = nn.DropPath(scope, h, dropPath)
	return Add(x, h)
}

// truncNormal is timm's trunc_normal_(std=.02) for convolutions and linear layers.
var truncNormal = nn.TruncNormalInit(0.02)

// conv is a convolution with a bias, trunc_normal(.02) weights and zero biases.
func conv(scope *model.Scope, x *Node, out, k, stride, pad, groups int) *Node {
	return nn.Conv(scope, x, out).Kernel(k).Stride(stride).Padding(pad).Groups(groups).
		Init(truncNormal).BiasInit(nn.ZeroInit).Done()
}

// linear is a linear layer with trunc_normal(.02) weights and zero biases.
func linear(scope *model.Scope, x *Node, out int) *Node {
	return nn.Linear(scope, x, out).Init(truncNormal).BiasInit(nn.ZeroInit).Done()
}

// String describes a configuration.
func (cfg Config) String() string {
	c := cfg.WithDefaults()
	return fmt.Sprintf("ConvNeXt(depths=%v, dims=%v, kernel=%d, mlp_ratio=%d, ls_init=%g)",
		c.Depths, c.Dims, c.KernelSize, c.MLPRatio, c.LayerScaleInit)
}
