// Package classify evaluates image classifiers and frozen features: top-1/top-5 accuracy of
// logits, k-nearest-neighbour classification of features (DINO's weighted k-NN: cosine
// similarity, k = 20, votes weighted by exp(similarity / 0.07)), and the linear probe
// (multinomial logistic regression trained on frozen features, deterministically).
package classify

import (
	"fmt"
	"math"
)

// Features is a row-major matrix of feature vectors, one row per sample.
type Features struct {
	Dim  int
	Data []float32
}

// Len is the number of vectors.
func (f Features) Len() int {
	if f.Dim == 0 {
		return 0
	}
	return len(f.Data) / f.Dim
}

// Row is vector i.
func (f Features) Row(i int) []float32 { return f.Data[i*f.Dim : (i+1)*f.Dim] }

func (f Features) check(what string, labels []int32, numClasses int) error {
	if f.Dim <= 0 || len(f.Data)%f.Dim != 0 {
		return fmt.Errorf("classify: %s features: %d values do not make rows of %d", what, len(f.Data), f.Dim)
	}
	if len(labels) != f.Len() {
		return fmt.Errorf("classify: %d %s labels for %d feature vectors", len(labels), what, f.Len())
	}
	for i, l := range labels {
		if l < 0 || int(l) >= numClasses {
			return fmt.Errorf("classify: %s label %d of sample %d is outside [0, %d)", what, l, i, numClasses)
		}
	}
	return nil
}

// Accuracy counts top-1 and top-5 hits of logits batch by batch: Reset, Process, Evaluate.
// A label is within the top k when fewer than k classes rank before it, ranking by
// descending score with ties broken by class index (a stable sort).
type Accuracy struct {
	numClasses        int
	top1, top5, count int64
}

// NewAccuracy counts hits over numClasses classes.
func NewAccuracy(numClasses int) *Accuracy { return &Accuracy{numClasses: numClasses} }

// Reset forgets the batches seen.
func (a *Accuracy) Reset() { a.top1, a.top5, a.count = 0, 0, 0 }

// Process adds a batch: logits row-major [batch][numClasses], one label per row, and valid
// flags (nil means all valid; false marks padding of a fixed-shape batch).
func (a *Accuracy) Process(logits []float32, labels []int32, valid []bool) error {
	c := a.numClasses
	if len(logits) != len(labels)*c {
		return fmt.Errorf("classify: %d logits for %d labels of %d classes", len(logits), len(labels), c)
	}
	if valid != nil && len(valid) != len(labels) {
		return fmt.Errorf("classify: %d valid flags for %d labels", len(valid), len(labels))
	}
	for i, l := range labels {
		if valid != nil && !valid[i] {
			continue
		}
		if l < 0 || int(l) >= c {
			return fmt.Errorf("classify: label %d of batch row %d is outside [0, %d)", l, i, c)
		}
		a.add(rankOf(logits[i*c:(i+1)*c], int(l)), 5)
	}
	return nil
}

// add counts one sample whose label has the given rank (0 = best), a top-5 hit when the
// rank is below top5.
func (a *Accuracy) add(rank, top5 int) {
	if rank < 1 {
		a.top1++
	}
	if rank < top5 {
		a.top5++
	}
	a.count++
}

// rankOf is the number of classes that a stable descending sort puts before class l. A row
// with a NaN score ranks the label last, a miss in every top-k: NaN compares false with
// everything, so without this a NaN label score would rank first and count as a hit.
func rankOf[T float32 | float64](scores []T, l int) int {
	for _, v := range scores {
		if v != v {
			return math.MaxInt
		}
	}
	s := scores[l]
	rank := 0
	for j, v := range scores {
		if v > s || (v == s && j < l) {
			rank++
		}
	}
	return rank
}

// AccuracyResult holds top-1 and top-5 accuracy as fractions over Count samples.
type AccuracyResult struct {
	Top1, Top5 float64
	Count      int64
}

// Evaluate is the accuracy over the samples processed so far (0 when none).
func (a *Accuracy) Evaluate() AccuracyResult {
	if a.count == 0 {
		return AccuracyResult{}
	}
	n := float64(a.count)
	return AccuracyResult{Top1: float64(a.top1) / n, Top5: float64(a.top5) / n, Count: a.count}
}

// Metrics names the numbers in percent: "top1", "top5".
func (r AccuracyResult) Metrics() map[string]float64 {
	return map[string]float64{"top1": 100 * r.Top1, "top5": 100 * r.Top5}
}
