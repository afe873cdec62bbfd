package classify

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// LinearProbeOptions configure LinearProbe. Start from DefaultLinearProbeOptions.
type LinearProbeOptions struct {
	NumClasses   int
	Epochs       int
	LearningRate float64 // peak; decays to 0 with a cosine over all steps
	Momentum     float64 // heavy-ball momentum of SGD
	WeightDecay  float64 // L2 penalty WeightDecay/2 * |W|^2 on the weights (not the biases)
	BatchSize    int     // 0: full batch
	Seed         uint64  // order of minibatches
	// Standardize scales every feature to zero mean and unit variance over the training set
	// (the statistics are kept in the model and applied to any input).
	Standardize bool
}

// DefaultLinearProbeOptions: 100 epochs of full-batch SGD with momentum 0.9, learning rate 0.5
// with cosine decay, weight decay 1e-4, standardised features.
func DefaultLinearProbeOptions(numClasses int) LinearProbeOptions {
	return LinearProbeOptions{NumClasses: numClasses, Epochs: 100, LearningRate: 0.5, Momentum: 0.9,
		WeightDecay: 1e-4, Standardize: true}
}

// LinearModel is a trained probe: logits = W^T standardise(x) + b.
type LinearModel struct {
	Dim, NumClasses int
	W               []float64 // [Dim][NumClasses]
	B               []float64 // [NumClasses]
	Mean, Scale     []float64 // standardisation, x' = (x - Mean) * Scale; nil when not used
}

// Logits writes the class scores of x into out (length NumClasses).
func (m *LinearModel) Logits(x []float32, out []float64) {
	copy(out, m.B)
	for j, v := range x {
		xv := float64(v)
		if m.Mean != nil {
			xv = (xv - m.Mean[j]) * m.Scale[j]
		}
		if xv == 0 {
			continue
		}
		w := m.W[j*m.NumClasses : (j+1)*m.NumClasses]
		for c := range out {
			out[c] += xv * w[c]
		}
	}
}

// Predict is the highest-scoring class of x (the lowest index among equals), or -1 (no class,
// a miss) when a score is NaN.
func (m *LinearModel) Predict(x []float32) int {
	out := make([]float64, m.NumClasses)
	m.Logits(x, out)
	best := 0
	for c, v := range out {
		if v != v {
			return -1
		}
		if v > out[best] {
			best = c
		}
	}
	return best
}

// Accuracy is the top-1 accuracy of the model on labelled features.
func (m *LinearModel) Accuracy(f Features, labels []int32) float64 {
	if f.Len() == 0 {
		return 0
	}
	hits := 0
	for i := range f.Len() {
		if m.Predict(f.Row(i)) == int(labels[i]) {
			hits++
		}
	}
	return float64(hits) / float64(f.Len())
}

// LinearProbeResult is a trained probe and its accuracies (fractions).
type LinearProbeResult struct {
	Model            *LinearModel
	TrainAcc, ValAcc float64
	Loss             []float64 // training loss (cross-entropy + L2) after each epoch
}

