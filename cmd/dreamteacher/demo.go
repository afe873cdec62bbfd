package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/dreamteacher-go/dreamteacher/bench"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func init() {
	register("demo", "train the benchmark ResNet-18 on generated images (checkpoint, loss curve)", runDemo)
}

func runDemo(args []string) error {
	fs, backendFlag := flagSet("demo")
	out := fs.String("out", "out/demo", "output folder")
	steps := fs.Int64("steps", 60, "training steps")
	quick := fs.Bool("quick", false, "a few steps only (for tests)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *quick {
		*steps = 4
	}
	b, choice, err := newBackend(*backendFlag)
	if err != nil {
		return err
	}
	fmt.Printf("backend: %s (%s)\n", choice.Config, choice.Reason)
	const size, batch = 32, 16
	lossFn, _ := bench.Workloads["resnet18-cifar"](size, batch)
	store := model.NewStore()
	tr, err := train.NewTrainer(b, store, train.Config{
		Optimizer: train.OptimizerConfig{Name: "adamw", WeightDecay: 0.05},
		Schedule:  train.Schedule{BaseLR: 2e-3, WarmupSteps: int(*steps / 10), TotalSteps: int(*steps)},
		ClipNorm:  1,
	}, lossFn)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	next := func() ([]*tensors.Tensor, error) { return stripes(rng, batch, size), nil }
	t0 := time.Now()
	sum, err := train.Run(tr, store, next, train.LoopConfig{
		Steps: *steps, Dir: *out, LogEvery: max(*steps/10, 1), ImagesPerStep: batch,
		Title: "ResNet-18 on generated stripes",
	})
	if err != nil {
		return err
	}
	fmt.Printf("trained %d steps in %s: final loss %.4f\ncheckpoint: %s\nloss curve: %s\nmetrics:    %s\n",
		sum.Steps, time.Since(t0).Round(time.Second), sum.Last.Loss(), sum.Checkpoint, sum.Plot, filepath.Clean(sum.Metrics))
	return nil
}

// stripes draws a batch of 10-class images: sinusoidal stripes whose orientation is the class.
func stripes(rng *rand.Rand, batch, size int) []*tensors.Tensor {
	x := make([]float32, batch*size*size*3)
	y := make([]int32, batch)
	for n := range batch {
		c := rng.IntN(10)
		y[n] = int32(c)
		angle := float64(c) * math.Pi / 10
		freq := 0.5 + 0.3*rng.Float64()
		phase := rng.Float64() * 2 * math.Pi
		col := [3]float64{rng.Float64(), rng.Float64(), rng.Float64()}
		for i := range size {
			for j := range size {
				v := math.Sin(freq*(float64(i)*math.Cos(angle)+float64(j)*math.Sin(angle)) + phase)
				for k := range 3 {
					x[((n*size+i)*size+j)*3+k] = float32(v*col[k] + 0.1*rng.NormFloat64())
				}
			}
		}
	}
	return []*tensors.Tensor{tensors.FromFlatDataAndDimensions(x, batch, size, size, 3), tensors.FromFlatDataAndDimensions(y, batch)}
}
