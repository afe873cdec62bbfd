package nn

import (
	"math"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// run executes fn once on a fresh store, in training mode if training.
func run(t *testing.T, training bool, fn func(scope *model.Scope, x *Node) *Node, x *tensors.Tensor) *tensors.Tensor {
	t.Helper()
	store := model.NewStore()
	return model.MustExecOnce(backend.Go(), store, func(scope *model.Scope, x *Node) *Node {
		store.SetTraining(x.Graph(), training)
		return fn(scope, x)
	}, x)
}

func t64(dims []int, data ...float64) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

func TestPoolingForward(t *testing.T) {
	// 1x4x4x1 input 0..15.
	x := t64([]int{1, 4, 4, 1}, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return MaxPool2D(x, 2, 2, 0) }, x),
		t64([]int{1, 2, 2, 1}, 5, 7, 13, 15), 0)
	// 3x3 stride 2 padding 1 (ResNet's stem pool): windows clipped at the border.
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return MaxPool2D(x, 3, 2, 1) }, x),
		t64([]int{1, 2, 2, 1}, 5, 7, 13, 15), 0)
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return MaxPool2D(MulScalar(x, -1), 3, 2, 1) }, x),
		t64([]int{1, 2, 2, 1}, 0, -1, -4, -5), 0)
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return AvgPool2D(x, 2, 2, 0, true) }, x),
		t64([]int{1, 2, 2, 1}, 2.5, 4.5, 10.5, 12.5), 1e-12)
	// Padding 1, 3x3, stride 2: top-left window covers {0,1,4,5} = 10 over 9 or over 4 real pixels.
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return AvgPool2D(x, 3, 2, 1, true) }, x),
		t64([]int{1, 2, 2, 1}, 10.0/9, 24.0/9, 51.0/9, 90.0/9), 1e-12)
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return AvgPool2D(x, 3, 2, 1, false) }, x),
		t64([]int{1, 2, 2, 1}, 10.0/4, 24.0/6, 51.0/6, 90.0/9), 1e-12)
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return GlobalAvgPool(x) }, x),
		t64([]int{1, 1}, 7.5), 1e-12)
	// Adaptive 4 -> 3: bins [0,2), [1,3), [2,4) on each axis.
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return AdaptiveAvgPool2D(x, 3) }, x),
		t64([]int{1, 3, 3, 1}, 2.5, 3.5, 4.5, 6.5, 7.5, 8.5, 10.5, 11.5, 12.5), 1e-12)
}

func TestPoolingGradients(t *testing.T) {
	x := gradcheck.RandomTensor(5, 2, 7, 6, 3)
	for name, fn := range map[string]func(*Node) *Node{
		"maxpool3x3/s2/p1":    func(x *Node) *Node { return MaxPool2D(x, 3, 2, 1) },
		"maxpool2x2":          func(x *Node) *Node { return MaxPool2D(x, 2, 2, 0) },
		"avgpool3x3/p1":       func(x *Node) *Node { return AvgPool2D(x, 3, 1, 1, true) },
		"avgpool3x3/p1/nopad": func(x *Node) *Node { return AvgPool2D(x, 3, 2, 1, false) },
		"adaptive1":           func(x *Node) *Node { return AdaptiveAvgPool2D(x, 1) },
		"adaptive3":           func(x *Node) *Node { return AdaptiveAvgPool2D(x, 3) },
		"adaptive6":           func(x *Node) *Node { return AdaptiveAvgPool2D(x, 6) },
		"global":              func(x *Node) *Node { return GlobalAvgPool(x) },
	} {
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{}, func(_ *model.Scope, in []*Node) *Node { return fn(in[0]) }, x)
		})
	}
}

func TestMaxPoolTieGoesToOnePosition(t *testing.T) {
	x := t64([]int{1, 2, 2, 1}, 1, 1, 1, 1)
	grad := MustExecOnce(backend.Go(), func(x *Node) *Node {
		return Gradient(ReduceAllSum(MaxPool2D(x, 2, 2, 0)), x)[0]
	}, x)
	assertClose(t, grad, t64([]int{1, 2, 2, 1}, 1, 0, 0, 0), 0)
}

