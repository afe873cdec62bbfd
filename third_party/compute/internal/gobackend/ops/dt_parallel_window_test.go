// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: the parallel ConvGeneral, ReduceWindow and SelectAndScatter of v0.1.3
// against their sequential runs (worker pool disabled). The upstream tests use inputs below the
// 512-element threshold of the parallel paths, so these are the only tests of those paths.

package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/shapes"
)

// dtRunOneOp builds a graph of the parameters given by shapes and the op built by build, runs it
// with the given inputs, sequentially (parallel=false: the worker pool is disabled) or with the
// default pool, and returns the output's flat float32 values.
func dtRunOneOp(t *testing.T, parallel bool, inShapes []shapes.Shape, inputs [][]float32,
	build func(f compute.Function, p []compute.Value) (compute.Value, error)) []float32 {
	t.Helper()
	backend := dtTestBackend(t)
	defer backend.Finalize()
	if !parallel {
		backend.Workers.SetMaxParallelism(0)
	}
	builder := backend.Builder("op")
	f := builder.Main()
	params := make([]compute.Value, len(inShapes))
	for i, s := range inShapes {
		p, err := f.Parameter(fmt.Sprintf("p%d", i), s, nil)
		if err != nil {
			t.Fatal(err)
		}
		params[i] = p
	}
	out, err := build(f, params)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Return([]compute.Value{out}, nil); err != nil {
		t.Fatal(err)
	}
	exec, err := builder.Compile()
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([]compute.Buffer, len(inputs))
	for i, in := range inputs {
		b, err := backend.BufferFromFlatData(0, in, inShapes[i])
		if err != nil {
			t.Fatal(err)
		}
		bufs[i] = b
	}
	outs, err := exec.Execute(bufs, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(outs[0].(*gobackend.Buffer).Flat.([]float32))
}

func dtRandFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func TestDTParallelConvGeneral(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct{ n, h, w, cin, cout, k, s, p int }{
		{2, 16, 16, 8, 16, 3, 1, 1}, {1, 17, 15, 3, 16, 3, 2, 1}, {3, 8, 8, 4, 4, 1, 1, 0},
	} {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			inS := shapes.Make(dtypes.Float32, c.n, c.h, c.w, c.cin)
			kS := shapes.Make(dtypes.Float32, c.k, c.k, c.cin, c.cout)
			in := [][]float32{dtRandFloats(rng, inS.Size()), dtRandFloats(rng, kS.Size())}
			axes := compute.ConvolveAxesConfig{InputBatch: 0, InputChannels: 3, InputSpatial: []int{1, 2},
				KernelInputChannels: 2, KernelOutputChannels: 3, KernelSpatial: []int{0, 1},
				OutputBatch: 0, OutputChannels: 3, OutputSpatial: []int{1, 2}}
			build := func(f compute.Function, p []compute.Value) (compute.Value, error) {
				return f.ConvGeneral(p[0], p[1], axes, []int{c.s, c.s}, [][2]int{{c.p, c.p}, {c.p, c.p}}, nil, nil, 1, 1)
			}
			want := dtRunOneOp(t, false, []shapes.Shape{inS, kS}, in, build)
			got := dtRunOneOp(t, true, []shapes.Shape{inS, kS}, in, build)
			if len(want) < 512 {
				t.Fatalf("output of %d elements: below the parallel threshold", len(want))
			}
			if !slices.Equal(want, got) {
				t.Fatal("parallel ConvGeneral differs from the sequential one")
			}
		})
	}
}

func TestDTParallelReduceWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	inS := shapes.Make(dtypes.Float32, 2, 17, 16, 8)
	in := [][]float32{dtRandFloats(rng, inS.Size())}
	for _, op := range []compute.ReduceOpType{compute.ReduceOpMax, compute.ReduceOpSum} {
		t.Run(op.String(), func(t *testing.T) {
			build := func(f compute.Function, p []compute.Value) (compute.Value, error) {
				return f.ReduceWindow(p[0], op, []int{1, 3, 3, 1}, []int{1, 2, 2, 1}, nil, nil, [][2]int{{0, 0}, {1, 1}, {1, 1}, {0, 0}})
			}
			want := dtRunOneOp(t, false, []shapes.Shape{inS}, in, build)
			got := dtRunOneOp(t, true, []shapes.Shape{inS}, in, build)
			if !slices.Equal(want, got) {
				t.Fatal("parallel ReduceWindow differs from the sequential one")
			}
		})
	}
}

// TestDTParallelSelectAndScatter covers both parallel paths: split by batch (window 1 on axis
// 0, batch > 1) and split in chunks of the source (batch 1), where overlapping windows (3x3,
// stride 2) make chunks scatter into the same operand elements.
func TestDTParallelSelectAndScatter(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{4, 1} {
		t.Run(fmt.Sprintf("batch%d", n), func(t *testing.T) {
			opS := shapes.Make(dtypes.Float32, n, 33, 32, 16)
			srcS := shapes.Make(dtypes.Float32, n, 17, 16, 16)
			for range 5 { // Races show only sometimes.
				in := [][]float32{dtRandFloats(rng, opS.Size()), dtRandFloats(rng, srcS.Size())}
				build := func(f compute.Function, p []compute.Value) (compute.Value, error) {
					return f.SelectAndScatterMax(p[0], p[1], []int{1, 3, 3, 1}, []int{1, 2, 2, 1}, [][2]int{{0, 0}, {1, 1}, {1, 1}, {0, 0}})
				}
				want := dtRunOneOp(t, false, []shapes.Shape{opS, srcS}, in, build)
				got := dtRunOneOp(t, true, []shapes.Shape{opS, srcS}, in, build)
				again := dtRunOneOp(t, true, []shapes.Shape{opS, srcS}, in, build)
				if !slices.Equal(got, again) {
					t.Fatal("parallel SelectAndScatterMax differs from run to run")
				}
				// An operand element gets at most 4 source values (3x3 windows, stride 2): the
				// parallel sum may add them in another order.
				for i := range want {
					if d := math.Abs(float64(want[i] - got[i])); d > 1e-5 {
						t.Fatalf("element %d: parallel %g, sequential %g", i, got[i], want[i])
					}
				}
			}
		})
	}
}
