package classify

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestAccuracyByHand(t *testing.T) {
	// 6 classes. Row 0: label 2 has the top score. Row 1: label 0 is 4th. Row 2: label 5 is
	// last (6th). Row 3: label 1 ties with class 0 for the top: the stable order puts class 0
	// first, so it is a top-5 hit but not top-1. Row 4 is padding.
	logits := []float32{
		0, 1, 9, 2, 3, 4,
		1, 5, 4, 3, 0, 0,
		6, 5, 4, 3, 2, 1,
		7, 7, 1, 1, 1, 1,
		0, 0, 0, 0, 0, 99,
	}
	labels := []int32{2, 0, 5, 1, 5}
	valid := []bool{true, true, true, true, false}
	a := NewAccuracy(6)
	if err := a.Process(logits[:12], labels[:2], valid[:2]); err != nil {
		t.Fatal(err)
	}
	if err := a.Process(logits[12:], labels[2:], valid[2:]); err != nil {
		t.Fatal(err)
	}
	r := a.Evaluate()
	if r.Count != 4 || r.Top1 != 0.25 || r.Top5 != 0.75 {
		t.Errorf("got %+v, want count 4, top1 .25, top5 .75", r)
	}
	if m := r.Metrics(); m["top1"] != 25 || m["top5"] != 75 {
		t.Errorf("metrics %v", m)
	}
	a.Reset()
	if r := a.Evaluate(); r.Count != 0 {
		t.Errorf("after Reset %+v", r)
	}
	if err := a.Process(logits[:6], []int32{6}, nil); err == nil {
		t.Error("label 6 of 6 classes: no error")
	}
}

func TestKNNTemperatureWeighting(t *testing.T) {
	// The test vector (1, 0). Class 0 has one neighbour at 0 degrees (cosine 1); class 1 has
	// two at +-60 degrees (cosine 1/2 each), so class 1 wins a plain majority. With T = 0.07
	// the weights are e^(1/.07) against 2 e^(.5/.07): class 0 wins. With T = 10:
	// e^.1 = 1.105 against 2 e^.05 = 2.103: class 1 wins.
	s := math.Sqrt(3) / 2
	train := Features{Dim: 2, Data: []float32{2, 0, 0.5, float32(s), 0.5, -float32(s), -1, 0}}
	trainLabels := []int32{0, 1, 1, 2}
	test := Features{Dim: 2, Data: []float32{3, 0}}
	tests := []struct {
		name string
		temp float64
		top1 float64
	}{
		{"T=0.07 follows the closest", 0.07, 1},
		{"T=10 follows the majority", 10, 0},
	}
	for _, tc := range tests {
		r, err := KNN(train, trainLabels, test, []int32{0}, KNNOptions{NumClasses: 3, K: 3, Temperature: tc.temp})
		if err != nil {
			t.Fatal(err)
		}
		if r.Top1 != tc.top1 {
			t.Errorf("%s: top1 %v, want %v", tc.name, r.Top1, tc.top1)
		}
	}
}

// blobs makes n points per class around well separated class centres in dim dimensions.
func blobs(rng *rand.Rand, numClasses, n, dim int, spread float64) (Features, []int32) {
	centres := make([][]float64, numClasses)
	for c := range centres {
		centres[c] = make([]float64, dim)
		centres[c][c%dim] = 4 // one axis per class
		centres[c][(c+1)%dim] = 1 + float64(c)
	}
	f := Features{Dim: dim}
	var labels []int32
	for i := range n * numClasses {
		c := i % numClasses
		for j := range dim {
			f.Data = append(f.Data, float32(centres[c][j]+spread*rng.NormFloat64()))
		}
		labels = append(labels, int32(c))
	}
	return f, labels
}

func TestKNNSeparableClusters(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	train, trainLabels := blobs(rng, 4, 30, 6, 0.2)
	test, testLabels := blobs(rng, 4, 10, 6, 0.2)
	r, err := KNN(train, trainLabels, test, testLabels, DefaultKNNOptions(4))
	if err != nil {
		t.Fatal(err)
	}
	if r.Top1 != 1 || r.Top5 != 1 || r.Count != 40 {
		t.Errorf("separable clusters: %+v, want top1 = top5 = 1 over 40", r)
	}
}

func TestKNNErrors(t *testing.T) {
	f := Features{Dim: 2, Data: []float32{1, 0, 0, 1}}
	if _, err := KNN(f, []int32{0}, f, []int32{0, 1}, DefaultKNNOptions(2)); err == nil {
		t.Error("1 label for 2 train vectors: no error")
	}
	if _, err := KNN(f, []int32{0, 1}, Features{Dim: 3, Data: []float32{1, 2, 3}}, []int32{0}, DefaultKNNOptions(2)); err == nil {
		t.Error("dimension mismatch: no error")
	}
}

