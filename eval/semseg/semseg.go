// Package semseg computes semantic segmentation metrics exactly as mmsegmentation's
// IoUMetric: a confusion matrix accumulated over the whole evaluation set, from which per-class
// IoU = TP/(TP+FP+FN) and accuracy = TP/(TP+FN), their means over the classes where they are
// defined (mIoU, mAcc: NaN-means), and the overall pixel accuracy aAcc.
//
// Pixels whose label is the ignore index (255 by default) are skipped. A class that never
// occurs in the labels has no accuracy (NaN); a class that occurs in neither labels nor
// predictions has no IoU (NaN); NaNs are left out of the means, as numpy.nanmean does.
// Unlike mmseg, which silently drops them, labels and predictions outside [0, numClasses)
// (other than ignored labels) are errors: they always mean a mislabelled dataset or model.
//
// Counts are exact (int64) and Result's ratios float64 (result.json keeps them at full
// precision). The numbers printed and returned by Metrics, in percent to 2 decimals, are
// computed as mmseg computes them under numpy 1.x, so that they agree digit for digit,
// including at .xx5 boundaries where a float64 rounding of the exact ratio differs:
//   - per class: the ratio in float32 (mmseg divides float32 counts), times 100 and rounded
//     to 2 decimals in float32 arithmetic (np.round on a float32 array: multiply by 100,
//     round half to even, divide by 100), printed as str() of a float32;
//   - summary (mIoU, mAcc, aAcc): np.nanmean of the float32 ratios (numpy's pairwise float32
//     sum, divided by the count), then times 100 and rounded in float64 (under numpy 1.x a
//     float32 scalar times a Python int is a float64; numpy 2 would stay in float32).
//
// mmseg sums per-image float32 histograms, which are inexact past 2^24 pixels of one class;
// our counts stay exact, so for such datasets the last printed digit may still differ rarely.
package semseg

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// DefaultIgnoreIndex is the label of pixels left out of the metrics (mmseg's default).
const DefaultIgnoreIndex = 255

// Evaluator accumulates a confusion matrix over images: Reset, Process (or ProcessBatch)
// per image or batch, Evaluate.
type Evaluator struct {
	numClasses  int
	ignoreIndex int
	confusion   []int64 // [label][prediction], row-major
}

// New evaluates numClasses classes, skipping pixels labelled ignoreIndex.
func New(numClasses, ignoreIndex int) *Evaluator {
	if numClasses <= 0 {
		panic(fmt.Sprintf("semseg.New: %d classes", numClasses))
	}
	return &Evaluator{numClasses: numClasses, ignoreIndex: ignoreIndex,
		confusion: make([]int64, numClasses*numClasses)}
}

// NumClasses is the number of classes evaluated.
func (e *Evaluator) NumClasses() int { return e.numClasses }

// Reset clears the accumulated confusion matrix.
func (e *Evaluator) Reset() { clear(e.confusion) }

// Process adds one image's predicted and true labels (same layout, any size).
func (e *Evaluator) Process(pred, label []int32) error { return accumulate(e, pred, label) }

// ProcessUint8 is Process for 8-bit label maps (as read from PNG files).
func (e *Evaluator) ProcessUint8(pred, label []uint8) error { return accumulate(e, pred, label) }

// ProcessBatch adds a batch of images stored one after the other in pred and label; valid
// has one flag per image, false for the padding entries of a fixed-shape last batch.
func (e *Evaluator) ProcessBatch(pred, label []int32, valid []bool) error {
	if len(valid) == 0 || len(pred) != len(label) || len(pred)%len(valid) != 0 {
		return fmt.Errorf("semseg: batch of %d predicted and %d true pixels for %d images", len(pred), len(label), len(valid))
	}
	n := len(pred) / len(valid)
	for i, ok := range valid {
		if !ok {
			continue
		}
		if err := accumulate(e, pred[i*n:(i+1)*n], label[i*n:(i+1)*n]); err != nil {
			return fmt.Errorf("batch image %d: %w", i, err)
		}
	}
	return nil
}

