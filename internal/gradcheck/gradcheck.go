// Package gradcheck compares the gradients GoMLX computes for a graph with central finite
// differences, in float64 on the Go backend. Every layer of the project is checked with it.
package gradcheck

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Fn builds the graph under test. Its output may have any shape: the checked scalar is the sum
// of the output multiplied by a fixed pseudo-random tensor, so that every output element counts.
type Fn func(scope *model.Scope, inputs []*Node) *Node

// Options of Check. The zero value gives the defaults.
type Options struct {
	// Training sets the graph's training mode (BatchNorm batch statistics, dropout).
	Training bool
	// MaxElements is how many elements of each input and variable are perturbed (a random
	// subset of larger tensors). Default 40.
	MaxElements int
	// Eps is the finite-difference step. Default 1e-6.
	Eps float64
	// Tol is the largest accepted relative error ||analytic-numeric|| / max(||analytic||, ||numeric||).
	// Default 1e-6.
	Tol float64
	// Inputs lists which inputs to check (default: all float inputs).
	Inputs []int
	// SkipVariables does not check the gradients of the variables.
	SkipVariables bool
	// AllowZero accepts a gradient that is zero everywhere (it is otherwise a wiring error).
	AllowZero bool
}

// Result of one checked tensor.
type Result struct {
	Name     string
	RelError float64
	Norm     float64
}

// Check runs fn on inputs (float64 tensors; others are passed through unchecked) and fails t if
// any checked gradient differs from finite differences by more than opts.Tol.
func Check(t testing.TB, opts Options, fn Fn, inputs ...*tensors.Tensor) []Result {
	t.Helper()
	results, err := Run(opts, fn, inputs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		t.Logf("gradient of %-40s relative error %.2e (norm %.3g)", r.Name, r.RelError, r.Norm)
	}
	return results
}