func TestLinearProbeSeparable(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	train, trainLabels := blobs(rng, 3, 40, 5, 0.3)
	val, valLabels := blobs(rng, 3, 20, 5, 0.3)
	opts := DefaultLinearProbeOptions(3)
	tests := []struct {
		name  string
		batch int
	}{{"full batch", 0}, {"minibatch", 16}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts.BatchSize = tc.batch
			r, err := LinearProbe(train, trainLabels, val, valLabels, opts)
			if err != nil {
				t.Fatal(err)
			}
			if r.TrainAcc != 1 || r.ValAcc != 1 {
				t.Errorf("train %v val %v, want 1 and 1", r.TrainAcc, r.ValAcc)
			}
			if len(r.Loss) != opts.Epochs || r.Loss[len(r.Loss)-1] > 0.1 {
				t.Errorf("losses %v, want %d ending below 0.1", r.Loss, opts.Epochs)
			}
			again, _ := LinearProbe(train, trainLabels, val, valLabels, opts)
			if !slices.Equal(again.Model.W, r.Model.W) {
				t.Error("two runs with the same seed differ")
			}
		})
	}
}

func TestLinearProbeOneDimension(t *testing.T) {
	// Class 1 iff x > 0, points at +-1..+-5: a threshold at 0 separates them. The learned
	// model must put the boundary between -1 and 1.
	var f Features
	f.Dim = 1
	var labels []int32
	for _, v := range []float32{-5, -4, -3, -2, -1, 1, 2, 3, 4, 5} {
		f.Data = append(f.Data, v)
		labels = append(labels, int32(b2i(v > 0)))
	}
	opts := DefaultLinearProbeOptions(2)
	opts.Standardize = false
	r, err := LinearProbe(f, labels, Features{}, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := r.Model
	// Boundary where the two logits are equal.
	boundary := -(m.B[1] - m.B[0]) / (m.W[1] - m.W[0])
	if r.TrainAcc != 1 || math.Abs(boundary) > 0.5 {
		t.Errorf("train acc %v, boundary %v, want 1 and |boundary| < .5", r.TrainAcc, boundary)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLossGradientMatchesFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const n, d, c = 7, 4, 3
	x := make([]float64, n*d)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(rng.IntN(c))
	}
	idx := []int{0, 2, 3, 6}
	m := &LinearModel{Dim: d, NumClasses: c, W: make([]float64, d*c), B: make([]float64, c)}
	for i := range m.W {
		m.W[i] = rng.NormFloat64()
	}
	for i := range m.B {
		m.B[i] = rng.NormFloat64()
	}
	const wd = 0.1
	gW, gB := make([]float64, d*c), make([]float64, c)
	lossAndGrad(m, x, labels, idx, wd, gW, gB)
	const h = 1e-6
	check := func(name string, p *float64, g float64) {
		old := *p
		*p = old + h
		lp := lossAndGrad(m, x, labels, idx, wd, nil, nil)
		*p = old - h
		lm := lossAndGrad(m, x, labels, idx, wd, nil, nil)
		*p = old
		if fd := (lp - lm) / (2 * h); math.Abs(fd-g) > 1e-7 {
			t.Errorf("%s: gradient %v, finite difference %v", name, g, fd)
		}
	}
	for i := range m.W {
		check("W", &m.W[i], gW[i])
	}
	for i := range m.B {
		check("B", &m.B[i], gB[i])
	}
}

// TestNaNIsAMiss: a NaN score never counts as a hit: in the accuracy of logits, in the linear
// probe's prediction and in k-NN (a NaN feature vector).
func TestNaNIsAMiss(t *testing.T) {
	nan := float32(math.NaN())
	a := NewAccuracy(3)
	// Row 0: the label's score is NaN; row 1: another class's score is NaN; row 2: a real hit.
	if err := a.Process([]float32{nan, 0, 0, 1, nan, 0, 0, 0, 5}, []int32{0, 0, 2}, nil); err != nil {
		t.Fatal(err)
	}
	if r := a.Evaluate(); r.Top1 != 1.0/3 || r.Top5 != 1.0/3 {
		t.Errorf("NaN rows: top1 %v top5 %v, want 1/3 each (only the real hit)", r.Top1, r.Top5)
	}
	m := &LinearModel{Dim: 1, NumClasses: 2, W: []float64{1, -1}, B: []float64{0, 0}}
	if p := m.Predict([]float32{nan}); p != -1 {
		t.Errorf("linear probe on a NaN feature predicts class %d, want -1 (a miss)", p)
	}
	if acc := m.Accuracy(Features{Dim: 1, Data: []float32{nan}}, []int32{0}); acc != 0 {
		t.Errorf("linear probe accuracy on a NaN feature: %v, want 0", acc)
	}
	train := Features{Dim: 2, Data: []float32{1, 0, 0, 1}}
	test := Features{Dim: 2, Data: []float32{nan, nan}}
	r, err := KNN(train, []int32{0, 1}, test, []int32{0}, DefaultKNNOptions(2))
	if err != nil || r.Top1 != 0 {
		t.Errorf("k-NN of a NaN vector: %+v %v, want a miss", r, err)
	}
}