// LinearProbe trains multinomial logistic regression on frozen features with SGD
// (momentum, cosine-decayed learning rate, L2 penalty) and reports its accuracy on the
// training and validation sets. Training is deterministic: the same inputs and options
// give the same model. val may be empty.
func LinearProbe(train Features, trainLabels []int32, val Features, valLabels []int32, opts LinearProbeOptions) (LinearProbeResult, error) {
	if err := train.check("train", trainLabels, opts.NumClasses); err != nil {
		return LinearProbeResult{}, err
	}
	if len(val.Data) > 0 || len(valLabels) > 0 {
		if err := val.check("validation", valLabels, opts.NumClasses); err != nil {
			return LinearProbeResult{}, err
		}
		if val.Dim != train.Dim {
			return LinearProbeResult{}, fmt.Errorf("classify: train features have %d dimensions, validation %d", train.Dim, val.Dim)
		}
	}
	if opts.Epochs <= 0 || opts.LearningRate <= 0 {
		return LinearProbeResult{}, fmt.Errorf("classify: linear probe needs epochs > 0 and a learning rate > 0, have %d, %g", opts.Epochs, opts.LearningRate)
	}
	n, d, c := train.Len(), train.Dim, opts.NumClasses
	m := &LinearModel{Dim: d, NumClasses: c, W: make([]float64, d*c), B: make([]float64, c)}
	x := make([]float64, n*d) // standardised training features
	for i, v := range train.Data {
		x[i] = float64(v)
	}
	if opts.Standardize {
		m.Mean, m.Scale = standardize(x, n, d)
	}

	batch := opts.BatchSize
	if batch <= 0 || batch > n {
		batch = n
	}
	stepsPerEpoch := (n + batch - 1) / batch
	totalSteps := opts.Epochs * stepsPerEpoch
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x5eed))
	vW := make([]float64, d*c)
	vB := make([]float64, c)
	gW := make([]float64, d*c)
	gB := make([]float64, c)
	res := LinearProbeResult{Model: m}
	step := 0
	for range opts.Epochs {
		if batch < n {
			rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		for s := 0; s < n; s += batch {
			idx := order[s:min(s+batch, n)]
			lossAndGrad(m, x, trainLabels, idx, opts.WeightDecay, gW, gB)
			lr := opts.LearningRate * 0.5 * (1 + math.Cos(math.Pi*float64(step)/float64(totalSteps)))
			for i := range vW {
				vW[i] = opts.Momentum*vW[i] + gW[i]
				m.W[i] -= lr * vW[i]
			}
			for i := range vB {
				vB[i] = opts.Momentum*vB[i] + gB[i]
				m.B[i] -= lr * vB[i]
			}
			step++
		}
		res.Loss = append(res.Loss, lossAndGrad(m, x, trainLabels, order, opts.WeightDecay, nil, nil))
	}
	res.TrainAcc = m.Accuracy(train, trainLabels)
	if val.Len() > 0 {
		res.ValAcc = m.Accuracy(val, valLabels)
	}
	return res, nil
}

// standardize scales the columns of x [n][d] in place to zero mean and unit variance and
// returns the mean and 1/std used (constant columns get scale 1).
func standardize(x []float64, n, d int) (mean, scale []float64) {
	mean = make([]float64, d)
	scale = make([]float64, d)
	for i := range n {
		for j := range d {
			mean[j] += x[i*d+j]
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for i := range n {
		for j := range d {
			dv := x[i*d+j] - mean[j]
			scale[j] += dv * dv
		}
	}
	for j := range scale {
		std := math.Sqrt(scale[j] / float64(n))
		if std < 1e-12 {
			scale[j] = 1
		} else {
			scale[j] = 1 / std
		}
	}
	for i := range n {
		for j := range d {
			x[i*d+j] = (x[i*d+j] - mean[j]) * scale[j]
		}
	}
	return mean, scale
}

// lossAndGrad is the mean cross-entropy over the samples idx of x (already standardised)
// plus wd/2 |W|^2; when gW is not nil it also writes the gradients into gW and gB.
func lossAndGrad(m *LinearModel, x []float64, labels []int32, idx []int, wd float64, gW, gB []float64) float64 {
	d, c := m.Dim, m.NumClasses
	if gW != nil {
		clear(gW)
		clear(gB)
	}
	logits := make([]float64, c)
	var loss float64
	inv := 1 / float64(len(idx))
	for _, i := range idx {
		xi := x[i*d : (i+1)*d]
		copy(logits, m.B)
		for j, v := range xi {
			w := m.W[j*c : (j+1)*c]
			for k := range logits {
				logits[k] += v * w[k]
			}
		}
		// Softmax with the max subtracted.
		mx := logits[0]
		for _, v := range logits {
			mx = max(mx, v)
		}
		var z float64
		for k, v := range logits {
			logits[k] = math.Exp(v - mx)
			z += logits[k]
		}
		y := int(labels[i])
		loss -= math.Log(logits[y] / z)
		if gW == nil {
			continue
		}
		// d loss / d logits = softmax - onehot.
		for k := range logits {
			logits[k] /= z
		}
		logits[y]--
		for k, g := range logits {
			gB[k] += g * inv
		}
		for j, v := range xi {
			if v == 0 {
				continue
			}
			gw := gW[j*c : (j+1)*c]
			for k, g := range logits {
				gw[k] += v * g * inv
			}
		}
	}
	loss *= inv
	var l2 float64
	for i, w := range m.W {
		l2 += w * w
		if gW != nil {
			gW[i] += wd * w
		}
	}
	return loss + 0.5*wd*l2
}
