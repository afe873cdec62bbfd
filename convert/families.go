package convert

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/backbones/convnext"
	"github.com/dreamteacher-go/dreamteacher/models/backbones/resnet"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// A family maps the checkpoints of one architecture family onto our variables. Each has one
// key-remapping function (resnet.TorchvisionKey, convnext.TimmKey, adm.TorchParams); a family
// whose checkpoints come in several layouts first renames their keys to one canonical layout
// (ConvNeXt: timm's, as timm's own checkpoint_filter_fn does).
type family struct {
	name string
	// layouts are the checkpoint layouts the family reads, each recognised by anchor keys.
	layouts []layout
	// plan lists our variables and, for each, the canonical checkpoint key it is read from.
	plan func(opts Options, ck *canonical) (*plan, error)
	// archs lists the registered architecture names.
	archs func() []string
}

// layout is one way a family's checkpoints name their tensors.
type layout struct {
	name    string
	anchors []string // keys every checkpoint of this layout has
	// rename maps a key of this layout to the canonical one ("" drops it: not a parameter of
	// ours, reported unused). nil: keys are already canonical.
	rename func(key string) string
}

// canonical is a checkpoint's tensors under their canonical keys.
type canonical struct {
	layout  string
	prefix  string             // stripped from every file key
	tensors map[string]*Tensor // canonical key -> tensor (Tensor.Key is the file's key)
}

// plan is what to convert.
type plan struct {
	arch    string
	targets []target
}

// target is one variable of ours.
type target struct {
	path      string // relative to the scope, without a leading "/"
	shape     []int  // our shape
	key       string // canonical checkpoint key
	perm      []int  // axis permutation from PyTorch's layout to ours (nil: none)
	trainable bool
	// convert, when set, turns the tensor's values into ours instead of perm.
	convert func(t *Tensor, data []float32) ([]float32, error)
}

var families = map[string]*family{
	"resnet":   resnetFamily,
	"convnext": convnextFamily,
	"adm":      admFamily,
}

// FamilyNames lists the families Run converts.
func FamilyNames() []string {
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func getFamily(name string) (*family, error) {
	f, ok := families[name]
	if !ok {
		return nil, fmt.Errorf("unknown family %q: known families are %s", name, strings.Join(FamilyNames(), ", "))
	}
	return f, nil
}

// familyOfArch guesses the family of an architecture name.
func familyOfArch(arch string) string {
	for _, name := range FamilyNames() {
		if slices.Contains(families[name].archs(), arch) {
			return name
		}
	}
	return ""
}

// canonicalize finds the layout and the key prefix of a checkpoint and renames its keys. With
// prefix "" it detects the prefix: the one under which some layout's anchor keys all exist
// ("module." of DataParallel, "backbone." of mmseg/mmdet, "" most often).
func (f *family) canonicalize(sd *StateDict, prefix string) (*canonical, error) {
	type match struct {
		layout *layout
		prefix string
	}
	var matches []match
	for i := range f.layouts {
		l := &f.layouts[i]
		var prefixes []string
		if prefix != "" {
			prefixes = []string{prefix}
		} else {
			for _, k := range sd.Keys {
				if p, ok := strings.CutSuffix(k, l.anchors[0]); ok && !slices.Contains(prefixes, p) {
					prefixes = append(prefixes, p)
				}
			}
		}
		for _, p := range prefixes {
			all := true
			for _, a := range l.anchors {
				if sd.Tensors[p+a] == nil {
					all = false
					break
				}
			}
			if all {
				matches = append(matches, match{l, p})
			}
		}
	}
	switch {
	case len(matches) == 0:
		var want []string
		for _, l := range f.layouts {
			want = append(want, fmt.Sprintf("%s (%s)", l.name, strings.Join(l.anchors, ", ")))
		}
		where := ""
		if prefix != "" {
			where = fmt.Sprintf(" under the prefix %q", prefix)
		}
		return nil, fmt.Errorf("%s: not a %s checkpoint%s: none of its layouts' keys were found: %s; the file's keys begin %s",
			sd.Path, f.name, where, strings.Join(want, "; "), sampleKeys(sd.Keys, 8))
	case len(matches) > 1:
		var found []string
		for _, m := range matches {
			found = append(found, fmt.Sprintf("%s under %q", m.layout.name, m.prefix))
		}
		return nil, fmt.Errorf("%s: ambiguous %s checkpoint: %s; choose one with the prefix option", sd.Path, f.name, strings.Join(found, ", "))
	}
	m := matches[0]
	ck := &canonical{layout: m.layout.name, prefix: m.prefix, tensors: map[string]*Tensor{}}
	for _, k := range sd.Keys {
		rel, ok := strings.CutPrefix(k, m.prefix)
		if !ok {
			continue
		}
		if m.layout.rename != nil {
			rel = m.layout.rename(rel)
		}
		if rel == "" {
			continue
		}
		if prev, dup := ck.tensors[rel]; dup {
			return nil, fmt.Errorf("%s: keys %q and %q both map to %q", sd.Path, prev.Key, k, rel)
		}
		ck.tensors[rel] = sd.Tensors[k]
	}
	return ck, nil
}

func sampleKeys(keys []string, n int) string {
	if len(keys) <= n {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:n], ", ") + fmt.Sprintf(", ... (%d keys)", len(keys))
}

