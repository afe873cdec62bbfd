// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

//go:build amd64 && goexperiment.simd

// DreamTeacher-Go patch: DotGeneral(Transpose(x), rhs) folded into a column-major GEMM.

package matmul_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"simd/archsimd"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/internal/gobackend/dot"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/compute/support/testutil"
)

func randMatrix(rng *rand.Rand, rows, cols int) [][]float32 {
	m := make([][]float32, rows)
	for i := range m {
		m[i] = make([]float32, cols)
		for j := range m[i] {
			m[i][j] = float32(rng.NormFloat64())
		}
	}
	return m
}

func TestFoldedTransposeDot(t *testing.T) {
	if !archsimd.X86.AVX512() || !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("gemm") || gobackend.DTPatchDisabled("fold") {
		t.Skip("no AVX-512, or GOMLX_DT_PATCHES=off, or GOMLX_DT_DISABLE=gemm/fold")
	}
	backend := compute.MustNew()
	defer backend.Finalize()
	if dot.GemmFloat32 == nil {
		t.Fatal("dot.GemmFloat32 not set")
	}
	saved := dot.GemmFloat32
	defer func() { dot.GemmFloat32 = saved }()
	numFolded := 0
	dot.GemmFloat32 = func(backend *gobackend.Backend, lhs, rhs, output []float32, lhsColMajor, rhsTransposed bool,
		batchSize, lhsCrossSize, rhsCrossSize, contractingSize int) {
		numFolded++
		saved(backend, lhs, rhs, output, lhsColMajor, rhsTransposed, batchSize, lhsCrossSize, rhsCrossSize, contractingSize)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	eps := float64(math.Nextafter32(1, 2) - 1)
	for _, dims := range [][3]int{{1, 1, 1}, {7, 5, 3}, {64, 300, 70}, {130, 65, 129}, {40, 2000, 700}} {
		M, K, N := dims[0], dims[1], dims[2]
		for _, rhsTransposed := range []bool{false, true} {
			for _, alsoUseTranspose := range []bool{false, true} {
				t.Run(fmt.Sprintf("%dx%dx%d/rhsT=%v/reuse=%v", M, K, N, rhsTransposed, alsoUseTranspose), func(t *testing.T) {
					x := randMatrix(rng, K, M) // lhs = xᵀ [M, K]
					var rhs [][]float32
					rhsContracting := 0
					if rhsTransposed {
						rhs = randMatrix(rng, N, K)
						rhsContracting = 1
					} else {
						rhs = randMatrix(rng, K, N)
					}
					outputs, err := testutil.Exec(backend, []any{x, rhs}, func(f compute.Function, params []compute.Value) ([]compute.Value, error) {
						xt, err := f.Transpose(params[0], 1, 0)
						if err != nil {
							return nil, err
						}
						y, err := f.DotGeneral(xt, []int{1}, nil, params[1], []int{rhsContracting}, nil, compute.DotGeneralConfig{})
						if err != nil {
							return nil, err
						}
						if alsoUseTranspose {
							return []compute.Value{y, xt}, nil
						}
						return []compute.Value{y}, nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if numFolded == 0 {
						t.Fatal("the transposed lhs was not folded into the DotGeneral")
					}
					numFolded = 0
					got := outputs[0].([][]float32)
					for i := range M {
						for j := range N {
							var want, scale float64
							for k := range K {
								var b float32
								if rhsTransposed {
									b = rhs[j][k]
								} else {
									b = rhs[k][j]
								}
								p := float64(x[k][i]) * float64(b)
								want += p
								scale += math.Abs(p)
							}
							if d := math.Abs(float64(got[i][j]) - want); d > float64(K+2)*eps*scale+1e-30 {
								t.Fatalf("out[%d][%d]=%g, want %g", i, j, got[i][j], want)
							}
						}
					}
					if alsoUseTranspose {
						xt := outputs[1].([][]float32)
						for i := range M {
							for k := range K {
								if xt[i][k] != x[k][i] {
									t.Fatalf("transpose output wrong at %d,%d", i, k)
								}
							}
						}
					}
				})
			}
		}
	}
}

func TestDotOutputTransposeFusion(t *testing.T) {
	if !archsimd.X86.AVX512() || !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("gemm") || gobackend.DTPatchDisabled("fold") {
		t.Skip("no AVX-512, or GOMLX_DT_PATCHES=off, or GOMLX_DT_DISABLE=gemm/fold")
	}
	backend := compute.MustNew()
	defer backend.Finalize()
	rng := rand.New(rand.NewPCG(5, 6))
	eps := float64(math.Nextafter32(1, 2) - 1)
	for _, dims := range [][3]int{{1, 1, 1}, {7, 5, 3}, {64, 300, 70}, {130, 65, 129}, {40, 2000, 700}} {
		M, K, N := dims[0], dims[1], dims[2]
		for _, lhsTransposed := range []bool{false, true} {
			for _, rhsTransposed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%dx%dx%d/lhsT=%v/rhsT=%v", M, K, N, lhsTransposed, rhsTransposed), func(t *testing.T) {
					var lhs, rhs [][]float32
					if lhsTransposed {
						lhs = randMatrix(rng, K, M)
					} else {
						lhs = randMatrix(rng, M, K)
					}
					rhsContracting := 0
					if rhsTransposed {
						rhs = randMatrix(rng, N, K)
						rhsContracting = 1
					} else {
						rhs = randMatrix(rng, K, N)
					}
					builder := backend.Builder("test")
					f := builder.Main()
					must := func(v compute.Value, err error) compute.Value {
						t.Helper()
						if err != nil {
							t.Fatal(err)
						}
						return v
					}
					lp := must(f.Parameter("lhs", shapes.Make(dtypes.Float32, len(lhs), len(lhs[0])), nil))
					rp := must(f.Parameter("rhs", shapes.Make(dtypes.Float32, len(rhs), len(rhs[0])), nil))
					l := lp
					if lhsTransposed {
						l = must(f.Transpose(lp, 1, 0))
					}
					y := must(f.DotGeneral(l, []int{1}, nil, rp, []int{rhsContracting}, nil, compute.DotGeneralConfig{}))
					yt := must(f.Transpose(y, 1, 0))
					if err := f.Return([]compute.Value{yt}, nil); err != nil {
						t.Fatal(err)
					}
					exec, err := builder.Compile()
					if err != nil {
						t.Fatal(err)
					}
					out := builder.(*gobackend.Builder).MainFn.Outputs[0]
					if out.OpType != compute.OpTypeReshape || out.Inputs[0].OpType != compute.OpTypeDotGeneral ||
						!out.Inputs[0].Data.(*dot.NodeData).OutputTransposed {
						t.Fatalf("transposition not folded: output is %s", out.OpType)
					}
					lb, _ := testutil.ToBuffer(backend, lhs)
					rb, _ := testutil.ToBuffer(backend, rhs)
					outs, err := exec.Execute([]compute.Buffer{lb, rb}, nil, 0)
					if err != nil {
						t.Fatal(err)
					}
					gotAny, err := testutil.FromBuffer(backend, outs[0])
					if err != nil {
						t.Fatal(err)
					}
					got := gotAny.([][]float32) // [N, M]
					for i := range M {
						for j := range N {
							var want, scale float64
							for k := range K {
								var a, b float32
								if lhsTransposed {
									a = lhs[k][i]
								} else {
									a = lhs[i][k]
								}
								if rhsTransposed {
									b = rhs[j][k]
								} else {
									b = rhs[k][j]
								}
								p := float64(a) * float64(b)
								want += p
								scale += math.Abs(p)
							}
							if d := math.Abs(float64(got[j][i]) - want); d > float64(K+2)*eps*scale+1e-30 {
								t.Fatalf("out[%d][%d]=%g, want %g", j, i, got[j][i], want)
							}
						}
					}
				})
			}
		}
	}
}