func accumulate[T int32 | uint8](e *Evaluator, pred, label []T) error {
	if len(pred) != len(label) {
		return fmt.Errorf("semseg: %d predicted pixels for %d labelled pixels", len(pred), len(label))
	}
	n := e.numClasses
	ignore := e.ignoreIndex
	for i, l := range label {
		li := int(l)
		if li == ignore {
			continue
		}
		pi := int(pred[i])
		if li < 0 || li >= n {
			return fmt.Errorf("semseg: label %d at pixel %d is outside [0, %d) and not the ignore index %d", li, i, n, ignore)
		}
		if pi < 0 || pi >= n {
			return fmt.Errorf("semseg: prediction %d at pixel %d is outside [0, %d)", pi, i, n)
		}
		e.confusion[li*n+pi]++
	}
	return nil
}

// Confusion is a copy of the accumulated matrix, [true class][predicted class].
func (e *Evaluator) Confusion() [][]int64 {
	n := e.numClasses
	out := make([][]int64, n)
	for i := range out {
		out[i] = append([]int64(nil), e.confusion[i*n:(i+1)*n]...)
	}
	return out
}

// Merge adds another evaluator's counts (for evaluating shards in parallel).
func (e *Evaluator) Merge(o *Evaluator) {
	if o.numClasses != e.numClasses {
		panic(fmt.Sprintf("semseg.Merge: %d classes into %d", o.numClasses, e.numClasses))
	}
	for i, c := range o.confusion {
		e.confusion[i] += c
	}
}

// Result holds the metrics, as fractions in [0, 1].
type Result struct {
	IoU  []float64 // per class; NaN where the class is in neither labels nor predictions
	Acc  []float64 // per class; NaN where the class is not in the labels
	MIoU float64   // mean of the defined IoUs (NaN when none is)
	MAcc float64   // mean of the defined accuracies
	AAcc float64   // correctly predicted labelled pixels / labelled pixels

	Confusion [][]int64 // [true class][predicted class]
}

// Evaluate computes the metrics from the pixels processed so far.
func (e *Evaluator) Evaluate() Result {
	cm := e.Confusion()
	return FromConfusion(cm)
}

// FromConfusion computes the metrics of a confusion matrix [true class][predicted class].
func FromConfusion(cm [][]int64) Result {
	n := len(cm)
	r := Result{IoU: make([]float64, n), Acc: make([]float64, n), Confusion: cm}
	predCount := make([]int64, n)
	for _, row := range cm {
		for p, c := range row {
			predCount[p] += c
		}
	}
	var tpSum, labelSum int64
	for c, row := range cm {
		var labelCount int64
		for _, v := range row {
			labelCount += v
		}
		tp := row[c]
		tpSum += tp
		labelSum += labelCount
		r.IoU[c] = ratio(tp, labelCount+predCount[c]-tp)
		r.Acc[c] = ratio(tp, labelCount)
	}
	r.AAcc = ratio(tpSum, labelSum)
	r.MIoU = nanMean(r.IoU)
	r.MAcc = nanMean(r.Acc)
	return r
}

