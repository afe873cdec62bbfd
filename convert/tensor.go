package convert

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
)

// Tensor is one array of a foreign checkpoint, read lazily: its values are read from the file
// only by Float32 or Bytes.
type Tensor struct {
	// Key is the state-dict key as in the file (before any prefix is stripped).
	Key string
	// DType is the element type as safetensors names it: "F32", "F16", "BF16", "F64", "I64", ...
	DType string
	// Shape is PyTorch's shape (row-major).
	Shape []int

	file string
	src  tensorSource
}

// tensorSource yields a tensor's values, row-major over its shape, as raw little-endian bytes.
type tensorSource interface {
	bytes() ([]byte, error)
}

// Size is the number of elements.
func (t *Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Bytes returns the raw little-endian values, row-major over Shape. Errors name the file and key.
func (t *Tensor) Bytes() ([]byte, error) {
	b, err := t.src.bytes()
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", t.file, t.Key, err)
	}
	if want := t.Size() * elementSize(t.DType); len(b) != want {
		return nil, fmt.Errorf("%s: tensor %q: %d bytes for shape %v of %s, want %d", t.file, t.Key, len(b), t.Shape, t.DType, want)
	}
	return b, nil
}

// Float32 returns the values converted to float32 (from F32, F16, BF16 or F64), row-major over
// Shape. Other dtypes are an error naming the file and key.
func (t *Tensor) Float32() ([]float32, error) {
	if !safetensors.IsFloat(t.DType) {
		return nil, fmt.Errorf("%s: tensor %q has dtype %s, not a floating-point type", t.file, t.Key, t.DType)
	}
	b, err := t.Bytes()
	if err != nil {
		return nil, err
	}
	return toFloat32(t.DType, b), nil
}

// elementSize is the bytes per element of a safetensors dtype name (0 if unknown).
func elementSize(dtype string) int {
	switch dtype {
	case "F64", "I64", "U64", "C64":
		return 8
	case "F32", "I32", "U32":
		return 4
	case "F16", "BF16", "I16", "U16":
		return 2
	case "I8", "U8", "BOOL":
		return 1
	case "C128":
		return 16
	}
	return 0
}

// toFloat32 converts little-endian values of a floating-point dtype to float32.
func toFloat32(dtype string, b []byte) []float32 {
	size := elementSize(dtype)
	out := make([]float32, len(b)/size)
	switch dtype {
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case "F64":
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case "BF16":
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
	case "F16":
		for i := range out {
			out[i] = halfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	}
	return out
}

// halfToFloat32 converts an IEEE 754 binary16 value (subnormals, infinities and NaNs included).
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf, NaN
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: mant * 2^-24.
	v := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}

// gatherStrided copies the elements of a strided view out of data (a storage's elements from
// element base on), row-major over shape: element idx is at offset + sum(idx[i]*stride[i]) - base.
func gatherStrided(data []byte, elem, base, offset int, shape, stride []int) []byte {
	n := 1
	for _, d := range shape {
		n *= d
	}
	out := make([]byte, n*elem)
	if n == 0 {
		return out
	}
	idx := make([]int, len(shape))
	pos := offset - base
	for k := range n {
		copy(out[k*elem:(k+1)*elem], data[pos*elem:(pos+1)*elem])
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			pos += stride[i]
			if idx[i] < shape[i] {
				break
			}
			pos -= stride[i] * shape[i]
			idx[i] = 0
		}
	}
	return out
}

// viewSpan returns the range [lo, hi) of storage elements a view touches, and whether it is
// contiguous (row-major with no gaps), so that only that range needs reading.
func viewSpan(offset int, shape, stride []int) (lo, hi int, contiguous bool, err error) {
	if len(shape) != len(stride) {
		return 0, 0, false, fmt.Errorf("shape %v and stride %v differ in rank", shape, stride)
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, 0, false, fmt.Errorf("negative dimension in shape %v", shape)
		}
		n *= d
	}
	if n == 0 {
		return offset, offset, true, nil
	}
	lo, hi = offset, offset+1
	for i, d := range shape {
		if stride[i] < 0 {
			return 0, 0, false, fmt.Errorf("negative stride %v is not supported", stride)
		}
		hi += (d - 1) * stride[i]
	}
	contiguous = true
	expect := 1
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && stride[i] != expect {
			contiguous = false
		}
		expect *= shape[i]
	}
	return lo, hi, contiguous, nil
}

// permute rearranges data, row-major over shape, so that output axis i is input axis perm[i].
func permute(data []float32, shape, perm []int) ([]float32, []int) {
	outShape := make([]int, len(perm))
	for i, p := range perm {
		outShape[i] = shape[p]
	}
	if slices.Equal(perm, identity(len(perm))) {
		return data, outShape
	}
	strides := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = s
		s *= shape[i]
	}
	permStrides := make([]int, len(perm))
	for i, p := range perm {
		permStrides[i] = strides[p]
	}
	out := make([]float32, len(data))
	idx := make([]int, len(perm))
	pos := 0
	for k := range out {
		out[k] = data[pos]
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			pos += permStrides[i]
			if idx[i] < outShape[i] {
				break
			}
			pos -= permStrides[i] * outShape[i]
			idx[i] = 0
		}
	}
	return out, outShape
}

func identity(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return p
}

// squeezeEqual reports whether a and b are equal once their size-1 axes are dropped (a [C,1,1]
// layer scale against our [C]).
func squeezeEqual(a, b []int) bool {
	drop := func(s []int) []int {
		var out []int
		for _, d := range s {
			if d != 1 {
				out = append(out, d)
			}
		}
		return out
	}
	return slices.Equal(drop(a), drop(b))
}
