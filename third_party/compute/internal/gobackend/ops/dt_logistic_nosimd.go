// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

//go:build !(amd64 && goexperiment.simd)

package ops

// dtF32Logistic writes 1/(1+exp(-x)) (DreamTeacher-Go patch 17: the scalar path without SIMD).
func dtF32Logistic(dst, x []float32) { execLogisticFloat32(x[:len(dst)], dst) }
