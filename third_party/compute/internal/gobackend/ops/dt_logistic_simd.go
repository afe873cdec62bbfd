// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

//go:build amd64 && goexperiment.simd

// DreamTeacher-Go patch: the float32 sigmoid in 16 AVX-512 lanes (see PATCHES.md, patch 17).

package ops

import "simd/archsimd"

// dtF32Logistic writes 1/(1+exp(-x)): per lane e = exp(-|x|) by fastmath.Exp32's Cephes
// reduction and polynomial (FMA-fused, so it may differ from the scalar path in the last bit),
// then 1/(1+e) for x >= 0 and e/(1+e) otherwise, as execLogisticFloat32. NaN stays NaN, ±Inf
// give 1 and 0.
func dtF32Logistic(dst, x []float32) {
	n := len(dst)
	x = x[:n]
	i := 0
	if dtHasAVX512 {
		var (
			zero   = archsimd.BroadcastFloat32x16(0)
			one    = archsimd.BroadcastFloat32x16(1)
			half   = archsimd.BroadcastFloat32x16(0.5)
			minLog = archsimd.BroadcastFloat32x16(-88.02969187150841)
			log2E  = archsimd.BroadcastFloat32x16(1.44269504088896341)
			ln2Hi  = archsimd.BroadcastFloat32x16(0.693359375)
			ln2Lo  = archsimd.BroadcastFloat32x16(-2.12194440e-4)
			p7     = archsimd.BroadcastFloat32x16(1.9875691500e-4)
			p6     = archsimd.BroadcastFloat32x16(1.3981999507e-3)
			p5     = archsimd.BroadcastFloat32x16(8.3334519073e-3)
			p4     = archsimd.BroadcastFloat32x16(4.1665795894e-2)
			p3     = archsimd.BroadcastFloat32x16(1.6666665459e-1)
			p2     = archsimd.BroadcastFloat32x16(5.0000001201e-1)
			bias   = archsimd.BroadcastInt32x16(127)
		)
		for ; i+16 <= n; i += 16 {
			v := archsimd.LoadFloat32x16Slice(x[i:])
			a := v.Min(zero.Sub(v)).Max(minLog) // -|x|, where exp(-|x|) is in (0, 1].
			z := a.MulAdd(log2E, half).FloorScaled(0)
			g := a.Sub(z.Mul(ln2Hi)).Sub(z.Mul(ln2Lo))
			p := p7.MulAdd(g, p6).MulAdd(g, p5).MulAdd(g, p4).MulAdd(g, p3).MulAdd(g, p2)
			p = p.MulAdd(g.Mul(g), g).Add(one)
			scale := z.ConvertToInt32().Add(bias).ShiftAllLeft(23).AsFloat32x16() // 2^z (0 at z = -127).
			e := p.Mul(scale)
			r := one.Div(one.Add(e))
			out := r.Merge(e.Mul(r), v.GreaterEqual(zero))
			v.Merge(out, v.IsNaN()).StoreSlice(dst[i:])
		}
	}
	execLogisticFloat32(x[i:], dst[i:])
}
