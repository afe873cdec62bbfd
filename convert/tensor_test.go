package convert

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestHalfToFloat32(t *testing.T) {
	for _, tc := range []struct {
		bits uint16
		want float32
	}{
		{0x3c00, 1}, {0xc000, -2}, {0x3555, 0.333251953125}, {0x7bff, 65504},
		{0x0001, 5.960464477539063e-08}, {0x8400, -6.103515625e-05}, {0x0000, 0},
		{0x7c00, float32(math.Inf(1))}, {0xfc00, float32(math.Inf(-1))},
	} {
		if got := halfToFloat32(tc.bits); got != tc.want {
			t.Errorf("%#04x: %g, want %g", tc.bits, got, tc.want)
		}
	}
	if v := halfToFloat32(0x7e00); !math.IsNaN(float64(v)) {
		t.Errorf("0x7e00 is %g, want NaN", v)
	}
	if math.Signbit(float64(halfToFloat32(0x8000))) != true {
		t.Errorf("0x8000 should be -0")
	}
}

// le32 encodes 0..n-1 as float32 little-endian.
func le32(n int) []byte {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)
	}
	return float32Bytes(v)
}

func TestTorchTensorViews(t *testing.T) {
	st := &storage{dtype: "F32", count: 12, readRange: func(lo, hi int) ([]byte, error) { return le32(12)[4*lo : 4*hi], nil }}
	for _, tc := range []struct {
		name          string
		offset        int
		shape, stride []int
		want          []float32
		err           string
	}{
		{"whole", 0, []int{3, 4}, []int{4, 1}, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, ""},
		{"rows with offset", 4, []int{2, 4}, []int{4, 1}, []float32{4, 5, 6, 7, 8, 9, 10, 11}, ""},
		{"transposed", 0, []int{4, 3}, []int{1, 4}, []float32{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}, ""},
		{"column slice", 1, []int{3, 2}, []int{4, 1}, []float32{1, 2, 5, 6, 9, 10}, ""},
		{"broadcast (stride 0)", 2, []int{2, 3}, []int{0, 1}, []float32{2, 3, 4, 2, 3, 4}, ""},
		{"scalar", 7, []int{}, []int{}, []float32{7}, ""},
		{"past the end", 8, []int{2, 4}, []int{4, 1}, nil, "needs storage elements [8, 16), the storage has 12"},
		{"negative stride", 11, []int{3}, []int{-1}, nil, "negative stride"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tensor := &Tensor{Key: "w", DType: "F32", Shape: tc.shape, file: "x.pt",
				src: &torchTensor{storage: st, dtype: "F32", offset: tc.offset, shape: tc.shape, stride: tc.stride}}
			got, err := tensor.Float32()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), `x.pt: tensor "w"`) {
					t.Errorf("error %v, want one naming x.pt, \"w\" and %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestPermute(t *testing.T) {
	// torch conv weight [O=2, I=3, H=1, W=2] = 0..11 -> HWIO [1, 2, 3, 2]: HWIO[0][w][i][o] = o*6 + i*2 + w.
	data := make([]float32, 12)
	for i := range data {
		data[i] = float32(i)
	}
	got, shape := permute(data, []int{2, 3, 1, 2}, []int{2, 3, 1, 0})
	if want := []float32{0, 6, 2, 8, 4, 10, 1, 7, 3, 9, 5, 11}; !slices.Equal(got, want) || !slices.Equal(shape, []int{1, 2, 3, 2}) {
		t.Errorf("got %v %v", got, shape)
	}
	got, shape = permute(data[:6], []int{2, 3}, []int{1, 0})
	if want := []float32{0, 3, 1, 4, 2, 5}; !slices.Equal(got, want) || !slices.Equal(shape, []int{3, 2}) {
		t.Errorf("linear: got %v %v", got, shape)
	}
}