// Run is Check without testing.TB: it returns an error describing every failed tensor.
func Run(opts Options, fn Fn, inputs ...*tensors.Tensor) ([]Result, error) {
	if opts.MaxElements == 0 {
		opts.MaxElements = 40
	}
	if opts.Eps == 0 {
		opts.Eps = 1e-6
	}
	if opts.Tol == 0 {
		opts.Tol = 1e-6
	}
	if opts.Inputs == nil {
		for i, in := range inputs {
			if in.DType() == dtypes.Float64 {
				opts.Inputs = append(opts.Inputs, i)
			}
		}
	}
	b := backend.Go()
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(42); err != nil {
		return nil, err
	}

	var vars []*model.Variable // trainable variables used by the graph, in creation order
	lossOf := func(scope *model.Scope, g *Graph, ins []*Node) *Node {
		store.SetTraining(g, opts.Training)
		out := fn(scope, ins)
		proj := Sin(AddScalar(MulScalar(IotaFull(g, out.Shape()), 0.731), 0.3))
		return ReduceAllSum(Mul(out, proj))
	}
	gradExec, err := model.NewExec(b, store, func(scope *model.Scope, ins []*Node) []*Node {
		g := ins[0].Graph()
		loss := lossOf(scope, g, ins)
		vars = vars[:0]
		wrt := []*Node{}
		for _, i := range opts.Inputs {
			wrt = append(wrt, ins[i])
		}
		if !opts.SkipVariables {
			for v := range store.IterVariables() {
				if v.Trainable && v.InUseByGraph(g) && v.DType() == dtypes.Float64 {
					vars = append(vars, v)
					wrt = append(wrt, v.NodeValue(g))
				}
			}
		}
		return append([]*Node{loss}, Gradient(loss, wrt...)...)
	})
	if err != nil {
		return nil, err
	}
	lossExec, err := model.NewExec(b, store, func(scope *model.Scope, ins []*Node) *Node {
		return lossOf(scope, ins[0].Graph(), ins)
	})
	if err != nil {
		return nil, err
	}
	args := make([]any, len(inputs))
	for i, in := range inputs {
		args[i] = in
	}

	// Initialise the variables, then snapshot every variable (including RNG state and running
	// statistics) so that each evaluation sees exactly the same state.
	if _, err := gradExec.Exec(args...); err != nil {
		return nil, err
	}
	snapshot := map[*model.Variable]*tensors.Tensor{}
	for v := range store.IterVariables() {
		snapshot[v] = cloneTensor(v.MustValue())
	}
	restore := func() {
		for v, val := range snapshot {
			v.MustSetValue(cloneTensor(val))
		}
	}
	restore()
	outs, err := gradExec.Exec(args...)
	if err != nil {
		return nil, err
	}
	grads := outs[1:]
	lossAt := func() float64 {
		restore()
		out, err := lossExec.Exec(args...)
		if err != nil {
			panic(err)
		}
		return out[0].Value().(float64)
	}

	var results []Result
	var failures []string
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(name string, analytic *tensors.Tensor, get func() []float64, set func([]float64)) {
		base := get()
		ana := tensors.MustCopyFlatData[float64](analytic)
		idx := make([]int, len(base))
		for i := range idx {
			idx[i] = i
		}
		if len(idx) > opts.MaxElements {
			rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			idx = idx[:opts.MaxElements]
			slices.Sort(idx)
		}
		var diff2, ana2, num2 float64
		for _, i := range idx {
			pert := slices.Clone(base)
			pert[i] = base[i] + opts.Eps
			set(pert)
			lp := lossAt()
			pert[i] = base[i] - opts.Eps
			set(pert)
			lm := lossAt()
			num := (lp - lm) / (2 * opts.Eps)
			diff2 += (num - ana[i]) * (num - ana[i])
			ana2 += ana[i] * ana[i]
			num2 += num * num
		}
		set(base)
		norm := math.Sqrt(max(ana2, num2))
		rel := 0.0
		if norm > 0 {
			rel = math.Sqrt(diff2) / norm
		}
		results = append(results, Result{Name: name, RelError: rel, Norm: math.Sqrt(ana2)})
		switch {
		case rel > opts.Tol:
			failures = append(failures, fmt.Sprintf("%s: relative error %.3g > %.1g (analytic norm %.4g, numeric norm %.4g)",
				name, rel, opts.Tol, math.Sqrt(ana2), math.Sqrt(num2)))
		case norm == 0 && !opts.AllowZero:
			failures = append(failures, fmt.Sprintf("%s: gradient is zero everywhere", name))
		}
	}
	for k, i := range opts.Inputs {
		in := inputs[i]
		check(fmt.Sprintf("input #%d %s", i, in.Shape()), grads[k],
			func() []float64 { return tensors.MustCopyFlatData[float64](in) },
			func(vals []float64) { tensors.MustMutableFlatData(in, func(flat []float64) { copy(flat, vals) }) })
	}
	for k, v := range vars {
		check(v.Path(), grads[len(opts.Inputs)+k],
			func() []float64 { return tensors.MustCopyFlatData[float64](snapshot[v]) },
			func(vals []float64) {
				tensors.MustMutableFlatData(snapshot[v], func(flat []float64) { copy(flat, vals) })
			})
	}
	if len(failures) > 0 {
		return results, fmt.Errorf("gradient check failed:\n  %s", joinLines(failures))
	}
	return results, nil
}

func cloneTensor(t *tensors.Tensor) *tensors.Tensor {
	c, err := t.LocalClone()
	if err != nil {
		panic(err)
	}
	return c
}

func joinLines(lines []string) string {
	s := ""
	for i, l := range lines {
		if i > 0 {
			s += "\n  "
		}
		s += l
	}
	return s
}

// RandomTensor returns a float64 tensor of the given dimensions with values uniform in [-1, 1),
// deterministic in seed.
func RandomTensor(seed uint64, dims ...int) *tensors.Tensor {
	rng := rand.New(rand.NewPCG(seed, 7))
	size := 1
	for _, d := range dims {
		size *= d
	}
	data := make([]float64, size)
	for i := range data {
		data[i] = 2*rng.Float64() - 1
	}
	return tensors.FromFlatDataAndDimensions(data, dims...)
}
