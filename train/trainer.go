// Package train runs training: one compiled graph per step holding the forward pass, the
// losses, the backward pass, gradient clipping, the optimiser update, the EMA of the weights
// and the step counter; learning-rate schedules; checkpoints that are atomic and resume
// exactly; and the training loop with its progress bar, metrics log and loss curves.
package train

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// LossFn builds the losses of one training step from the batch inputs, in training mode. It
// returns named scalar terms; the term "loss" is minimised, the others are logged.
type LossFn func(scope *model.Scope, batch []*Node) map[string]*Node

// Config of a Trainer.
type Config struct {
	Optimizer OptimizerConfig
	Schedule  Schedule
	// ClipNorm > 0 clips the global gradient norm (torch.nn.utils.clip_grad_norm_).
	ClipNorm float64
	// EMADecay > 0 keeps an exponential moving average of the trained weights under "/ema".
	EMADecay float64
	// Train lists the scope prefixes whose trainable variables are optimised (e.g. "/student");
	// empty means every trainable variable the graph uses. Variables outside stay frozen.
	Train []string
	// Frozen lists scope prefixes inside Train that are not optimised (e.g. a pre-trained
	// backbone under "/model" probed with its features as they are).
	Frozen []string
	// LRMult scales the learning rate of the variables under a scope prefix (the longest
	// matching prefix wins; 1 elsewhere), as PyTorch's parameter groups or mmseg's lr_mult: e.g.
	// {"/model/backbone": 0.1} fine-tunes a pre-trained backbone ten times slower than its new
	// head. Weight decay, applied with the learning rate, scales with it.
	LRMult map[string]float64
}

// lrMult is the learning-rate multiplier of a variable path (Config.LRMult).
func (c Config) lrMult(path string) float64 {
	mult, best := 1.0, -1
	for prefix, m := range c.LRMult {
		p := strings.TrimSuffix(prefix, "/")
		if (path == p || strings.HasPrefix(path, p+"/")) && len(p) > best {
			mult, best = m, len(p)
		}
	}
	return mult
}

// StepVar is the path of the optimiser step counter (int64), saved in checkpoints.
const StepVar = "/train/step"

// Trainer compiles and runs the training step.
type Trainer struct {
	store *model.Store
	cfg   Config
	opt   Optimizer
	exec  *model.Exec
	terms []string // names of the loss terms, sorted, fixed at the first compilation
	// checked are the floating-point variables a step updates, whose new values are checked for
	// NaN and Inf (fixed at the first compilation).
	checked []string
	lossFn  LossFn
}

// Result of one step.
type Result struct {
	Step     int64 // number of optimiser steps taken so far, this one included
	Terms    map[string]float64
	LR       float64
	GradNorm float64
	// Finite is false when the loss, the gradient norm or a new value of an updated variable
	// was NaN or Inf: the step was not applied (no variable changed).
	Finite bool
	// NonFinite names the updated variables whose new values were NaN or Inf (empty when the
	// loss or gradient alone was not finite).
	NonFinite []string
}

// Loss is the minimised term.
func (r Result) Loss() float64 { return r.Terms["loss"] }

