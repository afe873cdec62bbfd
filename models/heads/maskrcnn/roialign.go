package maskrcnn

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// RoIAlign pools boxes [N, R, 4] (input pixels) from the feature map x [N, H, W, C] whose pixels
// are 1/spatialScale input pixels apart, into [N, R, out, out, C], as torchvision's roi_align
// with aligned=True (detectron2's ROIAlignV2): the box is shifted by half a pixel, each of the
// out x out bins averages a grid of bilinear samples, and samples beyond the map (by more than
// one pixel) count as zero. samplingRatio 0 is detectron2's adaptive grid ceil(roi/out) per
// RoI and axis, exactly (see roiAlignTable). The gradient flows to x, not to the boxes. As
// torchvision's kernel, the sampling geometry is computed in x's dtype: float64 for float64
// maps, float32 otherwise. testdata/roialign.json holds torchvision's outputs and gradients.
func RoIAlign(x, boxes *Node, out int, spatialScale float64, samplingRatio int) *Node {
	if x.Rank() != 4 || boxes.Rank() != 3 || boxes.Shape().Dim(0) != x.Shape().Dim(0) {
		exceptions.Panicf("maskrcnn.RoIAlign: want x [N,H,W,C] and boxes [N,R,4], got %s and %s", x.Shape(), boxes.Shape())
	}
	lvl := ZerosLike(ConvertDType(coord(boxes, 0), dtypes.Int32))
	return roiAlignLevels([]*Node{x}, []float64{spatialScale}, boxes, lvl, out, samplingRatio)
}

// MultiLevelRoIAlign is detectron2's ROIPooler over FPN levels (finest first, level k having
// stride 2^k, k = minLevel, minLevel+1, ...): every box is pooled from the level
// floor(canonicalLevel + log2(sqrt(area)/canonicalSize + 1e-8)), clamped to the available
// levels (assign_boxes_to_levels), with RoIAlign.
func MultiLevelRoIAlign(levels []*Node, minLevel int, boxes *Node, out int, samplingRatio int, canonicalSize float64, canonicalLevel int) *Node {
	scales := make([]float64, len(levels))
	for i := range levels {
		scales[i] = 1 / float64(int(1)<<(minLevel+i))
	}
	lvl := AssignLevels(boxes, minLevel, minLevel+len(levels)-1, canonicalSize, canonicalLevel)
	return roiAlignLevels(levels, scales, boxes, lvl, out, samplingRatio)
}

// AssignLevels returns, for boxes [N, R, 4], the index (level - minLevel) of the pyramid level
// each is pooled from. The floor of the log2 is computed by comparing the size ratio with
// powers of two, so boxes exactly at a boundary land where detectron2 puts them.
func AssignLevels(boxes *Node, minLevel, maxLevel int, canonicalSize float64, canonicalLevel int) *Node {
	g := boxes.Graph()
	b := ConvertDType(StopGradient(boxes), boxDType)
	ratio := AddScalar(DivScalar(Sqrt(boxArea(b)), canonicalSize), 1e-8)
	lvl := ZerosLike(ConvertDType(ratio, dtypes.Int32))
	for k := minLevel + 1; k <= maxLevel; k++ {
		p := 1.0
		for e := k - canonicalLevel; e > 0; e-- {
			p *= 2
		}
		for e := k - canonicalLevel; e < 0; e++ {
			p /= 2
		}
		lvl = Add(lvl, ConvertDType(GreaterOrEqual(ratio, Scalar(g, boxDType, p)), dtypes.Int32))
	}
	return lvl
}

// roiAlignLevels pools every box from the level lvl [N, R] (int32) names.
func roiAlignLevels(levels []*Node, scales []float64, boxes, lvl *Node, out, samplingRatio int) *Node {
	g := boxes.Graph()
	n, c := levels[0].Shape().Dim(0), levels[0].Shape().Dim(3)
	flat := make([]*Node, len(levels))
	bases, heights, widths := make([]int32, len(levels)), make([]int32, len(levels)), make([]int32, len(levels))
	base := 0
	for i, x := range levels {
		if x.Rank() != 4 || x.Shape().Dim(0) != n || x.Shape().Dim(3) != c || x.DType() != levels[0].DType() {
			exceptions.Panicf("maskrcnn: RoIAlign levels must share batch, channels and dtype: %s vs %s", x.Shape(), levels[0].Shape())
		}
		h, w := x.Shape().Dim(1), x.Shape().Dim(2)
		flat[i] = Reshape(x, n*h*w, c)
		bases[i], heights[i], widths[i] = int32(base), int32(h), int32(w)
		base += n * h * w
	}
	table := flat[0]
	if len(flat) > 1 {
		table = Concatenate(flat, 0)
	}
	pick := func(values []int32) *Node { return Gather(Const(g, values), ExpandAxes(lvl, 2)) }
	r := boxes.Shape().Dim(1)
	batch := Iota(g, shapes.Make(dtypes.Int32, n, r), 0)
	geom := roiGeometry{
		height: pick(heights),
		width:  pick(widths),
		scale:  Gather(ConvertDType(Const(g, scales), geometryDType(levels[0].DType())), ExpandAxes(lvl, 2)),
	}
	geom.base = Add(pick(bases), Mul(batch, Mul(geom.height, geom.width)))
	return roiAlignTable(table, geom, boxes, out, samplingRatio)
}

