package adm

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// TapInfo describes a tapped feature map.
type TapInfo struct {
	Name     string
	Channels int
	Stride   int // input pixels per feature pixel
}

// Output of the UNet.
type Output struct {
	// Eps is the predicted noise [N, H, W, OutChannels].
	Eps *Node
	// Var is guided-diffusion's model_var_values [N, H, W, OutChannels] (for the LEARNED_RANGE
	// variance, the interpolation fraction between the posterior's and beta's log variance, in
	// [-1, 1]), nil without LearnSigma.
	Var *Node
	// Taps are the requested feature maps by name, each [N, H/stride, W/stride, channels].
	Taps map[string]*Node
	// TapInfo describes the taps, in the order requested.
	TapInfo []TapInfo
}

// UNet builds guided-diffusion's UNet; create it with New.
type UNet struct {
	scope *model.Scope
	cfg   Config
	taps  []string
	opts  BlockOptions
}

// New prepares a UNet of configuration cfg under scope, tapping DefaultTaps. It panics if cfg is
// invalid. Done builds it; calling Done again (e.g. at every sampling step of one graph) reuses
// the same variables.
func New(scope *model.Scope, cfg Config) *UNet {
	if err := cfg.Validate(); err != nil {
		exceptions.Panicf("adm.New at %q: %v", scope.Scope(), err)
	}
	return &UNet{scope: scope, cfg: cfg, taps: DefaultTaps(cfg), opts: cfg.blockOptions()}
}

// Taps selects the feature maps to return, by name (see TapNames). With no names, none.
// An unknown name panics with the list of the valid ones.
func (u *UNet) Taps(names ...string) *UNet {
	valid := TapNames(u.cfg)
	for _, n := range names {
		if !slices.Contains(valid, n) {
			exceptions.Panicf("adm: unknown feature tap %q; the valid taps of this configuration are: %s",
				n, strings.Join(valid, ", "))
		}
	}
	u.taps = slices.Clone(names)
	return u
}

// Config returns the configuration.
func (u *UNet) Config() Config { return u.cfg }

// TapInfo describes the selected taps, without building anything.
func (u *UNet) TapInfo() []TapInfo {
	infos := make([]TapInfo, len(u.taps))
	for i, n := range u.taps {
		infos[i], _ = LookupTap(u.cfg, n)
	}
	return infos
}

// DefaultTaps are the teacher features of DreamTeacher: the last output block of each decoder
// level, before its up-sampling, for the (up to) four coarsest levels, coarsest first. For the
// 256x256 model, "dec_s32", "dec_s16", "dec_s8", "dec_s4" (output blocks 3, 6, 9 and 12 of the
// paper, strides 32..4).
func DefaultTaps(cfg Config) []string {
	var taps []string
	for l := cfg.Levels() - 1; l >= 0 && len(taps) < 4; l-- {
		taps = append(taps, decoderAlias(l))
	}
	return taps
}

func decoderAlias(level int) string { return fmt.Sprintf("dec_s%d", 1<<level) }

// TapNames lists every feature map that can be tapped, in network order:
//
//   - "input/conv": the first conv (stride 1);
//   - "input/level<l>/block<b>": encoder block b of level l (stride 2^l);
//   - "input/level<l>/down": the down-sampling that ends encoder level l (stride 2^(l+1));
//   - "middle": the middle block (the coarsest stride);
//   - "output/level<l>/block<b>": decoder block b of level l, after its res block and attention
//     and before any up-sampling (stride 2^l);
//   - "output/level<l>/up": the up-sampling that ends decoder level l (stride 2^(l-1)); with
//     the blocks before it, guided-diffusion's output_blocks[k];
//   - "dec_s<stride>": alias of the last "output/level<l>/block<b>" of the level of that stride,
//     DreamTeacher's teacher features (see DefaultTaps).
func TapNames(cfg Config) []string {
	var names []string
	for _, s := range cfg.layout() {
		names = append(names, s.name)
		if s.kind == stepDecoder && s.block == cfg.NumResBlocks {
			names = append(names, decoderAlias(s.level))
		}
	}
	return names
}

// LookupTap describes the named tap of cfg, or returns an error listing the valid names.
func LookupTap(cfg Config, name string) (TapInfo, error) {
	for _, s := range cfg.layout() {
		if s.name == name || (s.kind == stepDecoder && s.block == cfg.NumResBlocks && decoderAlias(s.level) == name) {
			return TapInfo{Name: name, Channels: s.out, Stride: s.stride}, nil
		}
	}
	return TapInfo{}, fmt.Errorf("adm: unknown feature tap %q; the valid taps of this configuration are: %s",
		name, strings.Join(TapNames(cfg), ", "))
}