// NewTrainer creates a trainer; the graph is compiled at the first Step.
func NewTrainer(b compute.Backend, store *model.Store, cfg Config, lossFn LossFn) (*Trainer, error) {
	if err := cfg.Schedule.Validate(); err != nil {
		return nil, err
	}
	opt, err := NewOptimizer(cfg.Optimizer)
	if err != nil {
		return nil, err
	}
	t := &Trainer{store: store, cfg: cfg, opt: opt, lossFn: lossFn}
	t.exec, err = model.NewExec(b, store, t.stepGraph)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Step runs one training step on a batch (the inputs of LossFn).
func (t *Trainer) Step(batch ...*tensors.Tensor) (Result, error) {
	args := make([]any, len(batch))
	for i, b := range batch {
		args[i] = b
	}
	out, err := t.exec.Exec(args...)
	if err != nil {
		return Result{}, err
	}
	r := Result{Terms: map[string]float64{}}
	for i, name := range t.terms {
		r.Terms[name] = scalarValue(out[i])
	}
	n := len(t.terms)
	r.LR = scalarValue(out[n])
	r.GradNorm = scalarValue(out[n+1])
	r.Finite = out[n+2].Value().(bool)
	r.Step = out[n+3].Value().(int64)
	if !r.Finite {
		for i, ok := range out[n+4].Value().([]bool) {
			if !ok {
				r.NonFinite = append(r.NonFinite, t.checked[i])
			}
		}
	}
	return r, nil
}

// CurrentStep returns the number of steps taken (0 before the first, or as restored).
func CurrentStep(store *model.Store) int64 {
	v := store.GetVariable(StepVar)
	if v == nil {
		return 0
	}
	return v.MustValue().Value().(int64)
}

func scalarValue(t *tensors.Tensor) float64 {
	switch v := t.Value().(type) {
	case float32:
		return float64(v)
	case float64:
		return v
	}
	panic(fmt.Sprintf("train: unexpected scalar %s", t.Shape()))
}

func (t *Trainer) trained(v *model.Variable, g *Graph) bool {
	if !v.Trainable || !v.InUseByGraph(g) || !v.DType().IsFloat() {
		return false
	}
	return (len(t.cfg.Train) == 0 || underAny(v.Path(), t.cfg.Train)) && !underAny(v.Path(), t.cfg.Frozen)
}

// applyGroups runs the optimiser on the variables grouped by learning-rate multiplier
// (Config.LRMult), each group with its scaled rate; one group (and one call) without multipliers.
func (t *Trainer) applyGroups(scope *model.Scope, vars []*model.Variable, grads []*Node, lr, step *Node) []*Node {
	if len(t.cfg.LRMult) == 0 {
		return t.opt.Apply(scope, vars, grads, lr, step)
	}
	groups := map[float64][]int{}
	var mults []float64
	for i, v := range vars {
		m := t.cfg.lrMult(v.Path())
		if _, ok := groups[m]; !ok {
			mults = append(mults, m)
		}
		groups[m] = append(groups[m], i)
	}
	out := make([]*Node, len(vars))
	for _, m := range mults {
		idx := groups[m]
		gv, gg := make([]*model.Variable, len(idx)), make([]*Node, len(idx))
		for j, i := range idx {
			gv[j], gg[j] = vars[i], grads[i]
		}
		for j, nv := range t.opt.Apply(scope, gv, gg, MulScalar(lr, m), step) {
			out[idx[j]] = nv
		}
	}
	return out
}

func (t *Trainer) stepGraph(scope *model.Scope, batch []*Node) []*Node {
	g := batch[0].Graph()
	store := scope.Store()
	store.SetTraining(g, true)
	terms := t.lossFn(scope, batch)
	loss, ok := terms["loss"]
	if !ok || !loss.Shape().IsScalar() {
		panic(fmt.Sprintf("train: the loss function must return a scalar term \"loss\", got %v", termNames(terms)))
	}

	// Variables to optimise, in a fixed order.
	var vars []*model.Variable
	for v := range store.IterVariables() {
		if t.trained(v, g) {
			vars = append(vars, v)
		}
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Path() < vars[j].Path() })
	if len(vars) == 0 {
		panic("train: the loss depends on no trainable variable (check Config.Train)")
	}
	nodes := make([]*Node, len(vars))
	for i, v := range vars {
		nodes[i] = v.NodeValue(g)
	}
	grads := Gradient(loss, nodes...)

	// Global gradient norm, clipping.
	sq := ScalarZero(g, dtypes.Float32)
	for _, gr := range grads {
		sq = Add(sq, ConvertDType(ReduceAllSum(Square(gr)), dtypes.Float32))
	}
	gradNorm := Sqrt(sq)
	if t.cfg.ClipNorm > 0 {
		coef := Min(DivScalar(Inverse(AddScalar(gradNorm, 1e-6)), 1/t.cfg.ClipNorm), OnesLike(gradNorm))
		for i := range grads {
			grads[i] = Mul(grads[i], ConvertDType(coef, grads[i].DType()))
		}
	}
	finite := LogicalAnd(IsFinite(ConvertDType(loss, dtypes.Float32)), IsFinite(gradNorm))

	// Step counter, learning rate, update.
	stepVar := store.VariableWithValue(StepVar, int64(0)).SetTrainable(false)
	step := stepVar.NodeValue(g) // steps already taken = 0-based index of this one
	lr := t.cfg.Schedule.Graph(step)
	next := AddScalar(step, 1)
	newValues := t.applyGroups(scope, vars, grads, lr, ConvertDType(next, dtypes.Float64))
	for i, v := range vars {
		v.SetNodeValue(newValues[i])
	}
	if t.cfg.EMADecay > 0 {
		// The average starts at the weights before the first update it sees.
		startedVar := store.VariableWithValue("/train/ema_started", false).SetTrainable(false)
		started := startedVar.NodeValue(g)
		for i, v := range vars {
			ema := store.VariableWithShape("/ema"+v.Path(), v.Shape(), func(g *Graph, shape shapes.Shape) *Node {
				return Zeros(g, shape)
			}).SetTrainable(false)
			prev := Where(started, ema.NodeValue(g), nodes[i])
			d := t.cfg.EMADecay
			ema.SetNodeValue(Add(MulScalar(prev, d), MulScalar(v.NodeValue(g), 1-d)))
		}
		startedVar.SetNodeValue(OnesLike(started))
	}
	stepVar.SetNodeValue(next)

	// The variables this step changes (weights, optimiser state, running statistics, EMA, RNG
	// state, step), in a fixed order. A finite loss and gradient do not make their new values
	// finite (a BatchNorm running variance overflows on its own), so each floating-point one is
	// checked too.
	var changed []*model.Variable
	for v := range store.IterVariables() {
		if v.ChangedInGraph(g) {
			changed = append(changed, v)
		}
	}
	sort.Slice(changed, func(i, j int) bool { return changed[i].Path() < changed[j].Path() })
	t.checked = t.checked[:0]
	var flags []*Node
	for _, v := range changed {
		if v.DType().IsFloat() {
			t.checked = append(t.checked, v.Path())
			// x*0 is 0 for a finite x and NaN for NaN or ±Inf, so the sum is finite exactly
			// when every element is: one vectorised pass instead of a Bool tensor reduced.
			flags = append(flags, IsFinite(ReduceAllSum(MulScalar(v.NodeValue(g), 0))))
		}
	}
	varsFinite := Stack(flags, 0)
	finite = LogicalAnd(finite, LogicalAll(varsFinite))

	// A non-finite step changes nothing: every changed variable keeps its value.
	params := map[string]*Node{}
	for _, n := range g.Nodes() {
		if n.Type() == NodeTypeParameter {
			params[n.GetParameterName()] = n
		}
	}
	for _, v := range changed {
		if old, ok := params[v.Path()]; ok {
			v.SetNodeValue(Where(finite, v.NodeValue(g), old))
		}
	}

	t.terms = termNames(terms)
	out := make([]*Node, 0, len(t.terms)+5)
	for _, name := range t.terms {
		out = append(out, ConvertDType(terms[name], dtypes.Float32))
	}
	return append(out, ConvertDType(lr, dtypes.Float32), gradNorm, finite, stepVar.NodeValue(g), varsFinite)
}

func termNames(terms map[string]*Node) []string {
	names := make([]string, 0, len(terms))
	for n := range terms {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