// variable is one variable of a built model.
type variable struct {
	path      string
	shape     []int
	trainable bool
}

// modelVariables builds (never runs) a model on a [1, size, size, 3] float32 placeholder and
// lists its variables, paths relative to the root without the leading "/".
func modelVariables(size int, build func(scope *model.Scope, x *Node)) (vars []variable, err error) {
	g := NewGraph(backend.Go(), "convert")
	defer g.Finalize()
	store := model.NewStore()
	defer func() {
		if e := recover(); e != nil {
			err = fmt.Errorf("building the model: %v", e)
		}
	}()
	model.SetStore(g, store)
	store.SetTraining(g, false)
	build(store.RootScope(), Parameter(g, "x", shapes.Make(dtypes.Float32, 1, size, size, 3)))
	for v := range store.IterVariables() {
		vars = append(vars, variable{path: strings.TrimPrefix(v.Path(), "/"), shape: v.Shape().Dimensions, trainable: v.Trainable})
	}
	return vars, nil
}

// countIndices returns 1 + the largest integer captured by re over the keys (0 if none).
func countIndices(keys map[string]*Tensor, re *regexp.Regexp) int {
	n := 0
	for k := range keys {
		if m := re.FindStringSubmatch(k); m != nil {
			i, _ := strconv.Atoi(m[1])
			n = max(n, i+1)
		}
	}
	return n
}

// ---- ResNet (torchvision; timm and mmseg/mmdet ResNets share its keys) -------------------------

var resnetFamily = &family{
	name: "resnet",
	layouts: []layout{{
		name:    "torchvision",
		anchors: []string{"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight"},
	}},
	archs: func() []string { return sortedKeys(resnet.Configs) },
	plan:  planResNet,
}

func planResNet(opts Options, ck *canonical) (*plan, error) {
	t := ck.tensors
	conv1 := t["conv1.weight"]
	if len(conv1.Shape) != 4 {
		return nil, fmt.Errorf("conv1.weight has shape %v, want [out, in, kh, kw]", conv1.Shape)
	}
	inferred := resnet.Config{Block: resnet.Basic, Width: conv1.Shape[0]}
	if t["layer1.0.conv3.weight"] != nil {
		inferred.Block = resnet.Bottleneck
	}
	for i := range inferred.Layers {
		inferred.Layers[i] = countIndices(t, regexp.MustCompile(fmt.Sprintf(`^layer%d\.(\d+)\.conv1\.weight$`, i+1)))
	}
	var bopts backbones.Options
	switch conv1.Shape[2] {
	case 7:
	case 3:
		bopts.SmallInputStem = true // the CIFAR stem: 3x3 stride-1 conv1 and no max-pool
	default:
		return nil, fmt.Errorf("conv1.weight has a %dx%d kernel: neither torchvision's 7x7 stem nor a CIFAR 3x3 one", conv1.Shape[2], conv1.Shape[3])
	}
	describe := func(c resnet.Config) string {
		block := "BasicBlock"
		if c.Block == resnet.Bottleneck {
			block = "Bottleneck"
		}
		return fmt.Sprintf("%s %v, width %d", block, c.Layers, c.Width)
	}
	cfg, arch := inferred, ""
	switch c := opts.Config.(type) {
	case nil:
		if opts.Arch != "" {
			known, ok := resnet.Configs[opts.Arch]
			if !ok {
				return nil, fmt.Errorf("unknown ResNet %q: known ones are %s", opts.Arch, strings.Join(sortedKeys(resnet.Configs), ", "))
			}
			cfg, arch = known, opts.Arch
		}
	case resnet.Config:
		cfg, arch = c, "custom"
	default:
		return nil, fmt.Errorf("the resnet family takes a resnet.Config, got %T", opts.Config)
	}
	if arch != "" && cfg != inferred {
		return nil, fmt.Errorf("the checkpoint is a ResNet with %s, not %s (%s)", describe(inferred), arch, describe(cfg))
	}
	if arch == "" || arch == "custom" {
		arch = "resnet(" + describe(cfg) + ")"
		for _, name := range sortedKeys(resnet.Configs) {
			if resnet.Configs[name] == cfg {
				arch = name
			}
		}
	}
	if fc := t["fc.weight"]; fc != nil && len(fc.Shape) == 2 {
		bopts.NumClasses = fc.Shape[0]
	}
	targets, err := resnetTargets(cfg, bopts)
	return &plan{arch: arch, targets: targets}, err
}

