package nn

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// MaxPool2D takes the maximum over k x k windows of x [N, H, W, C] with the given stride and
// padding (padded positions never win), as torch.nn.MaxPool2d.
//
// It is the element-wise maximum of the k*k shifted views of x. Where several positions tie for
// the maximum, the gradient goes to the first in window order. GoMLX's MaxPool op has a gradient
// on the Go backend since compute v0.1.3 (SelectAndScatterMax; it passes the float64 gradient
// check and equals this one, ties included), but both its passes are generic index loops there:
// forward+backward of ResNet's stem pool (3x3/s2/p1 on [8,32,32,64] float32) took 130 ms,
// against 7 ms for the shifted views (2 cores, 2026-12-06).
func MaxPool2D(x *Node, k, stride, padding int) *Node {
	checkNHWC("MaxPool2D", x)
	cfg := ConvConfig{Stride: [2]int{stride, stride}, Padding: SymmetricPadding(padding)}.withDefaults()
	ho := ConvOutputSize(x.Shape().Dim(1), k, stride, 1, cfg.Padding[0])
	wo := ConvOutputSize(x.Shape().Dim(2), k, stride, 1, cfg.Padding[1])
	xp := x
	if padding > 0 {
		xp = padSpatialWith(x, cfg.Padding, math.Inf(-1))
	}
	taps := convTaps(xp, k, k, ho, wo, cfg)
	// Reduce right-to-left, keeping the earlier tap on ties, so that the gradient of a tied
	// window goes to exactly one position.
	y := taps[len(taps)-1]
	for i := len(taps) - 2; i >= 0; i-- {
		y = Where(GreaterOrEqual(taps[i], y), taps[i], y)
	}
	return y
}

// AvgPool2D averages over k x k windows with the given stride and zero padding. With
// countIncludePad the padded zeros count in the average (PyTorch's default).
func AvgPool2D(x *Node, k, stride, padding int, countIncludePad bool) *Node {
	checkNHWC("AvgPool2D", x)
	cfg := ConvConfig{Stride: [2]int{stride, stride}, Padding: SymmetricPadding(padding)}.withDefaults()
	ho := ConvOutputSize(x.Shape().Dim(1), k, stride, 1, cfg.Padding[0])
	wo := ConvOutputSize(x.Shape().Dim(2), k, stride, 1, cfg.Padding[1])
	taps := convTaps(PadSpatial(x, cfg.Padding), k, k, ho, wo, cfg)
	sum := taps[0]
	for _, t := range taps[1:] {
		sum = Add(sum, t)
	}
	if countIncludePad || padding == 0 {
		return DivScalar(sum, float64(k*k))
	}
	// Divide by the number of real (non-padded) pixels in each window.
	ones := Ones(x.Graph(), shapeOf(x.DType(), 1, x.Shape().Dim(1), x.Shape().Dim(2), 1))
	ctaps := convTaps(PadSpatial(ones, cfg.Padding), k, k, ho, wo, cfg)
	count := ctaps[0]
	for _, t := range ctaps[1:] {
		count = Add(count, t)
	}
	return Div(sum, count)
}

// GlobalAvgPool averages x [N, H, W, C] over its spatial axes: [N, C].
func GlobalAvgPool(x *Node) *Node {
	checkNHWC("GlobalAvgPool", x)
	return ReduceMean(x, 1, 2)
}

// AdaptiveAvgPool2D averages x [N, H, W, C] into an out x out grid with PyTorch's bins
// (bin i covers [floor(i*H/out), ceil((i+1)*H/out))), as in the pyramid pooling module.
func AdaptiveAvgPool2D(x *Node, out int) *Node {
	checkNHWC("AdaptiveAvgPool2D", x)
	h, w := x.Shape().Dim(1), x.Shape().Dim(2)
	if out == 1 {
		return ReduceAndKeep(x, ReduceMean, 1, 2)
	}
	rows := make([]*Node, out)
	for i := range out {
		h0, h1 := i*h/out, ((i+1)*h+out-1)/out
		cols := make([]*Node, out)
		for j := range out {
			w0, w1 := j*w/out, ((j+1)*w+out-1)/out
			cell := Slice(x, AxisRange(), AxisRange(h0, h1), AxisRange(w0, w1), AxisRange())
			cols[j] = ReduceAndKeep(cell, ReduceMean, 1, 2)
		}
		rows[i] = Concatenate(cols, 2)
	}
	return Concatenate(rows, 1)
}

// padSpatialWith pads the spatial axes of x with a constant value (see PadSpatial).
func padSpatialWith(x *Node, pad [2][2]int, value float64) *Node {
	if value == 0 {
		return PadSpatial(x, pad)
	}
	// Pad with zeros, then put `value` where the mask of padded positions is set.
	padded := PadSpatial(x, pad)
	mask := PadSpatial(Ones(x.Graph(), shapeOf(x.DType(), 1, x.Shape().Dim(1), x.Shape().Dim(2), 1)), pad)
	fill := BroadcastToShape(Scalar(x.Graph(), x.DType(), value), padded.Shape())
	return Where(GreaterThan(BroadcastToShape(mask, padded.Shape()), ScalarZero(x.Graph(), x.DType())), padded, fill)
}

func checkNHWC(op string, x *Node) {
	if x.Rank() != 4 {
		exceptions.Panicf("%s: want x [N,H,W,C], got %s", op, x.Shape())
	}
}
