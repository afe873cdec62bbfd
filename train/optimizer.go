package train

import (
	"fmt"
	"strings"

	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// OptimizerConfig selects and parameterises the optimiser. The zero values of the numeric
// fields mean the defaults of the paper's recipes (betas 0.9/0.95, eps 1e-8 for AdamW, 1e-6 for
// LAMB; momentum 0.9 for SGD and LARS, trust coefficient 1e-3 for LARS).
type OptimizerConfig struct {
	Name        string // "adamw", "lamb" or "sgd"
	WeightDecay float64
	Beta1       float64
	Beta2       float64
	Eps         float64
	Momentum    float64 // SGD, LARS
	Nesterov    bool    // SGD
	Eta         float64 // LARS trust coefficient (0: 1e-3)
}

// Optimizer updates variables from their gradients inside the training graph. Its state lives
// in variables under "/optimizer", so checkpoints hold it and resuming is exact.
type Optimizer interface {
	// Apply returns the new value of each variable, given its gradient, the learning rate and
	// the 1-based number of the step being taken (scalars). It also updates its state variables.
	Apply(scope *model.Scope, vars []*model.Variable, grads []*Node, lr, step *Node) []*Node
}

// NewOptimizer returns the configured optimiser, or an error naming the unknown one.
func NewOptimizer(cfg OptimizerConfig) (Optimizer, error) {
	switch strings.ToLower(cfg.Name) {
	case "adamw", "":
		return &adam{cfg: withAdamDefaults(cfg, 1e-8)}, nil
	case "lamb":
		return &adam{cfg: withAdamDefaults(cfg, 1e-6), lamb: true}, nil
	case "sgd":
		if cfg.Momentum == 0 {
			cfg.Momentum = 0.9
		}
		return &sgd{cfg: cfg}, nil
	case "lars":
		if cfg.Momentum == 0 {
			cfg.Momentum = 0.9
		}
		if cfg.Eta == 0 {
			cfg.Eta = 1e-3
		}
		return &lars{cfg: cfg}, nil
	default:
		return nil, fmt.Errorf("unknown optimizer %q: known optimizers are adamw, lamb, sgd, lars", cfg.Name)
	}
}

func withAdamDefaults(cfg OptimizerConfig, eps float64) OptimizerConfig {
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.95
	}
	if cfg.Eps == 0 {
		cfg.Eps = eps
	}
	return cfg
}

// Decays reports whether weight decay applies to a variable: to weight matrices and conv
// kernels (rank >= 2), not to biases, normalisation parameters or layer scales (timm's
// param_groups_weight_decay).
func Decays(v *model.Variable) bool { return v.Shape().Rank() >= 2 }

// stateVar returns the optimiser state variable `name` of v, created with zeros.
func stateVar(store *model.Store, v *model.Variable, name string) *model.Variable {
	path := "/optimizer" + v.Path() + "/" + name
	s := store.GetVariable(path)
	if s == nil {
		s = store.VariableWithShape(path, v.Shape(), func(g *Graph, shape shapes.Shape) *Node { return Zeros(g, shape) })
	}
	return s.SetTrainable(false)
}

// adam is AdamW (decoupled weight decay, Loshchilov & Hutter, as torch.optim.AdamW) and, with
// lamb set, LAMB (You et al. 2020, as timm's Lamb with bias correction): the Adam update plus
// weight decay, scaled per variable by the trust ratio ||w|| / ||update||.
type adam struct {
	cfg  OptimizerConfig
	lamb bool
}