// resnetTargets lists the variables of a ResNet with their torchvision keys.
func resnetTargets(cfg resnet.Config, bopts backbones.Options) ([]target, error) {
	vars, err := modelVariables(64, func(scope *model.Scope, x *Node) { resnet.Build(scope, x, cfg, bopts) })
	if err != nil {
		return nil, err
	}
	var targets []target
	for _, v := range vars {
		key, perm := resnet.TorchvisionKey(v.path)
		targets = append(targets, target{path: v.path, shape: v.shape, key: key, perm: perm, trainable: v.trainable})
	}
	return targets, nil
}

// ---- ConvNeXt (timm; facebookresearch/ConvNeXt and torchvision renamed to timm's keys) ---------

var convnextFamily = &family{
	name: "convnext",
	layouts: []layout{
		{name: "timm", anchors: []string{"stem.0.weight", "stages.0.blocks.0.conv_dw.weight"}},
		{name: "facebookresearch", anchors: []string{"downsample_layers.0.0.weight", "stages.0.0.dwconv.weight"}, rename: fbToTimm},
		{name: "torchvision", anchors: []string{"features.0.0.weight", "features.1.0.block.0.weight"}, rename: torchvisionToTimm},
	},
	archs: func() []string { return sortedKeys(convnext.Configs) },
	plan:  planConvNeXt,
}

var (
	fbStage   = regexp.MustCompile(`^stages\.(\d+)\.(\d+)\.(.*)$`)
	fbDown    = regexp.MustCompile(`^downsample_layers\.(\d+)\.(\d+)\.(.*)$`)
	tvFeature = regexp.MustCompile(`^features\.(\d+)\.(\d+)\.(.*)$`)
)

// fbToTimm renames a facebookresearch/ConvNeXt key to timm's, as timm's checkpoint_filter_fn.
func fbToTimm(k string) string {
	switch {
	case strings.HasPrefix(k, "downsample_layers.0."):
		return "stem." + strings.TrimPrefix(k, "downsample_layers.0.")
	case fbDown.MatchString(k):
		m := fbDown.FindStringSubmatch(k)
		return fmt.Sprintf("stages.%s.downsample.%s.%s", m[1], m[2], m[3])
	case fbStage.MatchString(k):
		m := fbStage.FindStringSubmatch(k)
		rest := strings.NewReplacer("dwconv", "conv_dw", "pwconv1", "mlp.fc1", "pwconv2", "mlp.fc2").Replace(m[3])
		return fmt.Sprintf("stages.%s.blocks.%s.%s", m[1], m[2], rest)
	case strings.HasPrefix(k, "norm."):
		return "head." + k
	case strings.HasPrefix(k, "head."):
		return "head.fc." + strings.TrimPrefix(k, "head.")
	}
	return k
}

