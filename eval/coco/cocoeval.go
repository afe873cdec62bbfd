package coco

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
)

// IoUType says whether detections are compared by box or by mask.
type IoUType int

const (
	BBox IoUType = iota // boxes, pycocotools' "bbox"
	Segm                // masks, pycocotools' "segm"
)

func (t IoUType) String() string {
	switch t {
	case BBox:
		return "bbox"
	case Segm:
		return "segm"
	}
	return fmt.Sprintf("IoUType(%d)", int(t))
}

// Params are COCOeval's evaluation parameters (pycocotools' Params with useCats=1).
type Params struct {
	IoUType    IoUType
	ImgIDs     []int64      // images to evaluate, sorted and unique
	CatIDs     []int64      // categories to evaluate, sorted and unique
	IoUThrs    []float64    // .50:.05:.95
	RecThrs    []float64    // 0:.01:1
	MaxDets    []int        // 1, 10, 100, ascending
	AreaRng    [][2]float64 // all, small, medium, large
	AreaRngLbl []string
}

// DefaultParams are pycocotools' defaults for boxes and masks, with no images or categories.
func DefaultParams(t IoUType) Params {
	return Params{
		IoUType: t,
		IoUThrs: linspace(.5, .95, 10),
		RecThrs: linspace(0, 1, 101),
		MaxDets: []int{1, 10, 100},
		AreaRng: [][2]float64{
			{0, 1e5 * 1e5},
			{0, 32 * 32},
			{32 * 32, 96 * 96},
			{96 * 96, 1e5 * 1e5},
		},
		AreaRngLbl: []string{"all", "small", "medium", "large"},
	}
}

// linspace computes numpy.linspace(start, stop, num) bit for bit: i*step + start with
// step = (stop-start)/(num-1) in float64, the last value exactly stop. The thresholds must
// match numpy's to the last bit, since recall thresholds are compared with recalls.
func linspace(start, stop float64, num int) []float64 {
	out := make([]float64, num)
	step := (stop - start) / float64(num-1)
	for i := range out {
		out[i] = float64(float64(i)*step) + start // no FMA
	}
	out[num-1] = stop
	return out
}

// COCOeval evaluates one results dataset against ground truth, as pycocotools' COCOeval:
// Evaluate matches detections to ground truth per image and category, Accumulate builds
// the precision/recall tables, Summarize gives the 12 standard numbers.
type COCOeval struct {
	Params Params

	gt, dt *Dataset
	gts    map[imgCat][]*evalAnn
	dts    map[imgCat][]*evalAnn
	ious   map[imgCat][][]float64 // [detection][ground truth], detections by score

	evalImgs []*evalImg // [category][area range][image]; nil where there is nothing

	// Filled by Accumulate.
	precision []float64 // [T][R][K][A][M], -1 where there is no ground truth
	recall    []float64 // [T][K][A][M]
	scores    []float64 // [T][R][K][A][M]
	dims      [5]int    // T, R, K, A, M
}

type imgCat struct{ img, cat int64 }

// evalAnn is one annotation prepared for matching.
type evalAnn struct {
	id      int64
	area    float64
	crowd   bool
	score   float64
	bbox    [4]float64
	mask    rle.RLE
	ignore  bool // ground truth: crowd
	ignoreA bool // ground truth: ignored for the current area range
}

// evalImg is pycocotools' per image, category and area range result.
type evalImg struct {
	dtIDs     []int64
	dtMatches [][]int64 // [T][D]: matched ground-truth id, 0 when unmatched
	dtScores  []float64
	gtIgnore  []bool
	dtIgnore  [][]bool // [T][D]
}

// NewCOCOeval prepares evaluating dt (from LoadRes) against gt, over all of gt's images
// and categories with the default parameters.
func NewCOCOeval(gt, dt *Dataset, iouType IoUType) *COCOeval {
	p := DefaultParams(iouType)
	for _, img := range gt.Images {
		p.ImgIDs = append(p.ImgIDs, img.ID)
	}
	for _, c := range gt.Categories {
		p.CatIDs = append(p.CatIDs, c.ID)
	}
	return &COCOeval{Params: p, gt: gt, dt: dt}
}

