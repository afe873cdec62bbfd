package coco

import (
	"fmt"
	"math"
	"strings"
)

// Evaluator collects detections batch by batch and computes COCO AP for each IoU type at
// the end, as detectron2's COCOEvaluator: Reset, Process per batch, Evaluate.
type Evaluator struct {
	gt      *Dataset
	types   []IoUType
	results []Result
}

// NewEvaluator evaluates against gt for the given IoU types (both when none are given).
func NewEvaluator(gt *Dataset, types ...IoUType) *Evaluator {
	if len(types) == 0 {
		types = []IoUType{BBox, Segm}
	}
	return &Evaluator{gt: gt, types: types}
}

// Reset forgets the detections processed so far.
func (ev *Evaluator) Reset() { ev.results = ev.results[:0] }

// Process adds the detections of one batch.
func (ev *Evaluator) Process(results ...Result) { ev.results = append(ev.results, results...) }

// Results are the detections processed so far, in order (for writing a results json).
func (ev *Evaluator) Results() []Result { return ev.results }

// Report is the evaluation for one IoU type.
type Report struct {
	IoUType       IoUType
	Summary       Summary
	PerCategoryAP map[int64]float64 // AP@[.50:.95], NaN for categories without ground truth
}

// Evaluate runs COCOeval for each IoU type. For "segm" the boxes of the detections are
// dropped first, as detectron2 does, so that areas come from the masks.
func (ev *Evaluator) Evaluate() ([]Report, error) {
	var out []Report
	for _, t := range ev.types {
		results := ev.results
		if t == Segm {
			results = make([]Result, len(ev.results))
			for i, r := range ev.results {
				if r.Segmentation == nil {
					return nil, fmt.Errorf("coco: detection %d (image %d) has no mask for segm evaluation", i, r.ImageID)
				}
				r.BBox = nil
				results[i] = r
			}
		}
		dt, err := LoadRes(ev.gt, results)
		if err != nil {
			return nil, err
		}
		e := NewCOCOeval(ev.gt, dt, t)
		if err := e.Evaluate(); err != nil {
			return nil, err
		}
		e.Accumulate()
		out = append(out, Report{IoUType: t, Summary: e.Summarize(), PerCategoryAP: e.PerCategoryAP()})
	}
	return out, nil
}

// Metrics are the report's numbers named as detectron2 names them, in percent: "AP",
// "AP50", "AP75", "APs", "APm", "APl", and "AP-<category name>" for each category; NaN
// where undefined.
func (r Report) Metrics(categories []Category) map[string]float64 {
	s := r.Summary.Stats
	pct := func(v float64) float64 {
		if v < 0 {
			return math.NaN()
		}
		return 100 * v
	}
	m := map[string]float64{
		"AP": pct(s.AP), "AP50": pct(s.AP50), "AP75": pct(s.AP75),
		"APs": pct(s.APSmall), "APm": pct(s.APMedium), "APl": pct(s.APLarge),
	}
	for _, c := range categories {
		if v, ok := r.PerCategoryAP[c.ID]; ok {
			m["AP-"+c.Name] = 100 * v
		}
	}
	return m
}

// Format is the report as text: pycocotools' 12 lines under a title naming the IoU type.
func (r Report) Format() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Evaluate annotation type *%s*\n", r.IoUType)
	sb.WriteString(r.Summary.Text())
	return sb.String()
}