// torchvisionToTimm renames a torchvision ConvNeXt key to timm's: features.0 is the stem,
// features.2s+1 stage s's blocks (block.0 dwconv, block.2 norm, block.3 and block.5 the MLP,
// layer_scale), features.2s its down-sampler, classifier.0 and .2 the head's norm and fc.
func torchvisionToTimm(k string) string {
	if rest, ok := strings.CutPrefix(k, "classifier."); ok {
		switch {
		case strings.HasPrefix(rest, "0."):
			return "head.norm." + rest[2:]
		case strings.HasPrefix(rest, "2."):
			return "head.fc." + rest[2:]
		}
		return k
	}
	if rest, ok := strings.CutPrefix(k, "features.0."); ok {
		return "stem." + rest
	}
	m := tvFeature.FindStringSubmatch(k)
	if m == nil {
		return k
	}
	f, _ := strconv.Atoi(m[1])
	if f%2 == 0 {
		return fmt.Sprintf("stages.%d.downsample.%s.%s", f/2, m[2], m[3])
	}
	leaf, ok := map[string]string{
		"block.0.weight": "conv_dw.weight", "block.0.bias": "conv_dw.bias",
		"block.2.weight": "norm.weight", "block.2.bias": "norm.bias",
		"block.3.weight": "mlp.fc1.weight", "block.3.bias": "mlp.fc1.bias",
		"block.5.weight": "mlp.fc2.weight", "block.5.bias": "mlp.fc2.bias",
		"layer_scale": "gamma",
	}[m[3]]
	if !ok {
		return k
	}
	return fmt.Sprintf("stages.%d.blocks.%s.%s", (f-1)/2, m[2], leaf)
}

func planConvNeXt(opts Options, ck *canonical) (*plan, error) {
	t := ck.tensors
	stem := t["stem.0.weight"]
	if len(stem.Shape) != 4 {
		return nil, fmt.Errorf("the stem conv (%s) has shape %v, want [out, in, kh, kw]", stem.Key, stem.Shape)
	}
	var inferred convnext.Config
	for s := range 4 {
		inferred.Depths[s] = countIndices(t, regexp.MustCompile(fmt.Sprintf(`^stages\.%d\.blocks\.(\d+)\.conv_dw\.weight$`, s)))
		dw := t[fmt.Sprintf("stages.%d.blocks.0.conv_dw.weight", s)]
		fc1 := t[fmt.Sprintf("stages.%d.blocks.0.mlp.fc1.weight", s)]
		if dw == nil || fc1 == nil || len(dw.Shape) != 4 || len(fc1.Shape) < 2 {
			return nil, fmt.Errorf("stage %d has no first block with conv_dw and mlp.fc1 weights: not a four-stage ConvNeXt", s)
		}
		inferred.Dims[s] = dw.Shape[0]
		inferred.KernelSize = dw.Shape[2]
		inferred.MLPRatio = fc1.Shape[0] / dw.Shape[0]
	}
	var bopts backbones.Options
	switch stem.Shape[2] {
	case 4:
	case 2:
		bopts.SmallInputStem = true
	default:
		return nil, fmt.Errorf("the stem conv (%s) has a %dx%d kernel: neither the 4x4 patchify stem nor our 2x2 small-input one",
			stem.Key, stem.Shape[2], stem.Shape[3])
	}
	same := func(a, b convnext.Config) bool {
		a, b = a.WithDefaults(), b.WithDefaults()
		return a.Depths == b.Depths && a.Dims == b.Dims && a.KernelSize == b.KernelSize && a.MLPRatio == b.MLPRatio
	}
	cfg, arch := inferred, ""
	switch c := opts.Config.(type) {
	case nil:
		if opts.Arch != "" {
			known, ok := convnext.Configs[opts.Arch]
			if !ok {
				return nil, fmt.Errorf("unknown ConvNeXt %q: known ones are %s", opts.Arch, strings.Join(sortedKeys(convnext.Configs), ", "))
			}
			cfg, arch = known, opts.Arch
		}
	case convnext.Config:
		cfg, arch = c, "custom"
	default:
		return nil, fmt.Errorf("the convnext family takes a convnext.Config, got %T", opts.Config)
	}
	if arch != "" && !same(cfg, inferred) {
		return nil, fmt.Errorf("the checkpoint is a %s, not %s (%s)", inferred, arch, cfg)
	}
	if arch == "" || arch == "custom" {
		arch = inferred.String()
		for _, name := range sortedKeys(convnext.Configs) {
			if same(convnext.Configs[name], inferred) {
				arch = name
			}
		}
	}
	if fc := t["head.fc.weight"]; fc != nil && len(fc.Shape) == 2 {
		bopts.NumClasses = fc.Shape[0]
	}
	targets, err := convnextTargets(cfg, bopts)
	return &plan{arch: arch, targets: targets}, err
}