func (o *adam) Apply(scope *model.Scope, vars []*model.Variable, grads []*Node, lr, step *Node) []*Node {
	out := make([]*Node, len(vars))
	for i, v := range vars {
		g := grads[i].Graph()
		w := v.NodeValue(g)
		dt := w.DType()
		grad := ConvertDType(grads[i], dt)
		lrv, stepv := ConvertDType(lr, dt), ConvertDType(step, dt)
		mVar, vVar := stateVar(scope.Store(), v, "m"), stateVar(scope.Store(), v, "v")
		b1, b2 := o.cfg.Beta1, o.cfg.Beta2
		m := Add(MulScalar(mVar.NodeValue(g), b1), MulScalar(grad, 1-b1))
		s := Add(MulScalar(vVar.NodeValue(g), b2), MulScalar(Square(grad), 1-b2))
		mVar.SetNodeValue(m)
		vVar.SetNodeValue(s)
		mHat := Div(m, OneMinus(Pow(Scalar(g, dt, b1), stepv)))
		sHat := Div(s, OneMinus(Pow(Scalar(g, dt, b2), stepv)))
		update := Div(mHat, AddScalar(Sqrt(sHat), o.cfg.Eps))
		decay := o.cfg.WeightDecay > 0 && Decays(v)
		if !o.lamb {
			if decay {
				w = Mul(w, OneMinus(MulScalar(lrv, o.cfg.WeightDecay)))
			}
			out[i] = Sub(w, Mul(lrv, update))
			continue
		}
		if decay {
			update = Add(update, MulScalar(w, o.cfg.WeightDecay))
		}
		wNorm := Sqrt(ReduceAllSum(Square(w)))
		uNorm := Sqrt(ReduceAllSum(Square(update)))
		zero := ScalarZero(g, dt)
		trust := Where(LogicalAnd(GreaterThan(wNorm, zero), GreaterThan(uNorm, zero)),
			Div(wNorm, Max(uNorm, Scalar(g, dt, 1e-30))), OnesLike(wNorm))
		out[i] = Sub(w, Mul(Mul(lrv, trust), update))
	}
	return out
}

// sgd is SGD with momentum and L2 weight decay added to the gradient, as torch.optim.SGD.
type sgd struct{ cfg OptimizerConfig }

func (o *sgd) Apply(scope *model.Scope, vars []*model.Variable, grads []*Node, lr, step *Node) []*Node {
	out := make([]*Node, len(vars))
	for i, v := range vars {
		g := grads[i].Graph()
		w := v.NodeValue(g)
		grad := ConvertDType(grads[i], w.DType())
		if o.cfg.WeightDecay > 0 && Decays(v) {
			grad = Add(grad, MulScalar(w, o.cfg.WeightDecay))
		}
		bufVar := stateVar(scope.Store(), v, "momentum")
		// PyTorch initialises the buffer with the first gradient; with a zero buffer that is
		// buf = momentum*0 + grad, the same.
		buf := Add(MulScalar(bufVar.NodeValue(g), o.cfg.Momentum), grad)
		bufVar.SetNodeValue(buf)
		d := buf
		if o.cfg.Nesterov {
			d = Add(grad, MulScalar(buf, o.cfg.Momentum))
		}
		out[i] = Sub(w, Mul(ConvertDType(lr, w.DType()), d))
	}
	return out
}

// lars is LARS (You et al. 2017) as BYOL's code has it (byol/utils/optimizers.py): weight decay
// added to the gradient, the result scaled by the trust ratio eta·||w|| / ||g + wd·w||, into a
// momentum buffer, w -= lr·buffer. Variables that do not decay (biases, normalisation
// parameters: Decays) get neither weight decay nor the trust ratio, as BYOL excludes them.
type lars struct{ cfg OptimizerConfig }

func (o *lars) Apply(scope *model.Scope, vars []*model.Variable, grads []*Node, lr, step *Node) []*Node {
	out := make([]*Node, len(vars))
	for i, v := range vars {
		g := grads[i].Graph()
		w := v.NodeValue(g)
		dt := w.DType()
		u := ConvertDType(grads[i], dt)
		if Decays(v) {
			if o.cfg.WeightDecay > 0 {
				u = Add(u, MulScalar(w, o.cfg.WeightDecay))
			}
			wNorm := Sqrt(ReduceAllSum(Square(w)))
			uNorm := Sqrt(ReduceAllSum(Square(u)))
			zero := ScalarZero(g, dt)
			trust := Where(LogicalAnd(GreaterThan(wNorm, zero), GreaterThan(uNorm, zero)),
				MulScalar(Div(wNorm, Max(uNorm, Scalar(g, dt, 1e-30))), o.cfg.Eta), OnesLike(wNorm))
			u = Mul(u, trust)
		}
		bufVar := stateVar(scope.Store(), v, "momentum")
		buf := Add(MulScalar(bufVar.NodeValue(g), o.cfg.Momentum), u)
		bufVar.SetNodeValue(buf)
		out[i] = Sub(w, Mul(ConvertDType(lr, dt), buf))
	}
	return out
}