// Evaluate runs the per-image evaluation (pycocotools' evaluate). Errors name the
// annotation whose box or mask is unusable, or an annotation id used twice (see the package doc).
func (e *COCOeval) Evaluate() error {
	p := &e.Params
	p.ImgIDs = sortedUnique(p.ImgIDs)
	p.CatIDs = sortedUnique(p.CatIDs)
	slices.Sort(p.MaxDets)
	for _, d := range []*Dataset{e.gt, e.dt} {
		if err := d.checkUniqueIDs(); err != nil {
			return err
		}
	}
	if err := e.prepare(); err != nil {
		return err
	}
	maxDet := p.MaxDets[len(p.MaxDets)-1]
	e.ious = make(map[imgCat][][]float64)
	for _, img := range p.ImgIDs {
		for _, cat := range p.CatIDs {
			k := imgCat{img, cat}
			if iou := e.computeIoU(k, maxDet); iou != nil {
				e.ious[k] = iou
			}
		}
	}
	nI, nA := len(p.ImgIDs), len(p.AreaRng)
	e.evalImgs = make([]*evalImg, len(p.CatIDs)*nA*nI)
	for k, cat := range p.CatIDs {
		for a, rng := range p.AreaRng {
			for i, img := range p.ImgIDs {
				e.evalImgs[(k*nA+a)*nI+i] = e.evaluateImg(imgCat{img, cat}, rng, maxDet)
			}
		}
	}
	e.precision = nil
	return nil
}

