// Package teachers holds the frozen generative teachers that distillation and the interpreter
// read features from, each described by its pre-training checkpoint: the ADM diffusion teacher
// ("encoded dataset": real images noised to step t with fresh noise, one UNet pass) and the
// BigGAN teacher (gan.go, "synthesized dataset": images and features generated on the fly,
// class-conditional as the paper's ImageNet BigGAN, or not).
package teachers

import (
	"fmt"
	"os"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/diffusion"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/models/regressor"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// Scope is where a teacher lives in a distillation or interpreter store (the UNet under
// Scope/unet). Its variables are frozen and not saved in those runs' checkpoints.
const Scope = "/teacher"

// Diffusion is a frozen ADM teacher described by its pre-training checkpoint.
type Diffusion struct {
	Config     adm.Config
	Name       string // the ADM configuration's registered name
	Process    *diffusion.Diffusion
	Step       int           // encoding timestep t
	Taps       []adm.TapInfo // the features the interpreter reads, in the order asked
	Size       []int         // (height, width) the teacher was pre-trained at; nil if unknown
	Checkpoint string        // the checkpoint file
	FromScope  string        // its scope holding the UNet (the EMA weights: /ema/unet)
}

// LoadDiffusion reads the teacher's configuration from the stored settings of its checkpoint
// (ckpt: a file, or a folder whose newest checkpoint is taken), without loading its weights
// (Load does). The ADM configuration is the teacher's "adm" setting; admSetting, when not
// empty, must name the same one (it is an error naming both otherwise) and names it for a
// checkpoint that lacks the setting. The diffusion process (diffusion_steps, noise_schedule)
// is the pre-training run's. step is the encoding timestep t; taps empty means
// adm.DefaultTaps.
func LoadDiffusion(ckpt, fromScope, admSetting string, step int, taps []string) (*Diffusion, error) {
	if ckpt == "" {
		return nil, fmt.Errorf("teacher: no checkpoint given (set teacher = <a checkpoint of pretrain-diffusion, or its folder>)")
	}
	if st, err := os.Stat(ckpt); err == nil && st.IsDir() {
		last, ok, err := train.Latest(ckpt)
		if err != nil {
			return nil, fmt.Errorf("teacher %s: %w", ckpt, err)
		}
		if !ok {
			return nil, fmt.Errorf("teacher %s: the folder holds no checkpoint (ckpt-*.safetensors)", ckpt)
		}
		ckpt = last.Path
	}
	settings, err := train.ReadSettings(ckpt)
	if err != nil {
		return nil, fmt.Errorf("teacher: %w", err)
	}
	name, _ := settings["adm"].(string)
	switch {
	case name == "" && admSetting == "":
		return nil, fmt.Errorf("teacher %s: the checkpoint has no \"adm\" setting: set adm = <its ADM configuration> (one of %s)",
			ckpt, strings.Join(adm.ConfigNames(), ", "))
	case name == "":
		name = admSetting
	case admSetting != "" && admSetting != name:
		return nil, fmt.Errorf("adm = %q conflicts with the teacher %s, pre-trained as adm = %q: "+
			"leave adm empty to take the teacher's configuration, or give a teacher pre-trained as %q",
			admSetting, ckpt, name, admSetting)
	}
	t, err := newDiffusion(ckpt, name, settings, step, taps)
	if err != nil {
		return nil, err
	}
	t.Checkpoint, t.FromScope = ckpt, fromScope
	return t, nil
}

// NewDiffusion is the teacher of the registered ADM configuration name without a checkpoint
// (its weights are whatever the store holds: e.g. freshly initialised, for a benchmark or a
// test), with the diffusion process of the pre-training settings (noise_schedule,
// diffusion_steps; pretrain.DiffusionDefaults where settings, which may be nil, do not say).
// step is the encoding timestep t; taps empty means adm.DefaultTaps.
func NewDiffusion(name string, settings map[string]any, step int, taps []string) (*Diffusion, error) {
	return newDiffusion(name, name, settings, step, taps)
}

// newDiffusion makes the teacher; what names it in errors (its checkpoint, or its name).
func newDiffusion(what, name string, settings map[string]any, step int, taps []string) (*Diffusion, error) {
	cfg, err := adm.GetConfig(name)
	if err != nil {
		return nil, fmt.Errorf("teacher %s: %w", what, err)
	}
	if cfg.NumClasses > 0 {
		return nil, fmt.Errorf("teacher %s: adm %s is class-conditional; DreamTeacher encodes unlabeled images with an unconditional teacher", what, name)
	}
	// The diffusion process of the pre-training run (pre-training's defaults where the
	// checkpoint does not say).
	procSettings := map[string]any{}
	for _, k := range []string{"noise_schedule", "diffusion_steps"} {
		procSettings[k] = pretrain.DiffusionDefaults()[k]
		if v, ok := settings[k]; ok {
			procSettings[k] = v
		}
	}
	procStore := model.NewStore()
	configs.SetDefaults(procStore, procSettings)
	proc, err := pretrain.Process(procStore, cfg)
	if err != nil {
		return nil, fmt.Errorf("teacher %s: %w", what, err)
	}
	if step < 0 || step >= proc.NumTimesteps {
		return nil, fmt.Errorf("t = %d: the teacher %s has a %d-step process (t in 0..%d)", step, what, proc.NumTimesteps, proc.NumTimesteps-1)
	}
	if len(taps) == 0 {
		taps = adm.DefaultTaps(cfg)
	}
	t := &Diffusion{Config: cfg, Name: name, Process: proc, Step: step}
	seen := map[string]bool{}
	for _, tap := range taps {
		info, err := adm.LookupTap(cfg, tap)
		if err != nil {
			return nil, fmt.Errorf("taps: %w", err)
		}
		if seen[tap] {
			return nil, fmt.Errorf("taps: %q is listed twice", tap)
		}
		seen[tap] = true
		t.Taps = append(t.Taps, info)
	}
	if size, ok := settings["size"].([]int); ok && len(size) == 2 {
		t.Size = size
	}
	return t, nil
}

// TapNames are the names of the teacher's taps, in order.
func (t *Diffusion) TapNames() []string {
	names := make([]string, len(t.Taps))
	for i, tap := range t.Taps {
		names[i] = tap.Name
	}
	return names
}

// Features builds the teacher's features of images [N, H, W, 3] in [0, 1] under scope (the
// teacher's scope; the UNet is under scope/unet): noise to step t with fresh noise from the
// store's RNG, one UNet pass. The scope is frozen (nn.Freeze), so the UNet runs as in
// inference (no dropout) even inside a training graph, and the features carry no gradient.
// They are keyed by tap name.
func (t *Diffusion) Features(scope *model.Scope, images *Node) map[string]*Node {
	nn.Freeze(scope)
	x0 := AddScalar(MulScalar(images, 2), -1)
	unetScope := scope.In("unet")
	out := t.Process.EncodeAt(unetScope, adm.New(unetScope, t.Config).Taps(t.TapNames()...), x0, t.Step, nil)
	feats := make(map[string]*Node, len(t.Taps))
	for _, tap := range t.Taps {
		feats[tap.Name] = StopGradient(out.Taps[tap.Name])
	}
	return feats
}

// Load copies the teacher's weights (its FromScope) into the store under Scope/unet,
// strictly (the variables must have been declared: every one must be in the checkpoint), and
// makes every variable under Scope non-trainable. A teacher without a checkpoint (NewDiffusion)
// keeps the random weights its variables are initialised with, frozen.
func (t *Diffusion) Load(store *model.Store) error {
	if t.Checkpoint == "" { // NewDiffusion's teacher: its random initial weights stay, frozen
		freeze(store)
		return nil
	}
	return loadFrozen(store, t.Checkpoint, t.FromScope, Scope+"/unet")
}

// loadFrozen copies the variables under fromScope of checkpoint into the store under to,
// strictly, and makes every variable under Scope non-trainable: the one way a teacher loads.
func loadFrozen(store *model.Store, checkpoint, fromScope, to string) error {
	if _, err := train.LoadScope(store, checkpoint, train.LoadSpec{From: fromScope, To: to, Strict: true}); err != nil {
		return fmt.Errorf("teacher: %w", err)
	}
	freeze(store)
	return nil
}

// freeze makes every variable under Scope non-trainable.
func freeze(store *model.Store) {
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), Scope+"/") {
			v.SetTrainable(false)
		}
	}
}

// Describe says which teacher this is, for logs.
func (t *Diffusion) Describe() string {
	s := make([]string, len(t.Taps))
	for i, tap := range t.Taps {
		s[i] = fmt.Sprintf("%s (%d ch, stride %d)", tap.Name, tap.Channels, tap.Stride)
	}
	from := fmt.Sprintf("from %s (%s)", t.Checkpoint, t.FromScope)
	if t.Checkpoint == "" {
		from = "with random weights"
	}
	return fmt.Sprintf("teacher %s %s, t=%d, taps %s", t.Name, from, t.Step, strings.Join(s, ", "))
}

// TargetName turns a tap name into a scope-safe name (the regressor's output names).
func TargetName(tap string) string { return strings.ReplaceAll(tap, "/", "_") }

// Targets are the regressor's outputs that predict the teacher's taps for an input of h x w.
func (t *Diffusion) Targets(h, w int) []regressor.Target {
	out := make([]regressor.Target, len(t.Taps))
	for i, tap := range t.Taps {
		out[i] = regressor.Target{Name: TargetName(tap.Name), Channels: tap.Channels, Height: h / tap.Stride, Width: w / tap.Stride}
	}
	return out
}
