package classify

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// KNNOptions configure KNN; DefaultKNNOptions are DINO's.
type KNNOptions struct {
	NumClasses  int
	K           int     // neighbours that vote
	Temperature float64 // votes weigh exp(similarity / Temperature)
}

// DefaultKNNOptions are DINO's k-NN settings: k = 20, T = 0.07.
func DefaultKNNOptions(numClasses int) KNNOptions {
	return KNNOptions{NumClasses: numClasses, K: 20, Temperature: 0.07}
}

// KNN classifies every test vector by its K most similar training vectors, as DINO's
// knn_classifier: features are L2-normalised, similarity is their dot product (the cosine),
// each neighbour votes for its class with weight exp(similarity / T), and classes are ranked
// by total vote (ties by class index). Neighbours of equal similarity are taken in training
// order. Returns top-1 and top-5 accuracy over the test set.
func KNN(train Features, trainLabels []int32, test Features, testLabels []int32, opts KNNOptions) (AccuracyResult, error) {
	if err := train.check("train", trainLabels, opts.NumClasses); err != nil {
		return AccuracyResult{}, err
	}
	if err := test.check("test", testLabels, opts.NumClasses); err != nil {
		return AccuracyResult{}, err
	}
	if train.Dim != test.Dim {
		return AccuracyResult{}, fmt.Errorf("classify: train features have %d dimensions, test %d", train.Dim, test.Dim)
	}
	if opts.K <= 0 || opts.Temperature <= 0 {
		return AccuracyResult{}, fmt.Errorf("classify: k-NN needs k > 0 and T > 0, have k=%d T=%g", opts.K, opts.Temperature)
	}
	trainN := normalizeRows(train)
	testN := normalizeRows(test)
	k := min(opts.K, trainN.Len())

	nTest := testN.Len()
	votes := make([]float64, nTest*opts.NumClasses)
	workers := min(runtime.GOMAXPROCS(0), max(nTest, 1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			nb := make([]neighbour, 0, k+1)
			for i := w; i < nTest; i += workers {
				nb = nearest(trainN, testN.Row(i), k, nb[:0])
				row := votes[i*opts.NumClasses : (i+1)*opts.NumClasses]
				for _, n := range nb {
					row[trainLabels[n.index]] += math.Exp(float64(n.sim) / opts.Temperature)
				}
			}
		}(w)
	}
	wg.Wait()
	var a Accuracy
	for i, l := range testLabels {
		// DINO counts top-5 hits among the first min(5, k) classes.
		a.add(rankOf(votes[i*opts.NumClasses:(i+1)*opts.NumClasses], int(l)), min(5, k))
	}
	return a.Evaluate(), nil
}

type neighbour struct {
	sim   float32
	index int
}

// nearest keeps the k most similar rows of train to q, most similar first, earlier rows
// first among equals.
func nearest(train Features, q []float32, k int, nb []neighbour) []neighbour {
	for j := range train.Len() {
		s := dot(train.Row(j), q)
		if len(nb) == k && s <= nb[k-1].sim {
			continue
		}
		// Insert after every neighbour at least as similar.
		pos := len(nb)
		for pos > 0 && nb[pos-1].sim < s {
			pos--
		}
		if len(nb) < k {
			nb = append(nb, neighbour{})
		}
		copy(nb[pos+1:], nb[pos:len(nb)-1])
		nb[pos] = neighbour{s, j}
	}
	return nb
}

func dot(a, b []float32) float32 {
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// normalizeRows returns a copy with every row scaled to unit L2 norm (zero rows stay zero,
// as torch's normalize with its epsilon leaves them).
func normalizeRows(f Features) Features {
	out := Features{Dim: f.Dim, Data: make([]float32, len(f.Data))}
	for i := range f.Len() {
		row := f.Row(i)
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		norm := max(math.Sqrt(ss), 1e-12)
		dst := out.Row(i)
		for j, v := range row {
			dst[j] = float32(float64(v) / norm)
		}
	}
	return out
}