// roiGeometry locates each RoI's feature map inside a table of pixels: pixel (y, x) of the
// map of RoI [n, r] is row base + y*width + x. All fields are [N, R].
type roiGeometry struct {
	base, height, width *Node // int32
	scale               *Node // feature pixels per input pixel, in the geometry dtype
}

// geometryDType is the dtype RoIAlign computes sample positions and weights in for maps of
// dtype dt: dt for float64 (torchvision's kernel runs in the input's scalar type), float32
// otherwise (boxDType).
func geometryDType(dt dtypes.DType) dtypes.DType {
	if dt == dtypes.Float64 {
		return dt
	}
	return boxDType
}

// roiAlignTable is RoIAlign (aligned=True) over the pixels table [T, C] of any dtype (the
// result is float: the table's dtype, or float32 for integer tables).
//
// detectron2's adaptive sampling grid differs per RoI, so its size is data: a While loop runs
// over s < max over RoIs of gridH*gridW; at step s each RoI takes its sample (s / gridW,
// s % gridW) if s < its gridH*gridW, one Gather of the four bilinear corners of every bin. The
// loop has no automatic gradient; the gradient with respect to the table is attached by
// attachGradient and computed by the transposed loop (a ScatterSum per step), so the result is
// exact for any RoI size, in both directions.
func roiAlignTable(table *Node, geom roiGeometry, boxes *Node, out, samplingRatio int) *Node {
	g := table.Graph()
	n, r, c := boxes.Shape().Dim(0), boxes.Shape().Dim(1), table.Shape().Dim(1)
	dt := table.DType()
	if !dt.IsFloat() {
		dt = dtypes.Float32
	}
	s := newRoISampler(geom, boxes, out, samplingRatio)
	valueTable := StopGradient(table)

	outShape := shapes.Make(dt, n, r, out, out, c)
	forward := whileSamples(g, s.maxSamples, outShape, func(step, acc *Node) *Node {
		idx, w := s.sample(step, dt) // [N,R,out,out,4], [N,R,out,out,4]
		v := Gather(valueTable, ExpandAxes(idx, 5))
		v = ConvertDType(v, dt) // [N,R,out,out,4,C]
		return Add(acc, ReduceSum(Mul(v, ExpandAxes(w, 5)), 4))
	})
	forward = Div(forward, Reshape(ConvertDType(s.count, dt), n, r, 1, 1, 1))
	if !table.DType().IsFloat() {
		return forward
	}
	return attachGradient(forward, table, func(v *Node) *Node {
		vs := Div(v, Reshape(ConvertDType(s.count, dt), n, r, 1, 1, 1))
		return whileSamples(g, s.maxSamples, table.Shape(), func(step, acc *Node) *Node {
			idx, w := s.sample(step, dt)
			upd := Mul(ExpandAxes(vs, 4), ExpandAxes(w, 5)) // [N,R,out,out,4,C]
			return ScatterSum(acc, Reshape(idx, n*r*out*out*4, 1), Reshape(upd, n*r*out*out*4, c), false, false)
		})
	})
}

// whileSamples runs acc = body(step, acc) for step = 0 .. numSteps-1 (a scalar int32 node),
// from acc = zeros(shape).
//
// Closure bodies must not use GoMLX helpers built on Scalar (AddScalar, OnesLike, OneMinus,
// ...): GoMLX v0.28.2 caches scalar constants per graph, not per function, so a scalar first
// made inside a closure breaks every later use outside it ("uses a node from a different
// function scope"). Bodies make their constants with Const.
func whileSamples(g *Graph, numSteps *Node, shape shapes.Shape, body func(step, acc *Node) *Node) *Node {
	params := func(g *Graph) (*Node, *Node) {
		return Parameter(g, "step", shapes.Make(dtypes.Int32)), Parameter(g, "acc", shape)
	}
	cond := NewClosure(g, func(g *Graph) []*Node {
		step, _ := params(g)
		return []*Node{LessThan(step, numSteps)}
	})
	loop := NewClosure(g, func(g *Graph) []*Node {
		step, acc := params(g)
		return []*Node{Add(step, Const(g, int32(1))), body(step, acc)}
	})
	out := While(cond, loop, Const(g, int32(0)), Zeros(g, shape))[1]
	return out
}

