// Package interpreter is DreamTeacher's label-distillation head, BigDatasetGAN's "interpreter":
// a light segmentation head trained with few labels on a generative teacher's multi-scale
// features (PAPER.md, "Interpreter"), whose soft labels are then distilled into the student.
//
// On each feature level a 1x1 conv maps the level to a common width (256); every level is
// resized bilinearly to the output resolution (the finest level's unless Config says
// otherwise) and the levels are concatenated; a depthwise-separable conv (3x3 depthwise, then
// 1x1 to the common width), GroupNorm (32 groups, fewer when the width is narrow) and Swish
// fuse them; dropout 0.1 and a 1x1 conv give the logits [N, H, W, classes].
//
// The levels are taken in the sorted order of their names (see Levels), so the variables depend
// only on the set of names (and their channels), never on map iteration order or on the order a
// caller lists them. Variables under the head's scope:
//
//	lateral/<level>/{weights,biases}   one 1x1 conv per level ("/" in a name becomes "_")
//	fuse/depthwise/weights             3x3, one filter per concatenated channel (no bias)
//	fuse/pointwise/weights             1x1 to the width (no bias: the norm follows)
//	fuse/norm/{scale,offset}
//	logits/{weights,biases}
//
// Training the interpreter on a frozen diffusion teacher is the recipe train/interpret; label
// distillation builds the trained interpreter with TeacherLogits.
package interpreter