func TestBatchNorm(t *testing.T) {
	// 2 channels; channel 0 holds 1..4, channel 1 holds 10, 10, 10, 14.
	x := t64([]int{2, 1, 2, 2}, 1, 10, 2, 10, 3, 10, 4, 14)
	store := model.NewStore()
	exec := model.MustNewExec(backend.Go(), store, func(scope *model.Scope, x *Node) *Node {
		store.SetTraining(x.Graph(), true)
		return BatchNorm(scope.In("bn"), x).Done()
	})
	y := exec.MustCall(x)[0]
	// Channel 0: mean 2.5, biased var 1.25.
	s0 := 1 / math.Sqrt(1.25+1e-5)
	s1 := 1 / math.Sqrt(3+1e-5)
	assertClose(t, y, t64([]int{2, 1, 2, 2}, -1.5*s0, -1*s1, -0.5*s0, -1*s1, 0.5*s0, -1*s1, 1.5*s0, 3*s1), 1e-9)
	// Running stats: 0.9*init + 0.1*batch, with the unbiased variance (n=4).
	mean := store.GetVariable("/bn/running_mean").MustValue()
	variance := store.GetVariable("/bn/running_var").MustValue()
	assertClose(t, mean, t64([]int{2}, 0.25, 1.1), 1e-12)
	assertClose(t, variance, t64([]int{2}, 0.9+0.1*5.0/3, 0.9+0.1*4), 1e-12)

	// Eval uses the running statistics.
	eval := model.MustNewExec(backend.Go(), store, func(scope *model.Scope, x *Node) *Node {
		return BatchNorm(scope.In("bn"), x).Done()
	})
	ye := eval.MustCall(x)[0]
	v0, v1 := 0.9+0.1*5.0/3, 1.3
	want := []float64{(1 - 0.25) / math.Sqrt(v0+1e-5), (10 - 1.1) / math.Sqrt(v1+1e-5)}
	got := flat64(ye)
	for c := range 2 {
		if math.Abs(got[c]-want[c]) > 1e-9 {
			t.Errorf("eval channel %d: got %g, want %g", c, got[c], want[c])
		}
	}
}

// TestSplitBatchNorm: with 2 splits, BatchNorm normalises each half of the batch as a
// BatchNorm of that half alone would, and the running statistics move to the halves' mean.
func TestSplitBatchNorm(t *testing.T) {
	x := gradcheck.RandomTensor(11, 4, 2, 3, 5)
	store := model.NewStore()
	outs := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x *Node) []*Node {
		store.SetTraining(x.Graph(), true)
		split := scope.In("split")
		SplitBatchNorm(split, 2)
		halves := []*Node{
			BatchNorm(scope.In("a"), Slice(x, AxisRange(0, 2))).Done(),
			BatchNorm(scope.In("b"), Slice(x, AxisRange(2, 4))).Done(),
		}
		return []*Node{BatchNorm(split.In("bn"), x).Done(), Concatenate(halves, 0)}
	}, x)
	assertClose(t, outs[0], outs[1], 1e-12)
	for _, stat := range []string{"running_mean", "running_var"} {
		a := flat64(store.GetVariable("/a/" + stat).MustValue())
		b := flat64(store.GetVariable("/b/" + stat).MustValue())
		want := make([]float64, len(a))
		for i := range a {
			want[i] = (a[i] + b[i]) / 2
		}
		assertClose(t, store.GetVariable("/split/bn/"+stat).MustValue(), t64([]int{len(want)}, want...), 1e-12)
	}
	gradcheck.Check(t, gradcheck.Options{Training: true}, func(s *model.Scope, in []*Node) *Node {
		SplitBatchNorm(s, 2)
		return BatchNorm(s.In("bn"), in[0]).Done()
	}, x)
}

func TestNormGradients(t *testing.T) {
	x := gradcheck.RandomTensor(6, 3, 3, 2, 4)
	for name, tc := range map[string]struct {
		training bool
		fn       func(*model.Scope, *Node) *Node
	}{
		"batchnorm/train":   {true, func(s *model.Scope, x *Node) *Node { return BatchNorm(s.In("bn"), x).Done() }},
		"batchnorm/eval":    {false, func(s *model.Scope, x *Node) *Node { return BatchNorm(s.In("bn"), x).Done() }},
		"groupnorm":         {false, func(s *model.Scope, x *Node) *Node { return GroupNorm(s.In("gn"), x, 2, 1e-5) }},
		"layernorm":         {false, func(s *model.Scope, x *Node) *Node { return LayerNorm(s.In("ln"), x, 1e-6) }},
		"layernorm/noparam": {false, func(s *model.Scope, x *Node) *Node { return LayerNormNoParams(x, 1e-6) }},
		"film": {false, func(s *model.Scope, x *Node) *Node {
			e := Linear(s.In("emb"), ReduceMean(x, 1, 2), 8).Done()
			scale := Slice(e, AxisRange(), AxisRange(0, 4))
			shift := Slice(e, AxisRange(), AxisRange(4, 8))
			return FiLM(GroupNorm(s.In("gn"), x, 2, 1e-5), scale, shift)
		}},
	} {
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{Training: tc.training}, func(s *model.Scope, in []*Node) *Node {
				return tc.fn(s, in[0])
			}, x)
		})
	}
}

