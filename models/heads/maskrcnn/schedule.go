package maskrcnn

import (
	"fmt"
	"math"
	"sort"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
)

// Schedule is a detectron2 training schedule: SGD with momentum, WarmupMultiStepLR (linear
// warm-up from WarmupFactor*BaseLR over WarmupIters, then BaseLR times Gamma^(number of Steps
// passed)), for MaxIter iterations at ImsPerBatch images per iteration.
type Schedule struct {
	MaxIter      int
	Steps        []int // iterations where the learning rate is multiplied by Gamma
	BaseLR       float64
	ImsPerBatch  int
	WarmupIters  int
	WarmupFactor float64
	Gamma        float64
	Momentum     float64
	WeightDecay  float64
}

// Schedules holds detectron2's COCO schedules for Mask R-CNN R50-FPN by name: "1x"
// (mask_rcnn_R_50_FPN_1x.yaml, 90k iterations), "3x" (mask_rcnn_R_50_FPN_3x.yaml, 270k) and
// "2x" (180k with steps at 2/3 and 8/9 of the run, the same proportions; detectron2 ships no 2x
// Mask R-CNN config, the paper's 2x row follows this convention).
var Schedules = map[string]Schedule{
	"1x": detectronSchedule(90_000, 60_000, 80_000),
	"2x": detectronSchedule(180_000, 120_000, 160_000),
	"3x": detectronSchedule(270_000, 210_000, 250_000),
}

func detectronSchedule(maxIter int, steps ...int) Schedule {
	return Schedule{
		MaxIter: maxIter, Steps: steps, BaseLR: 0.02, ImsPerBatch: 16,
		WarmupIters: 1000, WarmupFactor: 0.001, Gamma: 0.1, Momentum: 0.9, WeightDecay: 1e-4,
	}
}

// LR is the learning rate of the 0-based iteration, as detectron2's WarmupParamScheduler over
// MultiStepParamScheduler: the step multiplier changes at iteration == step.
func (s Schedule) LR(iter int) float64 {
	lr := s.BaseLR
	for range sort.SearchInts(s.Steps, iter+1) { // number of steps <= iter
		lr *= s.Gamma
	}
	if iter < s.WarmupIters {
		alpha := float64(iter) / float64(s.WarmupIters)
		lr *= s.WarmupFactor*(1-alpha) + alpha
	}
	return lr
}

// LRGraph is LR inside a graph, for a 0-based iteration scalar node (any integer dtype); it
// returns a float64 scalar.
func (s Schedule) LRGraph(iter *Node) *Node {
	g := iter.Graph()
	it := ConvertDType(iter, dtypes.Float64)
	mult := ScalarOne(g, dtypes.Float64)
	for _, st := range s.Steps {
		mult = Where(GreaterOrEqual(it, Scalar(g, dtypes.Float64, float64(st))), MulScalar(mult, s.Gamma), mult)
	}
	lr := MulScalar(mult, s.BaseLR)
	if s.WarmupIters > 0 {
		alpha := DivScalar(it, float64(s.WarmupIters))
		warm := AddScalar(MulScalar(alpha, 1-s.WarmupFactor), s.WarmupFactor)
		lr = Where(LessThan(it, Scalar(g, dtypes.Float64, float64(s.WarmupIters))), Mul(lr, warm), lr)
	}
	return lr
}

// Scaled returns the schedule for another total batch size by detectron2's linear scaling rule
// (DefaultTrainer.auto_scale_workers): the learning rate scales with the batch, iterations,
// steps and warm-up inversely.
func (s Schedule) Scaled(imsPerBatch int) (Schedule, error) {
	if imsPerBatch <= 0 {
		return Schedule{}, fmt.Errorf("maskrcnn: batch size must be > 0, got %d", imsPerBatch)
	}
	scale := float64(imsPerBatch) / float64(s.ImsPerBatch)
	out := s
	out.ImsPerBatch = imsPerBatch
	out.BaseLR = s.BaseLR * scale
	round := func(v int) int { return int(math.RoundToEven(float64(v) / scale)) } // Python's round
	out.MaxIter = round(s.MaxIter)
	out.WarmupIters = round(s.WarmupIters)
	out.Steps = make([]int, len(s.Steps))
	for i, st := range s.Steps {
		out.Steps[i] = round(st)
	}
	return out, nil
}
