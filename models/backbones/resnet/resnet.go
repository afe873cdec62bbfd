// Package resnet implements ResNet-18/34/50/101/152 with torchvision's layout: a 7x7 stride-2
// stem with max-pool, BasicBlocks or Bottlenecks (stride on the 3x3, "ResNet v1.5"), 1x1
// projection shortcuts, global average pooling and a linear head. Parameter counts equal
// torchvision's.
package resnet

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// Block is the residual block type.
type Block int

const (
	Basic      Block = iota // two 3x3 convs, expansion 1
	Bottleneck              // 1x1, 3x3, 1x1 convs, expansion 4
)

func (b Block) expansion() int {
	if b == Bottleneck {
		return 4
	}
	return 1
}

// Config of a ResNet.
type Config struct {
	Block  Block
	Layers [4]int // blocks per stage
	Width  int    // channels of the first stage (64)
}

// Configs of the standard depths.
var Configs = map[string]Config{
	"resnet18":  {Basic, [4]int{2, 2, 2, 2}, 64},
	"resnet34":  {Basic, [4]int{3, 4, 6, 3}, 64},
	"resnet50":  {Bottleneck, [4]int{3, 4, 6, 3}, 64},
	"resnet101": {Bottleneck, [4]int{3, 4, 23, 3}, 64},
	"resnet152": {Bottleneck, [4]int{3, 8, 36, 3}, 64},
}

// referenceCounts are torchvision's parameter counts with the 1000-class head
// (sum(p.numel() for p in torchvision.models.<name>().parameters())).
var referenceCounts = map[string]int{
	"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
	"resnet101": 44_549_160, "resnet152": 60_192_808,
}

func init() {
	for name, cfg := range Configs {
		cfg := cfg
		backbones.Register(backbones.Entry{
			Name: name, Family: "resnet", Levels: cfg.Levels(),
			Build: func(scope *model.Scope, x *Node, opts backbones.Options) backbones.Output {
				return Build(scope, x, cfg, opts)
			},
			Reference:      "torchvision.models." + name + "()",
			ReferenceCount: referenceCounts[name],
		})
	}
}

// Levels declares the feature levels C2..C5 of cfg with the standard stem.
func (cfg Config) Levels() []backbones.Info {
	levels := make([]backbones.Info, 4)
	for i := range levels {
		levels[i] = backbones.Info{Name: backbones.LevelNames[i], Channels: cfg.Width << i * cfg.Block.expansion(), Stride: 4 << i}
	}
	return levels
}

// Build builds a ResNet on images x [N, H, W, C] under scope. Variable names follow
// torchvision's (stem/conv1, layer1/block0/conv1, ..., head/fc) so that its checkpoints map
// one-to-one.
func Build(scope *model.Scope, x *Node, cfg Config, opts backbones.Options) backbones.Output {
	if x.Rank() != 4 {
		panic(fmt.Sprintf("resnet: want images [N, H, W, C], got %s", x.Shape()))
	}
	stem := scope.In("stem")
	stride := 4
	if opts.SmallInputStem {
		x = conv(stem.In("conv1"), x, cfg.Width, 3, 1, 1)
		stride = 1
	} else {
		x = conv(stem.In("conv1"), x, cfg.Width, 7, 2, 3)
	}
	x = nn.ReLU(nn.BatchNorm(stem.In("bn1"), x).Done())
	if !opts.SmallInputStem {
		x = nn.MaxPool2D(x, 3, 2, 1)
	}
	var out backbones.Output
	for stage, blocks := range cfg.Layers {
		planes := cfg.Width << stage
		layer := scope.In("layer%d", stage+1)
		for b := range blocks {
			s := 1
			if b == 0 && stage > 0 {
				s = 2
			}
			x = residual(layer.In("block%d", b), x, cfg.Block, planes, s)
		}
		if stage > 0 {
			stride *= 2
		}
		out.Features.Add(backbones.Info{Name: backbones.LevelNames[stage], Channels: x.Shape().Dim(-1), Stride: stride}, x)
	}
	if opts.NumClasses > 0 {
		out.Logits = nn.Linear(scope.In("head").In("fc"), nn.GlobalAvgPool(x), opts.NumClasses).Done()
	}
	return out
}

// conv is a bias-free convolution with torchvision's kaiming_normal(fan_out) init.
func conv(scope *model.Scope, x *Node, out, k, stride, pad int) *Node {
	return nn.Conv(scope, x, out).Kernel(k).Stride(stride).Padding(pad).Bias(false).Init(nn.KaimingNormalFanOut).Done()
}

func residual(scope *model.Scope, x *Node, block Block, planes, stride int) *Node {
	out := planes * block.expansion()
	shortcut := x
	if stride != 1 || x.Shape().Dim(-1) != out {
		ds := scope.In("downsample")
		shortcut = nn.BatchNorm(ds.In("bn"), conv(ds.In("conv"), x, out, 1, stride, 0)).Done()
	}
	var h *Node
	switch block {
	case Basic:
		h = nn.ReLU(nn.BatchNorm(scope.In("bn1"), conv(scope.In("conv1"), x, planes, 3, stride, 1)).Done())
		h = nn.BatchNorm(scope.In("bn2"), conv(scope.In("conv2"), h, planes, 3, 1, 1)).Done()
	case Bottleneck:
		h = nn.ReLU(nn.BatchNorm(scope.In("bn1"), conv(scope.In("conv1"), x, planes, 1, 1, 0)).Done())
		h = nn.ReLU(nn.BatchNorm(scope.In("bn2"), conv(scope.In("conv2"), h, planes, 3, stride, 1)).Done())
		h = nn.BatchNorm(scope.In("bn3"), conv(scope.In("conv3"), h, out, 1, 1, 0)).Done()
	}
	return nn.ReLU(Add(h, shortcut))
}

// TorchvisionKey maps one of our variable paths (e.g. /layer1/block0/conv1/weights, relative
// to the backbone's scope) to torchvision's state-dict key (layer1.0.conv1.weight), and the axis
// permutation from PyTorch's layout to ours (nil if none).
func TorchvisionKey(path string) (string, []int) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	name := parts[len(parts)-1]
	var keys []string
	for _, p := range parts[:len(parts)-1] {
		switch {
		case p == "stem" || p == "head":
		case p == "downsample":
			keys = append(keys, p)
		case strings.HasPrefix(p, "block"):
			keys = append(keys, strings.TrimPrefix(p, "block"))
		case p == "conv" && slices.Contains(keys, "downsample"):
			keys = append(keys, "0")
		case p == "bn" && slices.Contains(keys, "downsample"):
			keys = append(keys, "1")
		default:
			keys = append(keys, p)
		}
	}
	var perm []int
	switch name {
	case "weights":
		name, perm = "weight", []int{2, 3, 1, 0}
		if keys[len(keys)-1] == "fc" {
			perm = []int{1, 0}
		}
	case "biases", "offset":
		name = "bias"
	case "scale":
		name = "weight"
	}
	return strings.Join(append(keys, name), "."), perm
}
