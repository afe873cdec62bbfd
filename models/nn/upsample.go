package nn

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// UpsampleNearest repeats every pixel of x [N, H, W, C] factor x factor times. It is a reshape
// and a broadcast, whose gradient is correct for any batch size (GoMLX's Interpolate gradient is
// not, for batch > 1).
func UpsampleNearest(x *Node, factor int) *Node {
	checkNHWC("UpsampleNearest", x)
	n, h, w, c := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2), x.Shape().Dim(3)
	y := Reshape(x, n, h, 1, w, 1, c)
	y = BroadcastToDims(y, n, h, factor, w, factor, c)
	return Reshape(y, n, h*factor, w*factor, c)
}

// ResizeBilinear resizes x [N, H, W, C] to [N, outH, outW, C] with PyTorch's
// F.interpolate(mode="bilinear", align_corners=False) (half-pixel centres, no antialiasing).
//
// Bilinear interpolation along an axis is a linear map, so each axis is one matrix
// multiplication by a constant interpolation matrix: exact, and with a correct gradient.
func ResizeBilinear(x *Node, outH, outW int) *Node {
	checkNHWC("ResizeBilinear", x)
	h, w := x.Shape().Dim(1), x.Shape().Dim(2)
	g := x.Graph()
	y := x
	if outH != h {
		a := Const(g, interpolationMatrix(h, outH)) // [outH, h]
		a = ConvertDType(a, x.DType())
		y = Dot(a, y).General([]int{1}, nil, []int{1}, nil) // [outH, N, W, C]
		y = TransposeAllAxes(y, 1, 0, 2, 3)
	}
	if outW != w {
		a := ConvertDType(Const(g, interpolationMatrix(w, outW)), x.DType()) // [outW, w]
		y = Dot(a, y).General([]int{1}, nil, []int{2}, nil)                  // [outW, N, outH, C]
		y = TransposeAllAxes(y, 1, 2, 0, 3)
	}
	return y
}

// interpolationMatrix returns the [out, in] matrix of 1-D linear interpolation with half-pixel
// centres (align_corners=False), clamping the source coordinate at 0 as PyTorch does.
func interpolationMatrix(in, out int) *tensors.Tensor {
	m := make([]float64, out*in)
	scale := float64(in) / float64(out)
	for i := range out {
		src := math.Max((float64(i)+0.5)*scale-0.5, 0)
		i0 := min(int(math.Floor(src)), in-1)
		i1 := min(i0+1, in-1)
		l1 := src - float64(i0)
		m[i*in+i0] += 1 - l1
		m[i*in+i1] += l1
	}
	return tensors.FromFlatDataAndDimensions(m, out, in)
}

// UpConv is the learned up-sampling used in place of a transposed convolution: nearest 2x
// up-sampling followed by a 3x3 convolution (guided-diffusion's Upsample with use_conv). GoMLX
// has no gradient for convolutions with input dilation, which transposed convolutions need.
func UpConv(scope *model.Scope, x *Node, out int) *Node {
	return Conv(scope, UpsampleNearest(x, 2), out).Kernel(3).Padding(1).Done()
}