// attachGradient returns value (computed without a gradient path) with the gradient with
// respect to `from` given by vjp(adjoint of value). GoMLX only exposes custom gradients for the
// identity, so the two are concatenated, the identity of the concatenation gets the custom
// gradient, and value is sliced back out of it.
func attachGradient(value, from *Node, vjp func(v *Node) *Node) *Node {
	m, k := value.Shape().Size(), from.Shape().Size()
	joined := Concatenate([]*Node{Reshape(StopGradient(value), m), Reshape(ConvertDType(from, value.DType()), k)}, 0)
	joined = IdentityWithCustomGradient(joined, func(_, v *Node) *Node {
		gv := Reshape(Slice(v, AxisRange(0, m)), value.Shape().Dimensions...)
		gFrom := ConvertDType(vjp(gv), value.DType())
		return Concatenate([]*Node{ZerosLike(Slice(v, AxisRange(0, m))), Reshape(gFrom, k)}, 0)
	})
	return Reshape(Slice(joined, AxisRange(0, m)), value.Shape().Dimensions...)
}

// roiSampler holds the per-RoI quantities of RoIAlign, computed once in the geometry dtype
// (geom.scale's) as torchvision.
type roiSampler struct {
	geom           roiGeometry
	dt             dtypes.DType // the geometry dtype
	out            int
	binStartH      *Node // [N, R, out]: start + p*bin, the first edge of every bin
	binStartW      *Node
	binH, binW     *Node // [N, R]
	gridHF, gridWF *Node // [N, R] grid sizes (>= 1)
	gridW1         *Node // [N, R] int32 grid width (>= 1)
	lastH, lastW   *Node // [N, R, 1] int32 last row and column
	sizeH, sizeW   *Node // [N, R, 1] map height and width
	rowBase        *Node // [N, R, 1] int32 table row of pixel (0, 0)
	widthI         *Node // [N, R, 1] int32
	samples        *Node // [N, R] int32 gridH*gridW
	count          *Node // [N, R] max(gridH*gridW, 1)
	maxSamples     *Node // scalar int32
}

func newRoISampler(geom roiGeometry, boxes *Node, out, samplingRatio int) *roiSampler {
	g := boxes.Graph()
	gdt := geom.scale.DType()
	b := ConvertDType(StopGradient(boxes), gdt)
	x1, y1, x2, y2 := splitBoxes(b)
	const offset = 0.5 // aligned=True
	s := &roiSampler{geom: geom, dt: gdt, out: out}
	startW, startH := AddScalar(Mul(x1, geom.scale), -offset), AddScalar(Mul(y1, geom.scale), -offset)
	endW, endH := AddScalar(Mul(x2, geom.scale), -offset), AddScalar(Mul(y2, geom.scale), -offset)
	roiW, roiH := Sub(endW, startW), Sub(endH, startH)
	s.binH, s.binW = DivScalar(roiH, float64(out)), DivScalar(roiW, float64(out))
	bins := Iota(g, shapes.Make(gdt, 1, 1, out), 2)
	s.binStartH = Add(ExpandAxes(startH, 2), Mul(bins, ExpandAxes(s.binH, 2)))
	s.binStartW = Add(ExpandAxes(startW, 2), Mul(bins, ExpandAxes(s.binW, 2)))
	zeroI, oneI := ScalarZero(g, dtypes.Int32), ScalarOne(g, dtypes.Int32)
	var gridH, gridW *Node
	if samplingRatio > 0 {
		gridH = BroadcastToShape(Const(g, int32(samplingRatio)), geom.base.Shape())
		gridW = gridH
	} else {
		// ceil(roi / out) in the geometry dtype, as the kernel; negative sizes give an empty grid.
		gridH = Max(ConvertDType(Ceil(DivScalar(roiH, float64(out))), dtypes.Int32), zeroI)
		gridW = Max(ConvertDType(Ceil(DivScalar(roiW, float64(out))), dtypes.Int32), zeroI)
	}
	s.gridW1 = Max(gridW, oneI)
	s.gridHF = ConvertDType(Max(gridH, oneI), gdt)
	s.gridWF = ConvertDType(s.gridW1, gdt)
	s.samples = Mul(gridH, gridW)
	s.count = ConvertDType(Max(s.samples, oneI), gdt)
	s.maxSamples = ReduceAllMax(s.samples)
	s.lastH, s.lastW = ExpandAxes(SubScalar(geom.height, 1), 2), ExpandAxes(SubScalar(geom.width, 1), 2)
	s.sizeH, s.sizeW = ExpandAxes(ConvertDType(geom.height, gdt), 2), ExpandAxes(ConvertDType(geom.width, gdt), 2)
	s.rowBase, s.widthI = ExpandAxes(geom.base, 2), ExpandAxes(geom.width, 2)
	return s
}

