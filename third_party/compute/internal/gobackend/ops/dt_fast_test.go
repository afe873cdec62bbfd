// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: the fast executors (dt_*.go) against the generic ones.

package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/internal/gobackend/dot"
	_ "github.com/gomlx/compute/internal/gobackend/dot/matmul" // The AVX-512 GEMM (GemmFloat32V).
	"github.com/gomlx/compute/shapes"
)

func dtTestBackend(t *testing.T) *gobackend.Backend {
	b, err := gobackend.New("")
	if err != nil {
		t.Fatal(err)
	}
	return b.(*gobackend.Backend)
}

func dtRandBuffer(t *testing.T, backend *gobackend.Backend, rng *rand.Rand, dtype dtypes.DType, dims ...int) *gobackend.Buffer {
	shape := shapes.Make(dtype, dims...)
	buf, err := backend.GetBuffer(shape)
	if err != nil {
		t.Fatal(err)
	}
	switch flat := buf.Flat.(type) {
	case []float32:
		for i := range flat {
			flat[i] = float32(rng.NormFloat64())
			if rng.IntN(50) == 0 {
				flat[i] = 0
			}
		}
	case []int32:
		for i := range flat {
			flat[i] = int32(rng.IntN(1000))
		}
	case []uint8:
		for i := range flat {
			flat[i] = uint8(rng.IntN(256))
		}
	case []float64:
		for i := range flat {
			flat[i] = rng.NormFloat64()
		}
	default:
		t.Fatalf("unsupported dtype %s", dtype)
	}
	return buf
}

func dtClone(t *testing.T, backend *gobackend.Backend, b *gobackend.Buffer) *gobackend.Buffer {
	c, err := backend.CloneBuffer(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDTBinaryFast(t *testing.T) {
	backend := dtTestBackend(t)
	rng := rand.New(rand.NewPCG(1, 1))
	cases := [][2][]int{
		{{8, 64, 64, 64}, {1, 1, 1, 64}},
		{{1, 1, 1, 64}, {8, 64, 64, 64}},
		{{8, 16, 16, 32}, {8, 16, 16, 32}},
		{{4, 5, 6}, {4, 1, 6}},
		{{4, 1, 6}, {1, 5, 1}},
		{{4, 5, 6}, {}},
		{{}, {4, 5, 6}},
		{{1, 1}, {3, 1}},
		{{600, 700}, {600, 1}},
		{{1}, {1}},
		{{3, 1, 5}, {3, 7, 5}},
		{{2, 3, 4, 5}, {2, 1, 4, 1}},
	}
	ops := []compute.OpType{compute.OpTypeAdd, compute.OpTypeSub, compute.OpTypeMul, compute.OpTypeDiv, compute.OpTypeMax, compute.OpTypeMin}
	for _, c := range cases {
		for _, op := range ops {
			for _, owned := range [][]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				name := fmt.Sprintf("%s/%v/%v/owned=%v", op, c[0], c[1], owned)
				t.Run(name, func(t *testing.T) {
					lhs := dtRandBuffer(t, backend, rng, dtypes.Float32, c[0]...)
					rhs := dtRandBuffer(t, backend, rng, dtypes.Float32, c[1]...)
					outDims := make([]int, max(len(c[0]), len(c[1])))
					for a := range outDims {
						if len(c[0]) > 0 {
							outDims[a] = max(outDims[a], c[0][a])
						}
						if len(c[1]) > 0 {
							outDims[a] = max(outDims[a], c[1][a])
						}
					}
					node := &gobackend.Node{OpType: op, Shape: shapes.Make(dtypes.Float32, outDims...)}
					want, err := dtBinaryGenericExec(op)(backend, node, []*gobackend.Buffer{dtClone(t, backend, lhs), dtClone(t, backend, rhs)}, []bool{false, false})
					if err != nil {
						t.Fatal(err)
					}
					got, err := execBinaryFloat32Fast(backend, node, []*gobackend.Buffer{dtClone(t, backend, lhs), dtClone(t, backend, rhs)}, owned)
					if err != nil {
						t.Fatal(err)
					}
					w, g := want.Flat.([]float32), got.Flat.([]float32)
					for i := range w {
						if math.Float32bits(w[i]) != math.Float32bits(g[i]) {
							t.Fatalf("at %d: got %g, want %g", i, g[i], w[i])
						}
					}
				})
			}
		}
	}
	// Non-float32 dtypes go to the generic path.
	lhs := dtRandBuffer(t, backend, rng, dtypes.Int32, 3, 4)
	rhs := dtRandBuffer(t, backend, rng, dtypes.Int32, 1, 4)
	node := &gobackend.Node{OpType: compute.OpTypeAdd, Shape: shapes.Make(dtypes.Int32, 3, 4)}
	got, err := execBinaryFloat32Fast(backend, node, []*gobackend.Buffer{lhs, rhs}, []bool{false, false})
	if err != nil {
		t.Fatal(err)
	}
	l, r, g := lhs.Flat.([]int32), rhs.Flat.([]int32), got.Flat.([]int32)
	for i := range g {
		if g[i] != l[i]+r[i%4] {
			t.Fatalf("int32 add wrong at %d", i)
		}
	}
}

func TestDTSignFast(t *testing.T) {
	backend := dtTestBackend(t)
	rng := rand.New(rand.NewPCG(1, 2))
	x := dtRandBuffer(t, backend, rng, dtypes.Float32, 1000, 333)
	flat := x.Flat.([]float32)
	flat[0], flat[1], flat[2], flat[3] = float32(math.NaN()), float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1))
	node := &gobackend.Node{OpType: compute.OpTypeSign, Shape: x.RawShape.Clone()}
	want, _ := execSign(backend, node, []*gobackend.Buffer{dtClone(t, backend, x)}, []bool{false})
	got, _ := execSignFast(backend, node, []*gobackend.Buffer{dtClone(t, backend, x)}, []bool{true})
	w, g := want.Flat.([]float32), got.Flat.([]float32)
	for i := range w {
		if math.Float32bits(w[i]) != math.Float32bits(g[i]) {
			t.Fatalf("at %d: sign(%g) got %g, want %g", i, flat[i], g[i], w[i])
		}
	}
}