// ratio is a/b, NaN for 0/0.
func ratio(a, b int64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func nanMean(v []float64) float64 {
	sum, n := 0.0, 0
	for _, x := range v {
		if !math.IsNaN(x) {
			sum += x
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// Metrics are the summary numbers named as mmseg names them, in percent rounded to 2
// decimals exactly as mmseg computes them (see the package doc): "aAcc", "mIoU", "mAcc".
// Print these, not 100*MIoU with %.2f, to show the digits mmseg shows.
func (r Result) Metrics() map[string]float64 {
	return map[string]float64{
		"aAcc": summaryPercent([]float64{r.AAcc}),
		"mIoU": summaryPercent(r.IoU),
		"mAcc": summaryPercent(r.Acc),
	}
}

// classPercent is mmseg's per-class number: np.round(v * 100, 2) on a float32 array, every
// operation rounded to float32. (float32(v) of the float64 ratio is the float32 division of
// the counts: a quotient rounded to float64 and then to float32 is correctly rounded.)
func classPercent(v float64) float32 {
	x := float32(float32(v) * 100)
	y := float32(x * 100)
	return float32(float32(math.RoundToEven(float64(y))) / 100)
}

// summaryPercent is mmseg's summary number: np.round(np.nanmean(v) * 100, 2) where v is a
// float32 array and, under numpy 1.x, the float32 mean times 100 is a float64.
func summaryPercent(v []float64) float64 {
	x := float64(nanMean32(v)) * 100
	return math.RoundToEven(x*100) / 100
}

// nanMean32 is numpy's nanmean of the values as a float32 array: NaNs replaced by 0, a float32
// sum (numpy's pairwise summation), divided by the number of non-NaN values (the float32 sum
// divided by an integer count is computed in float64 and rounded back to float32).
func nanMean32(v []float64) float32 {
	vals := make([]float32, len(v))
	n := 0
	for i, x := range v {
		if !math.IsNaN(x) {
			vals[i] = float32(x)
			n++
		}
	}
	if n == 0 {
		return float32(math.NaN())
	}
	return float32(float64(pairwiseSum32(vals)) / float64(n))
}

// pairwiseSum32 is numpy's pairwise_sum for float32 (numpy/_core/src/umath/loops_utils.h.src):
// below 8 values a plain loop, up to 128 eight interleaved accumulators, beyond that the two
// halves (split at a multiple of 8) summed recursively. np.sum of a contiguous float32 array
// is 0 + pairwiseSum32 of all its values.
func pairwiseSum32(a []float32) float32 {
	n := len(a)
	switch {
	case n < 8:
		var res float32
		for _, x := range a {
			res = float32(res + x)
		}
		return res
	case n <= 128:
		var r [8]float32
		copy(r[:], a[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for j := range r {
				r[j] = float32(r[j] + a[i+j])
			}
		}
		res := float32(float32(float32(r[0]+r[1])+float32(r[2]+r[3])) + float32(float32(r[4]+r[5])+float32(r[6]+r[7])))
		for ; i < n; i++ {
			res = float32(res + a[i])
		}
		return res
	default:
		n2 := n / 2
		n2 -= n2 % 8
		return float32(pairwiseSum32(a[:n2]) + pairwiseSum32(a[n2:]))
	}
}

// Format prints the per-class table and the summary as mmseg logs them. classNames may be
// nil or shorter than the classes; missing names are the class indices.
func (r Result) Format(classNames []string) string {
	rows := make([][]string, len(r.IoU))
	for c := range r.IoU {
		name := strconv.Itoa(c)
		if c < len(classNames) {
			name = classNames[c]
		}
		rows[c] = []string{name, pyFloat32(classPercent(r.IoU[c])), pyFloat32(classPercent(r.Acc[c]))}
	}
	var sb strings.Builder
	sb.WriteString("per class results:\n")
	sb.WriteString(prettyTable([]string{"Class", "IoU", "Acc"}, rows))
	sb.WriteString("Summary:\n")
	m := r.Metrics()
	sb.WriteString(prettyTable([]string{"aAcc", "mIoU", "mAcc"},
		[][]string{{pyFloat(m["aAcc"]), pyFloat(m["mIoU"]), pyFloat(m["mAcc"])}}))
	return sb.String()
}

// pyFloat formats like Python's str(float): shortest round-trip digits, "100.0", "nan".
func pyFloat(v float64) string { return shortest(v, 64) }

// pyFloat32 formats like numpy's str(np.float32): the shortest digits that round-trip in
// float32.
func pyFloat32(v float32) string { return shortest(float64(v), 32) }

func shortest(v float64, bits int) string {
	if math.IsNaN(v) {
		return "nan"
	}
	s := strconv.FormatFloat(v, 'f', -1, bits)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// prettyTable draws a table as Python's PrettyTable does by default: centred cells, one
// space of padding, +---+ rules.
func prettyTable(header []string, rows [][]string) string {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len(cell))
		}
	}
	var sb strings.Builder
	rule := func() {
		for _, w := range widths {
			sb.WriteString("+" + strings.Repeat("-", w+2))
		}
		sb.WriteString("+\n")
	}
	line := func(cells []string) {
		for i, cell := range cells {
			pad := widths[i] - len(cell)
			left := pad / 2
			if pad%2 == 1 && len(cell)%2 == 0 {
				left++ // PrettyTable puts the odd space left of even-length text
			}
			sb.WriteString("| " + strings.Repeat(" ", left) + cell + strings.Repeat(" ", pad-left) + " ")
		}
		sb.WriteString("|\n")
	}
	rule()
	line(header)
	rule()
	for _, row := range rows {
		line(row)
	}
	rule()
	return sb.String()
}

// ReduceZeroLabel applies mmseg's reduce_zero_label to a label map in place (ADE20K):
// label 0 (other) becomes 255 (ignored), 255 stays, every other label decreases by 1.
func ReduceZeroLabel[T int32 | uint8](label []T) {
	for i, v := range label {
		switch v {
		case 0, 255:
			label[i] = 255
		default:
			label[i] = v - 1
		}
	}
}
