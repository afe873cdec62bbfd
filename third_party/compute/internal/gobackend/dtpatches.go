// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

package gobackend

import (
	"os"
	"strings"
)

// DTPatchesEnabled (DreamTeacher-Go patch, see PATCHES.md) is false when GOMLX_DT_PATCHES=off: the
// performance patches (AVX-512 GEMM, folded transpositions, fast element-wise ops, fusions) are
// then not registered, and the backend runs as upstream v0.1.3 (for A/B comparisons).
var DTPatchesEnabled = os.Getenv("GOMLX_DT_PATCHES") != "off"

// DTPatchDisabled (DreamTeacher-Go patch) reports whether the named patch is disabled by
// GOMLX_DT_DISABLE (a comma-separated list: gemm, fold, slice, elementwise, convfusion, ewfusion,
// im2col, col2im), to measure the effect of each patch. Disabling one may disable those that
// build on it (e.g. im2col and col2im need gemm and convfusion).
func DTPatchDisabled(name string) bool {
	for _, d := range strings.Split(os.Getenv("GOMLX_DT_DISABLE"), ",") {
		if strings.TrimSpace(d) == name {
			return true
		}
	}
	return false
}