// TestDTLogisticFast checks the SIMD sigmoid against float64 math on normal inputs, a sweep of
// [-100, 100] (both clamps of the exponential and the denormal range of exp(-|x|)), and the
// special values; and that its last-bit differences from the scalar path stay below 3 ulps.
func TestDTLogisticFast(t *testing.T) {
	backend := dtTestBackend(t)
	rng := rand.New(rand.NewPCG(3, 4))
	x := dtRandBuffer(t, backend, rng, dtypes.Float32, 1000, 333)
	flat := x.Flat.([]float32)
	for i := range 20001 {
		flat[1000+i] = float32(-100 + 0.01*float64(i))
	}
	specials := []float32{float32(math.NaN()), float32(math.Copysign(0, -1)), 0, float32(math.Inf(1)), float32(math.Inf(-1)),
		-88.0297, -88.03, -87.3, 88.03, 1e-30, -1e-30, math.MaxFloat32, -math.MaxFloat32}
	copy(flat, specials)
	node := &gobackend.Node{OpType: compute.OpTypeLogistic, Shape: x.RawShape.Clone()}
	want, _ := execLogistic(backend, node, []*gobackend.Buffer{dtClone(t, backend, x)}, []bool{false})
	got, _ := execLogisticFast(backend, node, []*gobackend.Buffer{dtClone(t, backend, x)}, []bool{true})
	w, g := want.Flat.([]float32), got.Flat.([]float32)
	maxRel, maxUlp := 0.0, int64(0)
	for i, v := range flat {
		if math.IsNaN(float64(v)) {
			if !math.IsNaN(float64(g[i])) {
				t.Fatalf("sigmoid(NaN) = %g, want NaN", g[i])
			}
			continue
		}
		exact := 1 / (1 + math.Exp(-float64(v)))
		if exact < 1e-37 { // Below float32's normal range the scalar path flushes to 0 too.
			if g[i] > 1e-37 {
				t.Fatalf("sigmoid(%g) = %g, want ~0", v, g[i])
			}
			continue
		}
		rel := math.Abs(float64(g[i])-exact) / exact
		maxRel = max(maxRel, rel)
		ulp := int64(math.Float32bits(g[i])) - int64(math.Float32bits(w[i]))
		maxUlp = max(maxUlp, ulp, -ulp)
	}
	if maxRel > 5e-7 || maxUlp > 3 {
		t.Fatalf("max relative error %.3g (want <= 5e-7), max difference from the scalar path %d ulps (want <= 3)", maxRel, maxUlp)
	}
	t.Logf("max relative error %.3g, max difference from the scalar path %d ulps", maxRel, maxUlp)
}

func TestDTReduceSumFast(t *testing.T) {
	backend := dtTestBackend(t)
	rng := rand.New(rand.NewPCG(1, 3))
	cases := []struct {
		dims []int
		axes []int
	}{
		{[]int{8, 64, 64, 64}, []int{0, 1, 2}},
		{[]int{8, 32, 32, 128}, []int{0, 1, 2}},
		{[]int{8, 64, 64, 64}, []int{3}},
		{[]int{8, 64, 64, 64}, []int{0, 1, 2, 3}},
		{[]int{3, 3, 512, 512}, []int{0, 1, 2, 3}},
		{[]int{4, 5, 6}, []int{1}},
		{[]int{4, 5, 6}, []int{0, 2}},
		{[]int{4, 1, 6}, []int{1}},
		{[]int{7, 9}, []int{0}},
		{[]int{7, 9}, []int{1}},
		{[]int{1000, 3000}, []int{0}},
		{[]int{20000, 70}, []int{0}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v/%v", c.dims, c.axes), func(t *testing.T) {
			x := dtRandBuffer(t, backend, rng, dtypes.Float32, c.dims...)
			outDims := []int{}
			for a, d := range c.dims {
				if !slices.Contains(c.axes, a) {
					outDims = append(outDims, d)
				}
			}
			node := &gobackend.Node{OpType: compute.OpTypeReduceSum, Shape: shapes.Make(dtypes.Float32, outDims...), Data: c.axes}
			want, err := execReduce(backend, node, []*gobackend.Buffer{x}, []bool{false})
			if err != nil {
				t.Fatal(err)
			}
			got, err := execReduceSumFast(backend, node, []*gobackend.Buffer{x}, []bool{false})
			if err != nil {
				t.Fatal(err)
			}
			n := x.RawShape.Size() / max(1, want.RawShape.Size())
			eps := float64(math.Nextafter32(1, 2) - 1)
			w, g := want.Flat.([]float32), got.Flat.([]float32)
			for i := range w {
				// Both are float32 sums of n terms of magnitude ~1 in different orders.
				if d := math.Abs(float64(w[i]) - float64(g[i])); d > 2*float64(n)*eps*math.Sqrt(float64(n))+1e-6 {
					t.Fatalf("at %d: got %g, want %g", i, g[i], w[i])
				}
			}
		})
	}
}