// Done builds the UNet on images x [N, H, W, InChannels] (in [-1, 1]), timesteps t [N] (any
// numeric dtype; fractional values are fine) and class labels y [N] (integers; nil for an
// unconditional model). Variables take x's dtype.
func (u *UNet) Done(x, t, y *Node) *Output {
	cfg := u.cfg
	scope := u.scope.ResetVisited()
	if x.Rank() != 4 || x.Shape().Dim(3) != cfg.InChannels {
		exceptions.Panicf("adm.UNet at %q: want images [N, H, W, %d], got %s", scope.Scope(), cfg.InChannels, x.Shape())
	}
	if err := cfg.CheckInputSize(x.Shape().Dim(1), x.Shape().Dim(2)); err != nil {
		exceptions.Panicf("adm.UNet at %q: %v", scope.Scope(), err)
	}
	n := x.Shape().Dim(0)
	if t.Rank() != 1 || t.Shape().Dim(0) != n {
		exceptions.Panicf("adm.UNet at %q: want timesteps [%d], got %s", scope.Scope(), n, t.Shape())
	}
	if (y != nil) != (cfg.NumClasses > 0) {
		exceptions.Panicf("adm.UNet at %q: class labels must be given if and only if the model is class-conditional (NumClasses=%d)",
			scope.Scope(), cfg.NumClasses)
	}
	if y != nil && (y.Rank() != 1 || y.Shape().Dim(0) != n || !y.DType().IsInt()) {
		exceptions.Panicf("adm.UNet at %q: want integer labels [%d], got %s", scope.Scope(), n, y.Shape())
	}

	u.declareVariables(x)
	emb := TimeEmbedding(scope.In("time_embed"), ConvertDType(t, x.DType()), cfg.ModelChannels, cfg.TimeEmbedDim())
	if y != nil {
		emb = Add(emb, LabelEmbedding(scope.In("label_emb"), y, cfg.NumClasses, cfg.TimeEmbedDim(), x))
	}

	wanted := map[string]bool{}
	for _, name := range u.taps {
		wanted[name] = true
	}
	out := &Output{Taps: map[string]*Node{}, TapInfo: u.TapInfo()}
	tap := func(name string, h *Node) {
		if wanted[name] {
			out.Taps[name] = h
		}
	}

	opts := u.opts
	input, output := scope.In("input"), scope.In("output")
	levelScopes := map[string]*model.Scope{}
	levelScope := func(parent *model.Scope, prefix string, level int) *model.Scope {
		key := fmt.Sprintf("%s%d", prefix, level)
		if s, ok := levelScopes[key]; ok {
			return s
		}
		s := parent.In("level%d", level)
		levelScopes[key] = s
		return s
	}

	var h *Node
	var skips []*Node // the encoder outputs, popped by the decoder
	for _, s := range cfg.layout() {
		switch s.kind {
		case stepStem:
			h = conv3x3(input.In("conv"), x, s.out, false)
			skips = append(skips, h)
		case stepEncoder:
			bs := levelScope(input, "input", s.level).In("block%d", s.block)
			h = ResBlock(bs.In("res"), h, emb, s.out, NoResample, opts)
			if s.attn {
				h = AttentionBlock(bs.In("attn"), h, s.heads, opts)
			}
			skips = append(skips, h)
		case stepDown:
			ds := levelScope(input, "input", s.level).In("down")
			if cfg.ResblockUpdown {
				h = ResBlock(ds, h, emb, s.out, Down, opts)
			} else {
				h = Downsample(ds, h, cfg.ConvResample)
			}
			skips = append(skips, h)
		case stepMiddle:
			ms := scope.In("middle")
			h = ResBlock(ms.In("res0"), h, emb, s.out, NoResample, opts)
			h = AttentionBlock(ms.In("attn"), h, s.heads, opts)
			h = ResBlock(ms.In("res1"), h, emb, s.out, NoResample, opts)
		case stepDecoder:
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			if skip.Shape().Dim(3) != s.skip {
				exceptions.Panicf("adm: decoder block %s expects a %d-channel skip, got %s", s.name, s.skip, skip.Shape())
			}
			bs := levelScope(output, "output", s.level).In("block%d", s.block)
			h = ResBlock(bs.In("res"), Concatenate([]*Node{h, skip}, 3), emb, s.out, NoResample, opts)
			if s.attn {
				h = AttentionBlock(bs.In("attn"), h, s.heads, opts)
			}
			if s.block == cfg.NumResBlocks {
				tap(decoderAlias(s.level), h)
			}
		case stepUp:
			us := levelScope(output, "output", s.level).In("up")
			if cfg.ResblockUpdown {
				h = ResBlock(us, h, emb, s.out, Up, opts)
			} else {
				h = Upsample(us, h, cfg.ConvResample)
			}
		}
		tap(s.name, h)
	}

	outScope := scope.In("out")
	h = nn.SiLU(nn.GroupNorm(outScope.In("norm"), h, opts.NormGroups, groupNormEps))
	h = conv3x3(outScope.In("conv"), h, cfg.NetworkOutChannels(), !opts.NoZeroInit)
	if cfg.LearnSigma {
		out.Eps = Slice(h, AxisRange(), AxisRange(), AxisRange(), AxisRange(0, cfg.OutChannels))
		out.Var = Slice(h, AxisRange(), AxisRange(), AxisRange(), AxisRange(cfg.OutChannels, 2*cfg.OutChannels))
	} else {
		out.Eps = h
	}
	return out
}

// declareVariables creates every variable of the UNet, and its graph parameter, before any op.
// The Go backend (compute v0.1.2, v0.1.3) runs only the graph nodes up to the last output, yet is fed
// every variable the graph uses: a variable whose parameter node comes after the last output
// (the output head's, when only taps are returned, as Encode does) panics with "index out of
// range". Declared first, the parameters come before every output. The layers then set the
// initialisers.
func (u *UNet) declareVariables(x *Node) {
	store := u.scope.Store()
	for _, p := range TorchParams(u.cfg) {
		shape := shapes.Make(x.DType(), p.Transform.Shape(p.TorchShape)...)
		store.VariableWithShape(model.JoinPath(u.scope.Scope(), p.Path), shape, nil).NodeValue(x.Graph())
	}
}

// NumParams is the number of parameters of the UNet of cfg, computed from its layout (it equals
// the total size of the variables a built graph creates, and guided-diffusion's count).
func NumParams(cfg Config) int {
	total := 0
	for _, p := range TorchParams(cfg) {
		size := 1
		for _, d := range p.TorchShape {
			size *= d
		}
		total += size
	}
	return total
}