import (
	"fmt"
	"sort"

	"github.com/dreamteacher-go/dreamteacher/models/nn"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Defaults of the paper's interpreter.
const (
	DefaultWidth   = 256
	DefaultDropout = 0.1
	// MaxNormGroups is the number of GroupNorm groups at the default width.
	MaxNormGroups = 32
)

// Config of the interpreter. The zero value of a field means the paper's default.
type Config struct {
	Width   int     // common width of the levels and of the fused features (256)
	Dropout float64 // before the logits, while training (0.1); negative: none
	// OutHeight and OutWidth are the resolution of the logits; 0 means the finest level's
	// (the largest height and width among the levels).
	OutHeight, OutWidth int
}

func (c Config) withDefaults() Config {
	if c.Width == 0 {
		c.Width = DefaultWidth
	}
	if c.Dropout == 0 {
		c.Dropout = DefaultDropout
	}
	if c.Dropout < 0 {
		c.Dropout = 0
	}
	return c
}

// NormGroups is the number of GroupNorm groups for a width: gcd(32, width), i.e. 32 from
// width 32 on (powers of two), fewer groups for narrow or odd widths.
func NormGroups(width int) int {
	a, b := MaxNormGroups, width
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Levels returns the names of feats in the order the interpreter concatenates them: sorted by
// their scope names ("/" replaced by "_"), so that a tap given as "output/level0/block1" or as
// "output_level0_block1" takes the same place and the same variables.
func Levels(feats map[string]*Node) []string {
	names := make([]string, 0, len(feats))
	for n := range feats {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := model.EscapeScopeName(names[i]), model.EscapeScopeName(names[j])
		if a != b {
			return a < b
		}
		return names[i] < names[j]
	})
	return names
}

// Build builds the interpreter under scope on the feature maps feats (by name, each
// [N, h_l, w_l, C_l], one dtype and batch) and returns the logits [N, H, W, numClasses] at the
// output resolution (Config.OutHeight x OutWidth, default the finest level's). Dropout acts
// only while training (nn.IsTraining). Calling Build again on the same scope in one graph
// reuses the variables.
func Build(scope *model.Scope, feats map[string]*Node, numClasses int, cfg Config) *Node {
	cfg = cfg.withDefaults()
	scope = scope.ResetVisited()
	names := Levels(feats)
	if len(names) == 0 {
		exceptions.Panicf("interpreter at %q: no feature maps", scope.Scope())
	}
	if numClasses < 1 {
		exceptions.Panicf("interpreter at %q: numClasses must be positive, got %d", scope.Scope(), numClasses)
	}
	if cfg.Width < 1 || cfg.Dropout >= 1 || cfg.OutHeight < 0 || cfg.OutWidth < 0 {
		exceptions.Panicf("interpreter at %q: invalid config %+v", scope.Scope(), cfg)
	}
	for i := 1; i < len(names); i++ {
		if model.EscapeScopeName(names[i]) == model.EscapeScopeName(names[i-1]) {
			exceptions.Panicf("interpreter at %q: feature maps %q and %q would share the variables of lateral/%s",
				scope.Scope(), names[i-1], names[i], model.EscapeScopeName(names[i]))
		}
	}
	first := feats[names[0]]
	outH, outW := cfg.OutHeight, cfg.OutWidth
	for _, name := range names {
		x := feats[name]
		if x == nil || x.Rank() != 4 {
			exceptions.Panicf("interpreter at %q: feature map %q must be [N, H, W, C], got %v", scope.Scope(), name, shapeOf(x))
		}
		if x.Shape().Dim(0) != first.Shape().Dim(0) || x.DType() != first.DType() {
			exceptions.Panicf("interpreter at %q: feature maps %q %s and %q %s differ in batch or dtype",
				scope.Scope(), names[0], first.Shape(), name, x.Shape())
		}
		if cfg.OutHeight == 0 {
			outH = max(outH, x.Shape().Dim(1))
		}
		if cfg.OutWidth == 0 {
			outW = max(outW, x.Shape().Dim(2))
		}
	}

	lateral := scope.In("lateral")
	parts := make([]*Node, len(names))
	for i, name := range names {
		// The 1x1 conv first, at the level's own resolution: cheaper, and the same map
		// (bilinear resizing is linear and commutes with a 1x1 conv).
		y := nn.Conv(lateral.In("%s", model.EscapeScopeName(name)), feats[name], cfg.Width).Done()
		parts[i] = nn.ResizeBilinear(y, outH, outW)
	}
	x := parts[0]
	if len(parts) > 1 {
		x = Concatenate(parts, 3)
	}
	fuse := scope.In("fuse")
	c := x.Shape().Dim(3)
	// No biases before the norm, as timm's SeparableConvNormAct.
	x = nn.Conv(fuse.In("depthwise"), x, c).Kernel(3).Padding(1).Groups(c).Bias(false).Done()
	x = nn.Conv(fuse.In("pointwise"), x, cfg.Width).Bias(false).Done()
	x = nn.SiLU(nn.GroupNorm(fuse.In("norm"), x, NormGroups(cfg.Width), 1e-5))
	x = nn.Dropout(scope, x, cfg.Dropout)
	return nn.Conv(scope.In("logits"), x, numClasses).Done()
}

// TeacherLogits builds a TRAINED interpreter as the teacher of label distillation: it freezes
// scope (nn.Freeze: no dropout even inside a training graph), builds the interpreter on the
// teacher's features and returns its logits [N, H, W, numClasses] with no gradient (to the
// features or to the interpreter's variables). cfg and numClasses must be those it was trained
// with (train/interpret's LoadInterpreter returns them, with the variables loaded and made
// non-trainable).
//
// The soft labels of the paper, softmax(z_g/τ), are computed by the loss: pass these logits as
// the teacher of losses/distill, e.g. distill.New(studentLogits, zg).Tau(4).Done(), after
// resizing one to the other's resolution (SoftLabels gives the probabilities themselves, for
// visualisation).
func TeacherLogits(scope *model.Scope, feats map[string]*Node, numClasses int, cfg Config) *Node {
	nn.Freeze(scope)
	stopped := make(map[string]*Node, len(feats))
	for name, x := range feats {
		stopped[name] = StopGradient(x)
	}
	return StopGradient(Build(scope, stopped, numClasses, cfg))
}

// SoftLabels are the class probabilities softmax(logits/tau) over the last axis.
func SoftLabels(logits *Node, tau float64) *Node {
	if tau <= 0 {
		exceptions.Panicf("interpreter.SoftLabels: temperature must be positive, got %g", tau)
	}
	return Softmax(DivScalar(logits, tau), -1)
}

func shapeOf(x *Node) string {
	if x == nil {
		return "nil"
	}
	return fmt.Sprint(x.Shape())
}