func TestDTSliceConcatFast(t *testing.T) {
	backend := dtTestBackend(t)
	rng := rand.New(rand.NewPCG(1, 4))
	for iter := range 300 {
		dtype := []dtypes.DType{dtypes.Float32, dtypes.Int32, dtypes.Uint8, dtypes.Float64}[iter%4]
		rank := 1 + rng.IntN(4)
		dims := make([]int, rank)
		for a := range dims {
			dims[a] = 1 + rng.IntN(9)
		}
		if iter%50 == 0 {
			dims = []int{8, 66, 66, 64}[:rank]
			for len(dims) < rank {
				dims = append(dims, 3)
			}
		}
		x := dtRandBuffer(t, backend, rng, dtype, dims...)
		starts, limits, strides := make([]int, rank), make([]int, rank), make([]int, rank)
		outDims := make([]int, rank)
		for a, d := range dims {
			starts[a] = rng.IntN(d)
			limits[a] = starts[a] + 1 + rng.IntN(d-starts[a])
			strides[a] = 1 + rng.IntN(3)
			if rng.IntN(2) == 0 {
				starts[a], limits[a], strides[a] = 0, d, 1
			}
			outDims[a] = (limits[a] - starts[a] + strides[a] - 1) / strides[a]
		}
		node := &gobackend.Node{OpType: compute.OpTypeSlice, Shape: shapes.Make(dtype, outDims...),
			Data: &sliceNode{starts: starts, limits: limits, strides: strides}}
		want, err := execSlice(backend, node, []*gobackend.Buffer{x}, []bool{false})
		if err != nil {
			t.Fatal(err)
		}
		got, err := execSliceFast(backend, node, []*gobackend.Buffer{x}, []bool{false})
		if err != nil {
			t.Fatal(err)
		}
		wb, _ := want.MutableBytes()
		gb, _ := got.MutableBytes()
		if !slices.Equal(wb, gb) {
			t.Fatalf("slice %v of %v (start %v limit %v stride %v) differs", outDims, dims, starts, limits, strides)
		}

		// Concatenate 1 to 3 tensors along a random axis.
		axis := rng.IntN(rank)
		var ins []*gobackend.Buffer
		catDims := slices.Clone(dims)
		catDims[axis] = 0
		for range 1 + rng.IntN(3) {
			d := slices.Clone(dims)
			d[axis] = 1 + rng.IntN(4)
			if iter%50 == 0 {
				d[axis] = 1 + rng.IntN(40)
			}
			catDims[axis] += d[axis]
			ins = append(ins, dtRandBuffer(t, backend, rng, dtype, d...))
		}
		catNode := &gobackend.Node{OpType: compute.OpTypeConcatenate, Shape: shapes.Make(dtype, catDims...), Data: axis}
		want, err = execConcatenate(backend, catNode, ins, make([]bool, len(ins)))
		if err != nil {
			t.Fatal(err)
		}
		got, err = execConcatenateFast(backend, catNode, ins, make([]bool, len(ins)))
		if err != nil {
			t.Fatal(err)
		}
		wb, _ = want.MutableBytes()
		gb, _ = got.MutableBytes()
		if !slices.Equal(wb, gb) {
			t.Fatalf("concatenate %v on axis %d differs", catDims, axis)
		}
	}
}

