package flops

import (
	"fmt"
	"maps"
	"slices"

	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// Report describes a model built once on a placeholder input, without executing it.
type Report struct {
	Counts // forward MACs of everything the outputs depend on
	// Params is the number of trainable parameters (BatchNorm running statistics and other
	// non-trainable variables are not parameters, as in PyTorch's model.parameters()).
	Params int64
	// Buffers is the number of elements of non-trainable variables (running statistics).
	Buffers int64
	Input   shapes.Shape
	Outputs map[string]shapes.Shape
	// Variables maps every variable's path to its shape.
	Variables map[string]shapes.Shape
}

// Inspect builds fn on a placeholder input of the given shape in inference mode, on a fresh
// model store, and reports its MACs, parameters and output shapes. Nothing is executed or
// compiled, and no variable is initialised, so it is cheap even for large models on the Go
// backend. Panics while building are returned as errors.
func Inspect(b compute.Backend, input shapes.Shape, fn func(scope *model.Scope, x *Node) map[string]*Node) (r Report, err error) {
	g := NewGraph(b, "flops.Inspect")
	defer g.Finalize()
	store := model.NewStore()
	err = catch(func() {
		model.SetStore(g, store)
		store.SetTraining(g, false)
		x := Parameter(g, "x", input)
		outs := fn(store.RootScope(), x)
		r.Input = input
		r.Outputs = map[string]shapes.Shape{}
		nodes := make([]*Node, 0, len(outs))
		for _, name := range slices.Sorted(maps.Keys(outs)) {
			if outs[name] == nil {
				continue
			}
			r.Outputs[name] = outs[name].Shape()
			nodes = append(nodes, outs[name])
		}
		r.Counts = CountFrom(nodes...)
	})
	if err != nil {
		return Report{}, fmt.Errorf("flops: building the model on %s: %w", input, err)
	}
	r.Variables = map[string]shapes.Shape{}
	for v := range store.IterVariables() {
		r.Variables[v.Path()] = v.Shape()
		if v.Trainable {
			r.Params += int64(v.Shape().Size())
		} else {
			r.Buffers += int64(v.Shape().Size())
		}
	}
	return r, nil
}

// Backbone inspects the registered backbone name on a [n, h, w, 3] float32 input. The outputs
// are its feature maps (by level name) and, with opts.NumClasses > 0, "logits".
func Backbone(b compute.Backend, name string, opts backbones.Options, n, h, w int) (Report, error) {
	entry, err := backbones.Get(name)
	if err != nil {
		return Report{}, err
	}
	return Inspect(b, shapes.Make(dtypes.Float32, n, h, w, 3), func(scope *model.Scope, x *Node) map[string]*Node {
		out := entry.Build(scope, x, opts)
		outs := maps.Clone(out.Features.Maps)
		if out.Logits != nil {
			outs["logits"] = out.Logits
		}
		return outs
	})
}

// catch runs fn and returns any panic as an error.
func catch(fn func()) (err error) {
	defer func() {
		if e := recover(); e != nil {
			if pe, ok := e.(error); ok {
				err = pe
			} else {
				err = fmt.Errorf("%v", e)
			}
		}
	}()
	fn()
	return nil
}