func TestGroupAndLayerNormForward(t *testing.T) {
	// One position, 4 channels 1,2,3,5; 2 groups: {1,2} and {3,5}.
	x := t64([]int{1, 1, 1, 4}, 1, 2, 3, 5)
	e := 1e-5
	assertClose(t, run(t, false, func(s *model.Scope, x *Node) *Node { return GroupNorm(s, x, 2, e) }, x),
		t64([]int{1, 1, 1, 4}, -0.5/math.Sqrt(0.25+e), 0.5/math.Sqrt(0.25+e), -1/math.Sqrt(1+e), 1/math.Sqrt(1+e)), 1e-12)
	// LayerNorm over 4 channels: mean 2.75, var 2.1875.
	sd := math.Sqrt(2.1875 + e)
	assertClose(t, run(t, false, func(s *model.Scope, x *Node) *Node { return LayerNormNoParams(x, e) }, x),
		t64([]int{1, 1, 1, 4}, -1.75/sd, -0.75/sd, 0.25/sd, 2.25/sd), 1e-12)
}

func TestUpsampling(t *testing.T) {
	x := t64([]int{1, 2, 2, 1}, 1, 2, 3, 4)
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return UpsampleNearest(x, 2) }, x),
		t64([]int{1, 4, 4, 1}, 1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4), 0)
	// torch.nn.functional.interpolate(x, size=(4,4), mode="bilinear", align_corners=False).
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return ResizeBilinear(x, 4, 4) }, x),
		t64([]int{1, 4, 4, 1},
			1.0, 1.25, 1.75, 2.0,
			1.5, 1.75, 2.25, 2.5,
			2.5, 2.75, 3.25, 3.5,
			3.0, 3.25, 3.75, 4.0), 1e-12)
	// Down-sizing 4 -> 2 with half-pixel centres averages pairs.
	x4 := t64([]int{1, 1, 4, 1}, 1, 2, 3, 4)
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return ResizeBilinear(x, 1, 2) }, x4),
		t64([]int{1, 1, 2, 1}, 1.5, 3.5), 1e-12)
}

func TestUpsamplingGradientsBatch(t *testing.T) {
	x := gradcheck.RandomTensor(7, 3, 3, 4, 2) // batch 3: GoMLX's own Interpolate gradient fails here
	for name, fn := range map[string]func(*Node) *Node{
		"nearest2x":       func(x *Node) *Node { return UpsampleNearest(x, 2) },
		"bilinear-up":     func(x *Node) *Node { return ResizeBilinear(x, 7, 8) },
		"bilinear-down":   func(x *Node) *Node { return ResizeBilinear(x, 2, 3) },
		"bilinear-mixed":  func(x *Node) *Node { return ResizeBilinear(x, 5, 2) },
		"bilinear-same-h": func(x *Node) *Node { return ResizeBilinear(x, 3, 9) },
	} {
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{}, func(_ *model.Scope, in []*Node) *Node { return fn(in[0]) }, x)
		})
	}
	t.Run("upconv", func(t *testing.T) {
		gradcheck.Check(t, gradcheck.Options{}, func(s *model.Scope, in []*Node) *Node { return UpConv(s.In("up"), in[0], 3) }, x)
	})
}