// convnextTargets lists the variables of a ConvNeXt with their timm keys.
func convnextTargets(cfg convnext.Config, bopts backbones.Options) ([]target, error) {
	vars, err := modelVariables(64, func(scope *model.Scope, x *Node) { convnext.Build(scope, x, cfg, bopts) })
	if err != nil {
		return nil, err
	}
	var targets []target
	for _, v := range vars {
		key, perm, err := convnext.TimmKey(v.path)
		if err != nil {
			return nil, err
		}
		targets = append(targets, target{path: v.path, shape: v.shape, key: key, perm: perm, trainable: v.trainable})
	}
	return targets, nil
}

// ---- ADM (guided-diffusion's UNetModel) ---------------------------------------------------------

var admFamily = &family{
	name:    "adm",
	layouts: []layout{{name: "guided-diffusion", anchors: []string{"input_blocks.0.0.weight", "out.2.weight"}}},
	archs:   adm.ConfigNames,
	plan:    planADM,
}

func planADM(opts Options, ck *canonical) (*plan, error) {
	var cfg adm.Config
	arch := opts.Arch
	switch c := opts.Config.(type) {
	case adm.Config:
		cfg = c
		if arch == "" {
			arch = "custom"
		}
	case nil:
		if arch == "" {
			guess := ""
			if m := matchingADMConfigs(ck); len(m) > 0 {
				guess = fmt.Sprintf(" (the checkpoint's keys and shapes match %s)", strings.Join(m, ", "))
			}
			return nil, fmt.Errorf("an ADM checkpoint needs its architecture%s: one of %s", guess, strings.Join(adm.ConfigNames(), ", "))
		}
		var err error
		if cfg, err = adm.GetConfig(arch); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("the adm family takes an adm.Config, got %T", opts.Config)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	params := adm.TorchParams(cfg)
	p := &plan{arch: arch}
	var wrong []string
	for _, tp := range params {
		tp := tp
		if t := ck.tensors[tp.Key]; t != nil && !slices.Equal(t.Shape, tp.TorchShape) {
			wrong = append(wrong, fmt.Sprintf("%s is %v, %s has %v", tp.Key, t.Shape, arch, tp.TorchShape))
		}
		p.targets = append(p.targets, target{
			path: tp.Path, shape: tp.Transform.Shape(tp.TorchShape), key: tp.Key, trainable: true,
			convert: func(t *Tensor, data []float32) ([]float32, error) {
				if !slices.Equal(t.Shape, tp.TorchShape) {
					return nil, fmt.Errorf("shape %v, want %v", t.Shape, tp.TorchShape)
				}
				return adm.Apply(tp.Transform, data, tp.TorchShape), nil
			},
		})
	}
	if len(wrong) > 0 {
		hint := ""
		if m := matchingADMConfigs(ck); len(m) > 0 {
			hint = fmt.Sprintf("; the checkpoint matches %s", strings.Join(m, ", "))
		}
		return nil, fmt.Errorf("the checkpoint is not a %s UNet: %d parameters have other shapes (%s)%s",
			arch, len(wrong), strings.Join(head(wrong, 5), "; "), hint)
	}
	return p, nil
}

// matchingADMConfigs lists the registered configurations whose parameters are exactly the
// checkpoint's, with the same shapes.
func matchingADMConfigs(ck *canonical) []string {
	var out []string
	for _, name := range adm.ConfigNames() {
		params := adm.TorchParams(adm.Configs[name])
		if len(params) != len(ck.tensors) {
			continue
		}
		ok := true
		for _, tp := range params {
			if t := ck.tensors[tp.Key]; t == nil || !slices.Equal(t.Shape, tp.TorchShape) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, name)
		}
	}
	return out
}

func head(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(slices.Clone(s[:n]), fmt.Sprintf("... %d more", len(s)-n))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