// sample returns, for loop step `step`, the table rows [N, R, out, out, 4] of the four
// bilinear corners of every bin's sample and their weights (zero for RoIs whose grid has fewer
// than step+1 samples and for samples out of the map). It runs inside loop bodies: no Scalar.
func (s *roiSampler) sample(step *Node, dt dtypes.DType) (idx, w *Node) {
	g := step.Graph()
	n, r := s.samples.Shape().Dim(0), s.samples.Shape().Dim(1)
	stepNR := BroadcastToShape(step, s.samples.Shape())
	active := ConvertDType(LessThan(stepNR, s.samples), s.dt)
	iy := Div(stepNR, s.gridW1)
	ix := Sub(stepNR, Mul(iy, s.gridW1))
	half := ConvertDType(Const(g, 0.5), s.dt)
	// y = start + p*bin + (i + .5)*bin/grid, in the kernel's order of operations.
	pos := func(binStart, bin, i, grid *Node) *Node {
		frac := Div(Mul(Add(ConvertDType(i, s.dt), half), bin), grid)
		return Add(binStart, ExpandAxes(frac, 2)) // [N, R, out]
	}
	yLo, yHi, wyLo, wyHi := bilinearAxis(pos(s.binStartH, s.binH, iy, s.gridHF), s.lastH, s.sizeH)
	xLo, xHi, wxLo, wxHi := bilinearAxis(pos(s.binStartW, s.binW, ix, s.gridWF), s.lastW, s.sizeW)

	row := func(y *Node) *Node { return ExpandAxes(Add(s.rowBase, Mul(y, s.widthI)), 3) } // [N, R, out, 1]
	col := func(x *Node) *Node { return ExpandAxes(x, 2) }                                // [N, R, 1, out]
	wy := func(v *Node) *Node { return ExpandAxes(v, 3) }
	wx := func(v *Node) *Node { return ExpandAxes(v, 2) }
	idx = Stack([]*Node{
		Add(row(yLo), col(xLo)), Add(row(yLo), col(xHi)), Add(row(yHi), col(xLo)), Add(row(yHi), col(xHi)),
	}, 4)
	w = Stack([]*Node{
		Mul(wy(wyLo), wx(wxLo)), Mul(wy(wyLo), wx(wxHi)), Mul(wy(wyHi), wx(wxLo)), Mul(wy(wyHi), wx(wxHi)),
	}, 4)
	w = Mul(w, Reshape(active, n, r, 1, 1, 1))
	return idx, ConvertDType(w, dt)
}

// bilinearAxis is torchvision's bilinear_interpolate along one axis: for coordinates c
// [N, R, out] on an axis whose last pixel is last and size is size ([N, R, 1]) it returns the
// low and high pixel (int32) and their weights, zero when c < -1 or c > size. It runs inside
// loop bodies: no Scalar.
func bilinearAxis(c, last, size *Node) (lo, hi, wLo, wHi *Node) {
	g := c.Graph()
	cnst := func(v float64) *Node { return ConvertDType(Const(g, v), c.DType()) }
	zero, one := cnst(0), cnst(1)
	inside := LogicalNot(LogicalOr(LessThan(c, cnst(-1)), GreaterThan(c, size)))
	c = Max(c, zero)
	lo = ConvertDType(c, dtypes.Int32) // c >= 0: truncation is floor
	edge := GreaterOrEqual(lo, last)
	lo = Where(edge, BroadcastToShape(last, lo.Shape()), lo)
	hi = Where(edge, lo, Add(lo, Const(g, int32(1))))
	c = Where(edge, ConvertDType(lo, c.DType()), c)
	l := Sub(c, ConvertDType(lo, c.DType()))
	insideF := Where(inside, BroadcastToShape(one, c.Shape()), BroadcastToShape(zero, c.Shape()))
	return lo, hi, Mul(Sub(one, l), insideF), Mul(l, insideF)
}