func TestActivations(t *testing.T) {
	x := t64([]int{4}, -2, -0.5, 0, 1.5)
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return ReLU(x) }, x), t64([]int{4}, 0, 0, 0, 1.5), 0)
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return SiLU(x) }, x),
		t64([]int{4}, -2*sig(-2), -0.5*sig(-0.5), 0, 1.5*sig(1.5)), 1e-12)
	phi := func(v float64) float64 { return 0.5 * (1 + math.Erf(v/math.Sqrt2)) }
	assertClose(t, run(t, false, func(_ *model.Scope, x *Node) *Node { return GELU(x) }, x),
		t64([]int{4}, -2*phi(-2), -0.5*phi(-0.5), 0, 1.5*phi(1.5)), 1e-12)
	xr := gradcheck.RandomTensor(8, 2, 5)
	for name, fn := range map[string]func(*Node) *Node{"silu": SiLU, "gelu": GELU, "relu": ReLU} {
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{}, func(_ *model.Scope, in []*Node) *Node { return fn(in[0]) }, xr)
		})
	}
}

func TestDropout(t *testing.T) {
	x := tensors.FromFlatDataAndDimensions(make([]float64, 10000), 100, 100)
	tensors.MustMutableFlatData(x, func(f []float64) {
		for i := range f {
			f[i] = 1
		}
	})
	y := flat64(run(t, true, func(s *model.Scope, x *Node) *Node { return Dropout(s, x, 0.25) }, x))
	zeros, sum := 0, 0.0
	for _, v := range y {
		if v == 0 {
			zeros++
		} else if math.Abs(v-1/0.75) > 1e-12 {
			t.Fatalf("kept value %g, want %g", v, 1/0.75)
		}
		sum += v
	}
	if frac := float64(zeros) / float64(len(y)); math.Abs(frac-0.25) > 0.02 {
		t.Errorf("dropped fraction %.3f, want 0.25", frac)
	}
	assertClose(t, run(t, false, func(s *model.Scope, x *Node) *Node { return Dropout(s, x, 0.25) }, x), x, 0)
	gradcheck.Check(t, gradcheck.Options{Training: true}, func(s *model.Scope, in []*Node) *Node {
		return Dropout(s, Linear(s.In("fc"), in[0], 6).Done(), 0.3)
	}, gradcheck.RandomTensor(9, 4, 5))
	gradcheck.Check(t, gradcheck.Options{Training: true}, func(s *model.Scope, in []*Node) *Node {
		return DropPath(s, Linear(s.In("fc"), in[0], 6).Done(), 0.3)
	}, gradcheck.RandomTensor(9, 4, 5))
}

func TestTimestepEmbedding(t *testing.T) {
	ts := t64([]int{2}, 0, 1.5)
	got := flat64(run(t, false, func(_ *model.Scope, x *Node) *Node { return TimestepEmbedding(x, 5, 10000) }, ts))
	// dim 5: half = 2, freqs 1 and 10000^(-1/2) = 0.01; columns cos, cos, sin, sin, 0.
	want := []float64{1, 1, 0, 0, 0, math.Cos(1.5), math.Cos(0.015), math.Sin(1.5), math.Sin(0.015), 0}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("element %d: got %g, want %g", i, got[i], want[i])
		}
	}
	gradcheck.Check(t, gradcheck.Options{}, func(_ *model.Scope, in []*Node) *Node {
		return TimestepEmbedding(in[0], 6, 10000)
	}, t64([]int{3}, 0.3, 2.5, 7))
}

func TestSelfAttention(t *testing.T) {
	x := gradcheck.RandomTensor(10, 2, 5, 4)
	gradcheck.Check(t, gradcheck.Options{}, func(s *model.Scope, in []*Node) *Node {
		return SelfAttention(s.In("attn"), in[0], 2, false)
	}, x)
	// Zero-initialised output projection: the block starts at zero.
	y := run(t, false, func(s *model.Scope, x *Node) *Node { return SelfAttention(s, x, 2, true) }, x)
	for _, v := range flat64(y) {
		if v != 0 {
			t.Fatalf("zero-initialised attention output %g, want 0", v)
		}
	}
	// Attention is equivariant to permuting positions.
	store := model.NewStore()
	exec := model.MustNewExec(backend.Go(), store, func(scope *model.Scope, x *Node) (*Node, *Node) {
		a := SelfAttention(scope.In("attn"), x, 2, false)
		perm := Concatenate([]*Node{Slice(x, AxisRange(), AxisRange(3, 5)), Slice(x, AxisRange(), AxisRange(0, 3))}, 1)
		b := SelfAttention(scope.Shared("attn"), perm, 2, false)
		aPerm := Concatenate([]*Node{Slice(a, AxisRange(), AxisRange(3, 5)), Slice(a, AxisRange(), AxisRange(0, 3))}, 1)
		return aPerm, b
	})
	out := exec.MustCall(x)
	assertClose(t, out[0], out[1], 1e-12)
}