func sortedUnique(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// prepare groups the annotations of the evaluated images and categories by (image,
// category), in file order, and converts masks when comparing masks.
func (e *COCOeval) prepare() error {
	p := &e.Params
	imgs := make(map[int64]bool, len(p.ImgIDs))
	for _, id := range p.ImgIDs {
		imgs[id] = true
	}
	cats := make(map[int64]bool, len(p.CatIDs))
	for _, id := range p.CatIDs {
		cats[id] = true
	}
	group := func(d *Dataset, isGT bool) (map[imgCat][]*evalAnn, error) {
		out := make(map[imgCat][]*evalAnn)
		for i := range d.Annotations {
			a := &d.Annotations[i]
			if !imgs[a.ImageID] || !cats[a.CategoryID] {
				continue
			}
			ea, err := e.prepareAnn(d, a, isGT)
			if err != nil {
				return nil, err
			}
			k := imgCat{a.ImageID, a.CategoryID}
			out[k] = append(out[k], ea)
		}
		return out, nil
	}
	var err error
	if e.gts, err = group(e.gt, true); err != nil {
		return err
	}
	e.dts, err = group(e.dt, false)
	return err
}

func (e *COCOeval) prepareAnn(d *Dataset, a *Annotation, isGT bool) (*evalAnn, error) {
	what := "annotation"
	if !isGT {
		what = "detection"
	}
	ea := &evalAnn{id: a.ID, area: a.Area, crowd: a.IsCrowd != 0, score: a.Score}
	if isGT {
		ea.ignore = a.IsCrowd != 0
	}
	switch e.Params.IoUType {
	case BBox:
		if len(a.BBox) != 4 {
			return nil, fmt.Errorf("%s: %s id %d has bbox %v, want [x, y, width, height]", d.Source, what, a.ID, a.BBox)
		}
		ea.bbox = [4]float64(a.BBox)
	case Segm:
		if a.Segmentation == nil {
			return nil, fmt.Errorf("%s: %s id %d has no segmentation", d.Source, what, a.ID)
		}
		img, ok := e.gt.Image(a.ImageID)
		if !ok {
			return nil, fmt.Errorf("%s: %s id %d is on image %d, which %s lacks", d.Source, what, a.ID, a.ImageID, e.gt.Source)
		}
		m, err := a.Segmentation.ToRLE(img.Height, img.Width)
		if err != nil {
			return nil, fmt.Errorf("%s: %s id %d: %w", d.Source, what, a.ID, err)
		}
		ea.mask = m
	default:
		return nil, fmt.Errorf("coco: unknown IoU type %v", e.Params.IoUType)
	}
	return ea, nil
}

// sortByScore orders detections by descending score, ties in their given order (numpy's
// stable argsort of -score), and keeps at most maxDet.
func sortByScore(dts []*evalAnn, maxDet int) []*evalAnn {
	out := slices.Clone(dts)
	slices.SortStableFunc(out, func(a, b *evalAnn) int { return cmp.Compare(b.score, a.score) })
	if len(out) > maxDet {
		out = out[:maxDet]
	}
	return out
}

// computeIoU is the IoU of every detection (by score) with every ground truth of one
// image and category, or nil when either is absent.
func (e *COCOeval) computeIoU(k imgCat, maxDet int) [][]float64 {
	gt, dt := e.gts[k], sortByScore(e.dts[k], maxDet)
	if len(gt) == 0 || len(dt) == 0 {
		return nil
	}
	crowd := make([]bool, len(gt))
	for i, g := range gt {
		crowd[i] = g.crowd
	}
	if e.Params.IoUType == Segm {
		d := make([]rle.RLE, len(dt))
		for i, a := range dt {
			d[i] = a.mask
		}
		g := make([]rle.RLE, len(gt))
		for i, a := range gt {
			g[i] = a.mask
		}
		return rle.IoU(d, g, crowd)
	}
	d := make([][4]float64, len(dt))
	for i, a := range dt {
		d[i] = a.bbox
	}
	g := make([][4]float64, len(gt))
	for i, a := range gt {
		g[i] = a.bbox
	}
	return rle.BoxIoU(d, g, crowd)
}

// evaluateImg matches the detections of one image and category to its ground truth at
// every IoU threshold, for one area range (pycocotools' evaluateImg).
func (e *COCOeval) evaluateImg(k imgCat, aRng [2]float64, maxDet int) *evalImg {
	gt, dt := e.gts[k], e.dts[k]
	if len(gt) == 0 && len(dt) == 0 {
		return nil
	}
	for _, g := range gt {
		g.ignoreA = g.ignore || g.area < aRng[0] || g.area > aRng[1]
	}
	// Ground truth not ignored first (stable), detections by score.
	gtOrder := make([]int, len(gt))
	for i := range gtOrder {
		gtOrder[i] = i
	}
	slices.SortStableFunc(gtOrder, func(a, b int) int { return cmp.Compare(b2i(gt[a].ignoreA), b2i(gt[b].ignoreA)) })
	sortedGT := make([]*evalAnn, len(gt))
	for i, j := range gtOrder {
		sortedGT[i] = gt[j]
	}
	gt = sortedGT
	dt = sortByScore(dt, maxDet)
	ious := e.ious[k] // [d][original gt index]

	T, G, D := len(e.Params.IoUThrs), len(gt), len(dt)
	gtm := make([][]int64, T)
	r := &evalImg{
		dtIDs:     make([]int64, D),
		dtMatches: make([][]int64, T),
		dtScores:  make([]float64, D),
		gtIgnore:  make([]bool, G),
		dtIgnore:  make([][]bool, T),
	}
	for i, g := range gt {
		r.gtIgnore[i] = g.ignoreA
	}
	for i, d := range dt {
		r.dtIDs[i] = d.id
		r.dtScores[i] = d.score
	}
	for t, thr := range e.Params.IoUThrs {
		gtm[t] = make([]int64, G)
		r.dtMatches[t] = make([]int64, D)
		r.dtIgnore[t] = make([]bool, D)
		if ious == nil {
			continue
		}
		for di, d := range dt {
			best := math.Min(thr, 1-1e-10)
			m := -1
			for gi, g := range gt {
				// A matched ground truth is taken, unless it is a crowd.
				if gtm[t][gi] > 0 && !g.crowd {
					continue
				}
				// Matched to a regular ground truth and reaching ignored ones: stop.
				if m > -1 && !r.gtIgnore[m] && r.gtIgnore[gi] {
					break
				}
				iou := ious[di][gtOrder[gi]]
				if iou < best {
					continue
				}
				best = iou
				m = gi
			}
			if m == -1 {
				continue
			}
			r.dtIgnore[t][di] = r.gtIgnore[m]
			r.dtMatches[t][di] = gt[m].id
			gtm[t][m] = d.id
		}
	}
	// Unmatched detections outside the area range are ignored.
	for di, d := range dt {
		out := d.area < aRng[0] || d.area > aRng[1]
		for t := range T {
			if r.dtMatches[t][di] == 0 && out {
				r.dtIgnore[t][di] = true
			}
		}
	}
	return r
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Accumulate builds precision (interpolated, at each recall threshold) and recall for
// every IoU threshold, category, area range and detection limit (pycocotools' accumulate).
// It must follow Evaluate.
func (e *COCOeval) Accumulate() {
	p := e.Params
	T, R, K, A, M := len(p.IoUThrs), len(p.RecThrs), len(p.CatIDs), len(p.AreaRng), len(p.MaxDets)
	e.dims = [5]int{T, R, K, A, M}
	e.precision = filled(T*R*K*A*M, -1)
	e.recall = filled(T*K*A*M, -1)
	e.scores = filled(T*R*K*A*M, -1)
	nI := len(p.ImgIDs)
	for k := range K {
		for a := range A {
			var imgs []*evalImg
			for i := range nI {
				if ev := e.evalImgs[(k*A+a)*nI+i]; ev != nil {
					imgs = append(imgs, ev)
				}
			}
			if len(imgs) == 0 {
				continue
			}
			for m, maxDet := range p.MaxDets {
				e.accumulateOne(imgs, k, a, m, maxDet)
			}
		}
	}
}

func filled(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func (e *COCOeval) accumulateOne(imgs []*evalImg, k, a, m, maxDet int) {
	T := e.dims[0]
	type det struct {
		score float64
		img   *evalImg
		idx   int
	}
	var dets []det
	npig := 0
	for _, ev := range imgs {
		for i := range min(maxDet, len(ev.dtScores)) {
			dets = append(dets, det{ev.dtScores[i], ev, i})
		}
		for _, ig := range ev.gtIgnore {
			if !ig {
				npig++
			}
		}
	}
	if npig == 0 {
		return
	}
	slices.SortStableFunc(dets, func(x, y det) int { return cmp.Compare(y.score, x.score) })
	nd := len(dets)
	pr := make([]float64, nd)
	rc := make([]float64, nd)
	for t := range T {
		var tp, fp int
		for i, d := range dets {
			matched := d.img.dtMatches[t][d.idx] != 0
			if !d.img.dtIgnore[t][d.idx] {
				if matched {
					tp++
				} else {
					fp++
				}
			}
			rc[i] = float64(tp) / float64(npig)
			pr[i] = float64(tp) / (float64(fp+tp) + eps)
		}
		ri := e.recallIndex(t, k, a, m)
		if nd > 0 {
			e.recall[ri] = rc[nd-1]
		} else {
			e.recall[ri] = 0
		}
		// Precision envelope: the best precision at this or any higher recall.
		for i := nd - 1; i > 0; i-- {
			if pr[i] > pr[i-1] {
				pr[i-1] = pr[i]
			}
		}
		for r, thr := range e.Params.RecThrs {
			pi := e.precisionIndex(t, r, k, a, m)
			// First detection whose recall reaches the threshold (searchsorted, side left);
			// thresholds beyond the reached recall get precision 0.
			j, _ := slices.BinarySearch(rc, thr)
			if j < nd {
				e.precision[pi] = pr[j]
				e.scores[pi] = dets[j].score
			} else {
				e.precision[pi] = 0
				e.scores[pi] = 0
			}
		}
	}
}

// eps is numpy's np.spacing(1), which pycocotools adds to precision's denominator.
const eps = 2.220446049250313e-16

func (e *COCOeval) precisionIndex(t, r, k, a, m int) int {
	_, R, K, A, M := e.dims[0], e.dims[1], e.dims[2], e.dims[3], e.dims[4]
	return (((t*R+r)*K+k)*A+a)*M + m
}

func (e *COCOeval) recallIndex(t, k, a, m int) int {
	_, _, K, A, M := e.dims[0], e.dims[1], e.dims[2], e.dims[3], e.dims[4]
	return ((t*K+k)*A+a)*M + m
}

// Precision is the interpolated precision at IoU threshold t, recall threshold r, category k,
// area range a and detection limit m (indices into Params), -1 where there is no ground
// truth. Valid after Accumulate.
func (e *COCOeval) Precision(t, r, k, a, m int) float64 {
	return e.precision[e.precisionIndex(t, r, k, a, m)]
}

// Recall is the recall reached at IoU threshold t, category k, area range a and detection
// limit m, -1 where there is no ground truth. Valid after Accumulate.
func (e *COCOeval) Recall(t, k, a, m int) float64 {
	return e.recall[e.recallIndex(t, k, a, m)]
}

// Stats are the 12 numbers of pycocotools' summary, as fractions; -1 where no category has
// ground truth in the setting.
type Stats struct {
	AP, AP50, AP75, APSmall, APMedium, APLarge   float64
	AR1, AR10, AR100, ARSmall, ARMedium, ARLarge float64
}

// Values are the stats in pycocotools' order (its stats array).
func (s Stats) Values() [12]float64 {
	return [12]float64{s.AP, s.AP50, s.AP75, s.APSmall, s.APMedium, s.APLarge,
		s.AR1, s.AR10, s.AR100, s.ARSmall, s.ARMedium, s.ARLarge}
}

// Summary is the outcome of Summarize.
type Summary struct {
	Stats Stats
	lines [12]string
}

// Text is the summary as pycocotools prints it, 12 lines.
func (s Summary) Text() string {
	return strings.Join(s.lines[:], "\n") + "\n"
}

// Summarize computes the 12 standard numbers from the accumulated tables (pycocotools'
// summarize for boxes and masks, with the default parameters).
func (e *COCOeval) Summarize() Summary {
	if e.precision == nil {
		panic("coco: Summarize before Accumulate")
	}
	var s Summary
	md := e.Params.MaxDets
	if len(md) != 3 {
		panic(fmt.Sprintf("coco: Summarize needs the 3 default detection limits, have %v", md))
	}
	specs := []struct {
		ap      bool
		iouThr  float64 // 0 means all thresholds
		area    string
		maxDets int
	}{
		{true, 0, "all", md[2]},
		{true, .5, "all", md[2]},
		{true, .75, "all", md[2]},
		{true, 0, "small", md[2]},
		{true, 0, "medium", md[2]},
		{true, 0, "large", md[2]},
		{false, 0, "all", md[0]},
		{false, 0, "all", md[1]},
		{false, 0, "all", md[2]},
		{false, 0, "small", md[2]},
		{false, 0, "medium", md[2]},
		{false, 0, "large", md[2]},
	}
	var vals [12]float64
	for i, sp := range specs {
		vals[i], s.lines[i] = e.summarizeOne(sp.ap, sp.iouThr, sp.area, sp.maxDets)
	}
	s.Stats = Stats{vals[0], vals[1], vals[2], vals[3], vals[4], vals[5],
		vals[6], vals[7], vals[8], vals[9], vals[10], vals[11]}
	return s
}

func (e *COCOeval) summarizeOne(ap bool, iouThr float64, area string, maxDets int) (float64, string) {
	p := e.Params
	T, R, K := e.dims[0], e.dims[1], e.dims[2]
	ts := make([]int, 0, T)
	for t, thr := range p.IoUThrs {
		// pycocotools selects the threshold by exact float equality.
		if iouThr == 0 || thr == iouThr {
			ts = append(ts, t)
		}
	}
	a := slices.Index(p.AreaRngLbl, area)
	m := slices.Index(p.MaxDets, maxDets)
	var vals []float64
	if a >= 0 && m >= 0 {
		// numpy's boolean indexing flattens in C order: [T][R][K] for precision, [T][K]
		// for recall; the order matters for the pairwise sum.
		for _, t := range ts {
			if ap {
				for r := range R {
					for k := range K {
						vals = append(vals, e.Precision(t, r, k, a, m))
					}
				}
			} else {
				for k := range K {
					vals = append(vals, e.Recall(t, k, a, m))
				}
			}
		}
	}
	mean := meanAboveMinusOne(vals)

	title, kind := "Average Precision", "(AP)"
	if !ap {
		title, kind = "Average Recall", "(AR)"
	}
	iouStr := fmt.Sprintf("%0.2f:%0.2f", p.IoUThrs[0], p.IoUThrs[len(p.IoUThrs)-1])
	if iouThr != 0 {
		iouStr = fmt.Sprintf("%0.2f", iouThr)
	}
	line := fmt.Sprintf(" %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f", title, kind, iouStr, area, maxDets, mean)
	return mean, line
}

// meanAboveMinusOne is numpy's mean of s[s > -1] (pairwise summation), -1 when empty.
func meanAboveMinusOne(vals []float64) float64 {
	kept := make([]float64, 0, len(vals))
	for _, v := range vals {
		if v > -1 {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		return -1
	}
	return pairwiseSum(kept) / float64(len(kept))
}

// pairwiseSum adds as numpy's pairwise_sum does for float64, so that means agree with
// numpy to the last bit: blocks of up to 128 values summed with 8 running partial sums,
// larger arrays split in halves (at a multiple of 8).
func pairwiseSum(a []float64) float64 {
	n := len(a)
	switch {
	case n < 8:
		s := 0.0 // numpy starts from -0.0; the sign only shows for an all -0.0 input
		for _, v := range a {
			s += v
		}
		return s
	case n <= 128:
		var r [8]float64
		copy(r[:], a[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for j := range 8 {
				r[j] += a[i+j]
			}
		}
		s := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
		for ; i < n; i++ {
			s += a[i]
		}
		return s
	default:
		n2 := n / 2
		n2 -= n2 % 8
		return pairwiseSum(a[:n2]) + pairwiseSum(a[n2:])
	}
}

// PerCategoryAP is the AP@[.50:.95] of each category over all areas at the largest detection
// limit, NaN for a category without ground truth (detectron2's per-category table).
// Valid after Accumulate.
func (e *COCOeval) PerCategoryAP() map[int64]float64 {
	T, R := e.dims[0], e.dims[1]
	M := e.dims[4]
	out := make(map[int64]float64, len(e.Params.CatIDs))
	for k, cat := range e.Params.CatIDs {
		var vals []float64
		for t := range T {
			for r := range R {
				vals = append(vals, e.Precision(t, r, k, 0, M-1))
			}
		}
		v := meanAboveMinusOne(vals)
		if v == -1 {
			v = math.NaN()
		}
		out[cat] = v
	}
	return out
}