// dtConvGraph builds, on the Go backend, the patch extraction of a kh x kw convolution (stride s,
// padding 1 by concatenating zeros) of x [n,h,w,c], and the gradient of the patch extraction
// for dp [n,ho,wo,kh*kw*c] as GoMLX's autodiff builds it (slices, zero pads, adds, crops). It
// returns the outputs (patches, dx).
func dtConvGraph(t *testing.T, fusions bool, x, dp [][]float32, n, h, w, c, k, s int) (patches, dx []float32) {
	saved := DTFusionsEnabled
	DTFusionsEnabled = fusions
	defer func() { DTFusionsEnabled = saved }()
	backend := dtTestBackend(t)
	defer backend.Finalize()
	ho, wo := (h+2-k)/s+1, (w+2-k)/s+1
	must := func(v compute.Value, err error) compute.Value {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	builder := backend.Builder("conv")
	f := builder.Main()
	xp := must(f.Parameter("x", shapes.Make(dtypes.Float32, n, h, w, c), nil))
	dpp := must(f.Parameter("dp", shapes.Make(dtypes.Float32, n, ho, wo, k*k*c), nil))
	zero := must(f.Constant([]float32{0}))
	// Pad with concatenated zeros on axes 1 and 2.
	zerosOf := func(dims ...int) compute.Value {
		return must(f.BroadcastInDim(zero, shapes.Make(dtypes.Float32, dims...), nil))
	}
	x1 := must(f.Concatenate(1, zerosOf(n, 1, w, c), xp, zerosOf(n, 1, w, c)))
	x2 := must(f.Concatenate(2, zerosOf(n, h+2, 1, c), x1, zerosOf(n, h+2, 1, c)))
	var taps []compute.Value
	for i := range k {
		for j := range k {
			taps = append(taps, must(f.Slice(x2, []int{0, i, j, 0}, []int{n, i + (ho-1)*s + 1, j + (wo-1)*s + 1, c}, []int{1, s, s, 1})))
		}
	}
	patchesV := must(f.Concatenate(3, taps...))
	// Gradient: slices of dp, zero pads (the VJP of the strided slices), adds, crops.
	var acc compute.Value
	for ti := range k * k {
		i, j := ti/k, ti%k
		v := must(f.Slice(dpp, []int{0, 0, 0, ti * c}, []int{n, ho, wo, (ti + 1) * c}, nil))
		cfg := []compute.PadAxis{{}, {Start: i}, {Start: j}, {}}
		for a, start := range []int{i, j} {
			dim := []int{h + 2, w + 2}[a]
			if s > 1 {
				cfg[1+a].Interior = s - 1
				cfg[1+a].End = dim - start - ((([]int{ho, wo})[a]-1)*s + 1)
			} else {
				cfg[1+a].End = dim - (start + []int{ho, wo}[a])
			}
		}
		p := must(f.Pad(v, zero, cfg...))
		if acc == nil {
			acc = p
		} else {
			acc = must(f.Add(acc, p))
		}
	}
	crop1 := must(f.Slice(acc, []int{0, 0, 1, 0}, []int{n, h + 2, w + 1, c}, nil))
	dxV := must(f.Slice(crop1, []int{0, 1, 0, 0}, []int{n, h + 1, w, c}, nil))
	if err := f.Return([]compute.Value{patchesV, dxV}, nil); err != nil {
		t.Fatal(err)
	}
	exec, err := builder.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if fusions {
		mainFn := builder.(*gobackend.Builder).MainFn
		outs := mainFn.Outputs
		if _, ok := outs[0].Data.(*dtConcatSlicesNode); !ok {
			t.Errorf("patches not fused: %s %T", outs[0].OpType, outs[0].Data)
		}
		if ps, ok := outs[1].Data.(*dtPadSumNode); !ok || len(ps.terms) != k*k {
			t.Errorf("dx not fused into a PadSum of %d terms: %s %T", k*k, outs[1].OpType, outs[1].Data)
		}
	}
	toBuf := func(flat []float32, dims ...int) compute.Buffer {
		b, err := backend.BufferFromFlatData(0, flat, shapes.Make(dtypes.Float32, dims...))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	outs, err := exec.Execute([]compute.Buffer{toBuf(x[0], n, h, w, c), toBuf(dp[0], n, ho, wo, k*k*c)}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	patches = slices.Clone(outs[0].(*gobackend.Buffer).Flat.([]float32))
	dx = slices.Clone(outs[1].(*gobackend.Buffer).Flat.([]float32))
	return
}

func TestDTConvFusions(t *testing.T) {
	if !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("convfusion") {
		t.Skip("GOMLX_DT_PATCHES=off or GOMLX_DT_DISABLE")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, cfg := range [][6]int{{2, 6, 6, 3, 3, 1}, {2, 7, 5, 4, 3, 2}, {8, 16, 16, 64, 3, 1}, {3, 9, 9, 2, 1, 2}, {8, 34, 34, 16, 3, 2}} {
		n, h, w, c, k, s := cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]
		t.Run(fmt.Sprint(cfg), func(t *testing.T) {
			ho, wo := (h+2-k)/s+1, (w+2-k)/s+1
			x := make([]float32, n*h*w*c)
			dp := make([]float32, n*ho*wo*k*k*c)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			for i := range dp {
				dp[i] = float32(rng.NormFloat64())
			}
			wantP, wantDx := dtConvGraph(t, false, [][]float32{x}, [][]float32{dp}, n, h, w, c, k, s)
			gotP, gotDx := dtConvGraph(t, true, [][]float32{x}, [][]float32{dp}, n, h, w, c, k, s)
			if !slices.Equal(wantP, gotP) {
				t.Fatal("patches differ")
			}
			if len(wantDx) != n*h*w*c || len(gotDx) != len(wantDx) {
				t.Fatalf("dx sizes %d, %d", len(wantDx), len(gotDx))
			}
			// The fused gradient adds the (up to k*k) terms of each element in another order: equal
			// up to rounding (terms ~N(0,1), |error| <= 2*(k*k)*eps*sum|terms|).
			for i := range wantDx {
				if d := math.Abs(float64(wantDx[i] - gotDx[i])); d > 1e-5*float64(k*k)*4 {
					t.Fatalf("dx[%d]=%g, want %g", i, gotDx[i], wantDx[i])
				}
			}
		})
	}
}

// dtEWGraph builds and runs a chain of element-wise ops (with scalar and broadcast-vector leaves,
// and a shared intermediate), with the element-wise fusion on or off.
func dtEWGraph(t *testing.T, fusion bool, dims []int, x, y, v []float32) (outs [][]float32, fusedRoots int) {
	saved := DTEWFusionEnabled
	DTEWFusionEnabled = fusion
	defer func() { DTEWFusionEnabled = saved }()
	backend := dtTestBackend(t)
	defer backend.Finalize()
	must := func(val compute.Value, err error) compute.Value {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return val
	}
	vDims := make([]int, len(dims))
	for i := range vDims {
		vDims[i] = 1
	}
	vDims[len(dims)-1] = dims[len(dims)-1]
	builder := backend.Builder("ew")
	f := builder.Main()
	xp := must(f.Parameter("x", shapes.Make(dtypes.Float32, dims...), nil))
	yp := must(f.Parameter("y", shapes.Make(dtypes.Float32, dims...), nil))
	vp := must(f.Parameter("v", shapes.Make(dtypes.Float32, vDims...), nil))
	s := must(f.Constant([]float32{0.5}))
	zero := must(f.Constant([]float32{0}))
	one := must(f.Constant([]float32{1}))
	// a = x*v + 0.5; shared = a - max(y, 0) (used twice); out1 = sqrt(|shared|) / (y*y + 1) - sign(x);
	// out2 = min(-shared, v) * shared.
	a := must(f.Add(must(f.Mul(xp, vp)), s))
	shared := must(f.Sub(a, must(f.Max(yp, zero))))
	num := must(f.Sqrt(must(f.Abs(shared))))
	den := must(f.Add(must(f.Mul(yp, yp)), one))
	out1 := must(f.Sub(must(f.Div(num, den)), must(f.Sign(xp))))
	out2 := must(f.Mul(must(f.Min(must(f.Neg(shared)), vp)), shared))
	out3 := must(f.Sqrt(must(f.Neg(must(f.Mul(s, one)))))) // All-scalar leaves: sqrt(-0.5) = NaN.
	if err := f.Return([]compute.Value{out1, out2, out3}, nil); err != nil {
		t.Fatal(err)
	}
	exec, err := builder.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range builder.(*gobackend.Builder).MainFn.Nodes {
		if _, ok := n.Data.(*dtFusedNode); ok {
			fusedRoots++
		}
	}
	toBuf := func(flat []float32, d ...int) compute.Buffer {
		b, err := backend.BufferFromFlatData(0, flat, shapes.Make(dtypes.Float32, d...))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	res, err := exec.Execute([]compute.Buffer{toBuf(x, dims...), toBuf(y, dims...), toBuf(v, vDims...)}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		outs = append(outs, slices.Clone(r.(*gobackend.Buffer).Flat.([]float32)))
	}
	return
}

func TestDTElementwiseFusion(t *testing.T) {
	if !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("ewfusion") {
		t.Skip("GOMLX_DT_PATCHES=off or GOMLX_DT_DISABLE")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, dims := range [][]int{{5}, {3, 7}, {8, 64, 64, 64}, {2, 3, 5, 100}, {1, 1000}, {4, 1}} {
		t.Run(fmt.Sprint(dims), func(t *testing.T) {
			n := 1
			for _, d := range dims {
				n *= d
			}
			x, y := make([]float32, n), make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
				y[i] = float32(rng.NormFloat64())
				if i%17 == 0 {
					x[i] = 0
				}
			}
			v := make([]float32, dims[len(dims)-1])
			for i := range v {
				v[i] = float32(rng.NormFloat64())
			}
			want, _ := dtEWGraph(t, false, dims, x, y, v)
			got, fused := dtEWGraph(t, true, dims, x, y, v)
			if fused < 2 {
				t.Errorf("expected fused groups, got %d", fused)
			}
			for o := range want {
				for i := range want[o] {
					if math.Float32bits(want[o][i]) != math.Float32bits(got[o][i]) {
						t.Fatalf("output %d [%d]: got %g, want %g", o, i, got[o][i], want[o][i])
					}
				}
			}
		})
	}
}

// BenchmarkDTElementwiseFusion runs an Adam-like chain on a [3,3,512,512] tensor, fused or not.
func BenchmarkDTElementwiseFusion(b *testing.B) {
	if v, err := strconv.Atoi(os.Getenv("DT_BENCH_BLOCK")); err == nil {
		DTFusedBlockTarget = v
	}
	for _, fusion := range []bool{false, true} {
		b.Run(fmt.Sprintf("fusion=%v", fusion), func(b *testing.B) {
			saved := DTEWFusionEnabled
			DTEWFusionEnabled = fusion
			defer func() { DTEWFusionEnabled = saved }()
			backend, _ := gobackend.New("")
			defer backend.Finalize()
			dims := dtBenchDims()
			builder := backend.Builder("adam")
			f := builder.Main()
			must := func(v compute.Value, err error) compute.Value {
				if err != nil {
					b.Fatal(err)
				}
				return v
			}
			sh := shapes.Make(dtypes.Float32, dims...)
			w := must(f.Parameter("w", sh, nil))
			g := must(f.Parameter("g", sh, nil))
			m := must(f.Parameter("m", sh, nil))
			v := must(f.Parameter("v", sh, nil))
			c := func(x float32) compute.Value { return must(f.Constant([]float32{x})) }
			m2 := must(f.Add(must(f.Mul(m, c(0.9))), must(f.Mul(g, c(0.1)))))
			v2 := must(f.Add(must(f.Mul(v, c(0.999))), must(f.Mul(must(f.Mul(g, g)), c(0.001)))))
			upd := must(f.Div(must(f.Mul(m2, c(1e-3))), must(f.Add(must(f.Sqrt(v2)), c(1e-8)))))
			w2 := must(f.Sub(w, must(f.Add(upd, must(f.Mul(w, c(1e-4)))))))
			if err := f.Return([]compute.Value{w2, m2, v2}, nil); err != nil {
				b.Fatal(err)
			}
			exec, err := builder.Compile()
			if err != nil {
				b.Fatal(err)
			}
			n := sh.Size()
			bufs := make([]compute.Buffer, 4)
			for i := range bufs {
				flat := make([]float32, n)
				for j := range flat {
					flat[j] = float32(j%1000) * 1e-3
				}
				bufs[i], _ = backend.BufferFromFlatData(0, flat, sh)
			}
			b.ResetTimer()
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			defer func() {
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
				cpu := (ru1.Utime.Nano() + ru1.Stime.Nano()) - (ru0.Utime.Nano() + ru0.Stime.Nano())
				b.ReportMetric(float64(cpu)/float64(b.N)/1e6, "cpu-ms/op")
			}()
			for range b.N {
				outs, err := exec.Execute(bufs, nil, 0)
				if err != nil {
					b.Fatal(err)
				}
				for _, o := range outs {
					o.(*gobackend.Buffer).RawBackend.PutBuffer(o.(*gobackend.Buffer))
				}
			}
		})
	}
}

func BenchmarkDTKernels(b *testing.B) {
	x := make([]float32, 512)
	y := make([]float32, 512)
	z := make([]float32, 512)
	b.Run("MulVS", func(b *testing.B) {
		for range b.N {
			dtF32MulVS(z, x, 0.5)
		}
	})
	b.Run("AddVV", func(b *testing.B) {
		for range b.N {
			dtF32AddVV(z, x, y)
		}
	})
	big := make([]float32, 1<<22)
	out := make([]float32, 1<<22)
	b.Run("MulVS-4M", func(b *testing.B) {
		for range b.N {
			dtF32MulVS(out, big, 0.5)
		}
		b.ReportMetric(float64(8<<22)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
	b.Run("MulVS-4M-blocks", func(b *testing.B) {
		for range b.N {
			for i := 0; i < len(big); i += 512 {
				dtF32MulVS(out[i:i+512], big[i:i+512], 0.5)
			}
		}
		b.ReportMetric(float64(8<<22)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
}

func dtBenchDims() []int {
	if v := os.Getenv("DT_BENCH_DIMS"); v != "" {
		var dims []int
		for _, f := range strings.Split(v, ",") {
			d, _ := strconv.Atoi(f)
			dims = append(dims, d)
		}
		return dims
	}
	return []int{3, 3, 512, 512}
}

// TestDTIm2ColFusion builds a convolution lowered like models/nn (zero padding by concatenation,
// 9 strided slices concatenated on the channels, reshaped to the patch matrix P) and its weight
// gradients (Pᵀ·dY as GoMLX and internal/gomlxfix build them, with transpositions), and checks
// that the DotGenerals read P in place (dot.Im2ColSpec) with the same results as materialized.
func TestDTIm2ColFusion(t *testing.T) {
	if !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("convfusion") || gobackend.DTPatchDisabled("im2col") || gobackend.DTPatchDisabled("fold") || gobackend.DTPatchDisabled("gemm") {
		t.Skip("GOMLX_DT_PATCHES=off or GOMLX_DT_DISABLE")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, cfg := range [][5]int{{2, 8, 8, 64, 1}, {2, 9, 7, 32, 2}, {1, 10, 10, 128, 1}} {
		n, h, w, c, s := cfg[0], cfg[1], cfg[2], cfg[3], cfg[4]
		ho, wo := (h+2-3)/s+1, (w+2-3)/s+1
		cout := 48
		x := make([]float32, n*h*w*c)
		wts := make([]float32, 9*c*cout)
		dy := make([]float32, n*ho*wo*cout)
		for _, a := range [][]float32{x, wts, dy} {
			for i := range a {
				a[i] = float32(rng.NormFloat64())
			}
		}
		run := func(im2col bool) (outs [][]float32, virtual int) {
			saved := DTIm2ColEnabled
			DTIm2ColEnabled = im2col
			defer func() { DTIm2ColEnabled = saved }()
			backend := dtTestBackend(t)
			defer backend.Finalize()
			must := func(v compute.Value, err error) compute.Value {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			builder := backend.Builder("im2col")
			f := builder.Main()
			xp := must(f.Parameter("x", shapes.Make(dtypes.Float32, n, h, w, c), nil))
			wp := must(f.Parameter("w", shapes.Make(dtypes.Float32, 9*c, cout), nil))
			dyp := must(f.Parameter("dy", shapes.Make(dtypes.Float32, n*ho*wo, cout), nil))
			zero := must(f.Constant([]float32{0}))
			zerosOf := func(dims ...int) compute.Value {
				return must(f.BroadcastInDim(zero, shapes.Make(dtypes.Float32, dims...), nil))
			}
			x1 := must(f.Concatenate(1, zerosOf(n, 1, w, c), xp, zerosOf(n, 1, w, c)))
			x2 := must(f.Concatenate(2, zerosOf(n, h+2, 1, c), x1, zerosOf(n, h+2, 1, c)))
			var taps []compute.Value
			for i := range 3 {
				for j := range 3 {
					taps = append(taps, must(f.Slice(x2, []int{0, i, j, 0}, []int{n, i + (ho-1)*s + 1, j + (wo-1)*s + 1, c}, []int{1, s, s, 1})))
				}
			}
			p := must(f.Reshape(must(f.Concatenate(3, taps...)), n*ho*wo, 9*c))
			y := must(f.DotGeneral(p, []int{1}, nil, wp, []int{0}, nil, compute.DotGeneralConfig{}))
			// dW = (dYᵀ·P)ᵀ, as internal/gomlxfix builds it, and Pᵀ·dY.
			dw1 := must(f.Transpose(must(f.DotGeneral(must(f.Transpose(dyp, 1, 0)), []int{1}, nil, p, []int{0}, nil, compute.DotGeneralConfig{})), 1, 0))
			dw2 := must(f.DotGeneral(must(f.Transpose(p, 1, 0)), []int{1}, nil, dyp, []int{0}, nil, compute.DotGeneralConfig{}))
			if err := f.Return([]compute.Value{y, dw1, dw2}, nil); err != nil {
				t.Fatal(err)
			}
			exec, err := builder.Compile()
			if err != nil {
				t.Fatal(err)
			}
			for _, nd := range builder.(*gobackend.Builder).MainFn.Nodes {
				if d, ok := nd.Data.(*dot.NodeData); ok && (d.LHSIm2Col != nil || d.RHSIm2Col != nil) {
					virtual++
				}
			}
			toBuf := func(flat []float32, d ...int) compute.Buffer {
				b, err := backend.BufferFromFlatData(0, flat, shapes.Make(dtypes.Float32, d...))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			res, err := exec.Execute([]compute.Buffer{toBuf(x, n, h, w, c), toBuf(wts, 9*c, cout), toBuf(dy, n*ho*wo, cout)}, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				outs = append(outs, slices.Clone(r.(*gobackend.Buffer).Flat.([]float32)))
			}
			return
		}
		want, _ := run(false)
		got, virtual := run(true)
		if virtual != 3 {
			t.Errorf("%v: %d DotGenerals read the patches in place, want 3", cfg, virtual)
		}
		for o := range want {
			for i := range want[o] {
				if d := math.Abs(float64(want[o][i] - got[o][i])); d > 1e-4*(1+math.Abs(float64(want[o][i]))) {
					t.Fatalf("%v output %d [%d]: got %g, want %g", cfg, o, i, got[o][i], want[o][i])
				}
			}
		}
	}
}

// TestDTCol2ImFusion builds the gradient of the patch extraction of a convolution as autodiff does
// (the patch gradient dP = dY·Wᵀ as a DotGeneral, sliced per tap, zero-padded, added, cropped) and
// checks that the DotGeneral and the col2im are fused, with the same results.
func TestDTCol2ImFusion(t *testing.T) {
	if !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("convfusion") || gobackend.DTPatchDisabled("col2im") || gobackend.DTPatchDisabled("gemm") {
		t.Skip("GOMLX_DT_PATCHES=off or GOMLX_DT_DISABLE")
	}
	rng := rand.New(rand.NewPCG(15, 16))
	for _, cfg := range [][6]int{{2, 8, 16, 64, 1, 48}, {2, 9, 33, 128, 2, 40}, {3, 6, 19, 64, 1, 300}, {2, 8, 8, 64, 1, 48}, {2, 6, 20, 32, 1, 32}, {1, 7, 35, 32, 2, 64}} {
		n, h, w, c, s, cout := cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]
		ho, wo := (h+2-3)/s+1, (w+2-3)/s+1
		wantFused := wo >= 16
		dy := make([]float32, n*ho*wo*cout)
		wts := make([]float32, 9*c*cout)
		for _, a := range [][]float32{dy, wts} {
			for i := range a {
				a[i] = float32(rng.NormFloat64())
			}
		}
		run := func(fuse bool) (dx []float32, fused bool) {
			saved := DTCol2ImEnabled
			DTCol2ImEnabled = fuse
			defer func() { DTCol2ImEnabled = saved }()
			backend := dtTestBackend(t)
			defer backend.Finalize()
			must := func(v compute.Value, err error) compute.Value {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			builder := backend.Builder("col2im")
			f := builder.Main()
			dyp := must(f.Parameter("dy", shapes.Make(dtypes.Float32, n*ho*wo, cout), nil))
			wp := must(f.Parameter("w", shapes.Make(dtypes.Float32, 9*c, cout), nil))
			zero := must(f.Constant([]float32{0}))
			dp := must(f.Reshape(must(f.DotGeneral(dyp, []int{1}, nil, wp, []int{1}, nil, compute.DotGeneralConfig{})), n, ho, wo, 9*c))
			var acc compute.Value
			for k := range 9 {
				ti := k
				if c == 128 {
					ti = 8 - k // Autodiff may add the taps' gradients in any order.
				}
				i, j := ti/3, ti%3
				v := must(f.Slice(dp, []int{0, 0, 0, ti * c}, []int{n, ho, wo, (ti + 1) * c}, nil))
				cfgPad := []compute.PadAxis{{}, {Start: i}, {Start: j}, {}}
				for a, start := range []int{i, j} {
					dim := []int{h + 2, w + 2}[a]
					if s > 1 {
						cfgPad[1+a].Interior = s - 1
						cfgPad[1+a].End = dim - start - (([]int{ho, wo}[a]-1)*s + 1)
					} else {
						cfgPad[1+a].End = dim - (start + []int{ho, wo}[a])
					}
				}
				p := must(f.Pad(v, zero, cfgPad...))
				if acc == nil {
					acc = p
				} else {
					acc = must(f.Add(acc, p))
				}
			}
			crop := must(f.Slice(must(f.Slice(acc, []int{0, 0, 1, 0}, []int{n, h + 2, w + 1, c}, nil)), []int{0, 1, 0, 0}, []int{n, h + 1, w, c}, nil))
			if err := f.Return([]compute.Value{crop}, nil); err != nil {
				t.Fatal(err)
			}
			exec, err := builder.Compile()
			if err != nil {
				t.Fatal(err)
			}
			_, fused = builder.(*gobackend.Builder).MainFn.Outputs[0].Data.(*dtGemmCol2ImNode)
			toBuf := func(flat []float32, d ...int) compute.Buffer {
				b, err := backend.BufferFromFlatData(0, flat, shapes.Make(dtypes.Float32, d...))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			res, err := exec.Execute([]compute.Buffer{toBuf(dy, n*ho*wo, cout), toBuf(wts, 9*c, cout)}, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			return slices.Clone(res[0].(*gobackend.Buffer).Flat.([]float32)), fused
		}
		want, _ := run(false)
		got, fused := run(true)
		if fused != wantFused {
			t.Errorf("%v: DotGeneral and col2im fused=%v, want %v", cfg, fused, wantFused)
		}
		for i := range want {
			if d := math.Abs(float64(want[i] - got[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%v: [%d] got %g, want %g", cfg, i, got[i], want[i])
			}
		}
	}
}

// TestDTTransposeFast compares the fast Transpose with the generic one, bitwise, on the three
// paths (unit axes moved, rows moved, batched 2-D) and on one it leaves to the generic executor.
func TestDTTransposeFast(t *testing.T) {
	backend := dtTestBackend(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		dims, perm []int
	}{
		{[]int{4, 6, 5, 1, 1, 8}, []int{0, 1, 3, 2, 4, 5}},     // Unit axes only: a reshape.
		{[]int{3, 5, 7, 8}, []int{1, 2, 0, 3}},                 // Last axis stays: rows.
		{[]int{2, 3, 1, 5, 1, 4}, []int{2, 3, 0, 4, 1, 5}},     // Rows, with unit axes.
		{[]int{37, 50}, []int{1, 0}},                           // 2-D.
		{[]int{3, 17, 33}, []int{0, 2, 1}},                     // Batched 2-D.
		{[]int{2, 3, 16, 5}, []int{0, 3, 1, 2}},                // Batched after merging axes 1 and 2.
		{[]int{4, 3, 5, 2}, []int{3, 1, 0, 2}},                 // Generic.
		{[]int{600, 700}, []int{1, 0}},                         // Parallel.
		{[]int{64, 50, 1, 64, 1, 32}, []int{0, 1, 3, 2, 4, 5}}, // Parallel, unit axes.
	} {
		x := dtRandBuffer(t, backend, rng, dtypes.Float32, tc.dims...)
		outDims := make([]int, len(tc.dims))
		for i, a := range tc.perm {
			outDims[i] = tc.dims[a]
		}
		node := &gobackend.Node{OpType: compute.OpTypeTranspose, Shape: shapes.Make(dtypes.Float32, outDims...), Data: tc.perm}
		want, err := execTranspose(backend, node, []*gobackend.Buffer{dtClone(t, backend, x)}, []bool{false})
		if err != nil {
			t.Fatal(err)
		}
		for _, owned := range []bool{false, true} {
			got, err := execTransposeFast(backend, node, []*gobackend.Buffer{dtClone(t, backend, x)}, []bool{owned})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.RawShape.Dimensions, outDims) {
				t.Fatalf("%v by %v: shape %v, want %v", tc.dims, tc.perm, got.RawShape.Dimensions, outDims)
			}
			w, g := want.Flat.([]float32), got.Flat.([]float32)
			for i := range w {
				if math.Float32bits(w[i]) != math.Float32bits(g[i]) {
					t.Fatalf("%v by %v (owned %v): at %d got %g, want %g", tc.dims, tc.perm, owned, i, g[i], w[i])
				}
			}
		}
	}
}