func TestSpectralNorm(t *testing.T) {
	// A 2x3 weight [in, out] whose singular values are 3 and 1: after enough power iterations
	// the normalised weight has spectral norm 1.
	w := t64([]int{2, 2}, 3, 0, 0, 1)
	store := model.NewStore()
	exec := model.MustNewExec(backend.Go(), store, func(scope *model.Scope, w *Node) *Node {
		store.SetTraining(w.Graph(), true)
		return SpectralNorm(scope.In("sn"), w)
	})
	var y *tensors.Tensor
	for range 30 {
		y = exec.MustCall(w)[0]
	}
	assertClose(t, y, t64([]int{2, 2}, 1, 0, 0, 1.0/3), 1e-9)
	// Gradients (with u, v held fixed, as PyTorch treats them).
	gradcheck.Check(t, gradcheck.Options{}, func(s *model.Scope, in []*Node) *Node {
		return Conv(s.In("conv"), in[0], 3).Kernel(3).Padding(1).SpectralNorm().Done()
	}, gradcheck.RandomTensor(11, 2, 4, 4, 2))
}

func TestLinear(t *testing.T) {
	gradcheck.Check(t, gradcheck.Options{}, func(s *model.Scope, in []*Node) *Node {
		return Linear(s.In("fc"), in[0], 3).Done()
	}, gradcheck.RandomTensor(12, 2, 4, 5))
}

func TestErfInvAndTruncNormal(t *testing.T) {
	xs := []float64{-0.999, -0.9, -0.3, 0, 0.2, 0.7, 0.95, 0.9999}
	got := flat64(run(t, false, func(_ *model.Scope, x *Node) *Node { return ErfInv(x) }, t64([]int{len(xs)}, xs...)))
	for i, x := range xs {
		if back := math.Erf(got[i]); math.Abs(back-x) > 1e-6 {
			t.Errorf("erf(erfinv(%g)) = %g", x, back)
		}
	}
	// 20000 draws of trunc_normal(std=0.5): within ±1, mean ~0, std ~0.5*0.8796 (truncated at 2σ).
	vals := flat64(run(t, false, func(s *model.Scope, x *Node) *Node {
		return TruncNormalInit(0.5)(s, 0, 0)(x.Graph(), x.Shape())
	}, tensors.FromFlatDataAndDimensions(make([]float64, 20000), 20000)))
	var mean, sq float64
	for _, v := range vals {
		if math.Abs(v) > 1+1e-9 {
			t.Fatalf("value %g outside ±2 std", v)
		}
		mean += v
		sq += v * v
	}
	mean /= float64(len(vals))
	std := math.Sqrt(sq/float64(len(vals)) - mean*mean)
	if math.Abs(mean) > 0.01 || math.Abs(std-0.5*0.8796) > 0.01 {
		t.Errorf("trunc normal mean %.4f std %.4f, want 0 and %.4f", mean, std, 0.5*0.8796)
	}
}

func TestFrozenScopeIsInference(t *testing.T) {
	x := t64([]int{4, 1, 1, 2}, 1, 2, 3, 4, 5, 6, 7, 8)
	store := model.NewStore()
	out := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x *Node) []*Node {
		store.SetTraining(x.Graph(), true)
		teacher := scope.In("teacher")
		Freeze(teacher)
		return []*Node{
			Dropout(teacher.In("sub"), x, 0.5),           // frozen: identity
			BatchNorm(teacher.In("bn"), x).Done(),        // frozen: running stats (0, 1) -> x
			Dropout(scope.In("student"), x, 0.999999999), // not frozen: drops everything
		}
	}, x)
	assertClose(t, out[0], x, 0)
	assertClose(t, out[1], x, 1e-4)
	for _, v := range flat64(out[2]) {
		if v != 0 {
			t.Fatalf("dropout outside the frozen scope kept %g", v)
		}
	}
	if m := store.GetVariable("/teacher/bn/running_mean"); m != nil {
		if got := flat64(m.MustValue()); got[0] != 0 {
			t.Errorf("a frozen BatchNorm updated its running mean to %v", got)
		}
	}
}
