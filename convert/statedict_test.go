package convert

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestLoadViewsAndDTypes reads tensors that are views of shared storages (with offsets and
// strides) and of every float dtype, from torch.save's zip and legacy formats, and compares
// them with the values PyTorch wrote to views.json.
func TestLoadViewsAndDTypes(t *testing.T) {
	data, err := os.ReadFile("testdata/views.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]struct {
		Shape  []int     `json:"shape"`
		Values []float64 `json:"values"`
	}
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"testdata/views.pt", "testdata/views_legacy.pt"} {
		t.Run(file, func(t *testing.T) {
			sd, err := Load(file, "")
			if err != nil {
				t.Fatal(err)
			}
			defer sd.Close()
			wantFormat := "torch-zip"
			if strings.Contains(file, "legacy") {
				wantFormat = "torch-legacy"
			}
			if sd.Format != wantFormat || sd.Nested != "" {
				t.Errorf("format %q nested %q, want %q at the top level", sd.Format, sd.Nested, wantFormat)
			}
			wantKeys := []string{"f32", "f64", "f16", "bf16", "i64", "rows", "cols", "transposed", "scalar"}
			if !slices.Equal(sd.Keys, wantKeys) {
				t.Errorf("keys %v, want %v", sd.Keys, wantKeys)
			}
			for key, w := range want {
				tensor := sd.Tensors[key]
				if tensor == nil {
					t.Errorf("%s: missing", key)
					continue
				}
				if !slices.Equal(tensor.Shape, w.Shape) && !(len(w.Shape) == 0 && len(tensor.Shape) == 0) {
					t.Errorf("%s: shape %v, want %v", key, tensor.Shape, w.Shape)
				}
				if key == "i64" {
					if tensor.DType != "I64" {
						t.Errorf("i64: dtype %s", tensor.DType)
					}
					if _, err := tensor.Float32(); err == nil || !strings.Contains(err.Error(), `"i64"`) {
						t.Errorf("i64: Float32 should fail naming the key, got %v", err)
					}
					continue
				}
				got, err := tensor.Float32()
				if err != nil {
					t.Errorf("%s: %v", key, err)
					continue
				}
				if len(got) != len(w.Values) {
					t.Errorf("%s: %d values, want %d", key, len(got), len(w.Values))
					continue
				}
				for i, v := range w.Values {
					if math.Abs(float64(got[i])-v) > 1e-6*math.Max(1, math.Abs(v)) {
						t.Errorf("%s: value %d is %g, want %g (all: %v)", key, i, got[i], v, got)
						break
					}
				}
			}
		})
	}
}
