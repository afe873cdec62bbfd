package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
)

// Schedule is a learning-rate schedule over optimiser steps: linear warm-up, then constant,
// cosine or polynomial decay to MinLR at TotalSteps, or a multi-step decay (detectron2's
// WarmupMultiStepLR). It is evaluated inside the training graph (Graph) and on the host (At),
// with the same numbers.
type Schedule struct {
	Kind        string  // "cosine" (default), "poly", "constant" or "multistep"
	BaseLR      float64 // peak learning rate, reached at the end of warm-up
	MinLR       float64 // final learning rate (cosine, poly)
	WarmupSteps int     // linear warm-up to BaseLR at WarmupSteps
	// WarmupFactor > 0 starts the warm-up at WarmupFactor*BaseLR at step 0 (detectron2's linear
	// warm-up: factor*(1-a)+a with a = step/WarmupSteps); 0 starts at BaseLR/WarmupSteps and
	// reaches BaseLR at the last warm-up step ((step+1)/WarmupSteps).
	WarmupFactor float64
	TotalSteps   int     // steps of the whole run (cosine and poly)
	Power        float64 // poly exponent (mmseg's PolyLR: 0.9)
	Milestones   []int   // multistep: the rate is multiplied by Gamma at each of these steps
	Gamma        float64 // multistep decay (default 0.1)
}

// Validate checks the schedule and names the bad field.
func (s Schedule) Validate() error {
	switch strings.ToLower(s.Kind) {
	case "", "cosine", "poly", "constant", "multistep":
	default:
		return fmt.Errorf("schedule: unknown kind %q (known: cosine, poly, constant, multistep)", s.Kind)
	}
	if s.BaseLR <= 0 {
		return fmt.Errorf("schedule: lr must be > 0, got %g", s.BaseLR)
	}
	if s.WarmupSteps < 0 || (s.Kind != "constant" && s.Kind != "multistep" && s.TotalSteps <= s.WarmupSteps && s.TotalSteps > 0) {
		return fmt.Errorf("schedule: warmup steps %d must be >= 0 and below total steps %d", s.WarmupSteps, s.TotalSteps)
	}
	return nil
}

func (s Schedule) gamma() float64 {
	if s.Gamma == 0 {
		return 0.1
	}
	return s.Gamma
}

// At returns the learning rate of the 0-based step.
func (s Schedule) At(step int) float64 {
	if strings.ToLower(s.Kind) == "multistep" {
		lr := s.BaseLR
		for _, m := range s.Milestones {
			if step >= m {
				lr *= s.gamma()
			}
		}
		if step < s.WarmupSteps {
			lr *= s.warmupFactorAt(step)
		}
		return lr
	}
	if step < s.WarmupSteps {
		return s.BaseLR * s.warmupFactorAt(step)
	}
	p := s.progress(float64(step))
	switch strings.ToLower(s.Kind) {
	case "constant":
		return s.BaseLR
	case "poly":
		return (s.BaseLR-s.MinLR)*math.Pow(1-p, s.power()) + s.MinLR
	default:
		return s.MinLR + (s.BaseLR-s.MinLR)*0.5*(1+math.Cos(math.Pi*p))
	}
}

// warmupFactorAt is the warm-up multiplier of a step inside the warm-up.
func (s Schedule) warmupFactorAt(step int) float64 {
	if s.WarmupFactor > 0 {
		a := float64(step) / float64(s.WarmupSteps)
		return s.WarmupFactor*(1-a) + a
	}
	return float64(step+1) / float64(s.WarmupSteps)
}

func (s Schedule) power() float64 {
	if s.Power == 0 {
		return 0.9
	}
	return s.Power
}

func (s Schedule) progress(step float64) float64 {
	if s.TotalSteps <= s.WarmupSteps {
		return 0
	}
	return math.Min(math.Max((step-float64(s.WarmupSteps))/float64(s.TotalSteps-s.WarmupSteps), 0), 1)
}

// Graph returns the learning rate (float64 scalar) for the 0-based step (an integer scalar node).
func (s Schedule) Graph(step *Node) *Node {
	g := step.Graph()
	st := ConvertDType(step, dtypes.Float64)
	var warmFactor *Node
	w := float64(max(s.WarmupSteps, 1))
	if s.WarmupFactor > 0 {
		a := DivScalar(st, w)
		warmFactor = AddScalar(MulScalar(a, 1-s.WarmupFactor), s.WarmupFactor)
	} else {
		warmFactor = DivScalar(AddScalar(st, 1), w)
	}
	inWarmup := LessThan(st, Scalar(g, dtypes.Float64, float64(s.WarmupSteps)))
	if strings.ToLower(s.Kind) == "multistep" {
		lr := Scalar(g, dtypes.Float64, s.BaseLR)
		for _, m := range s.Milestones {
			lr = Where(GreaterOrEqual(st, Scalar(g, dtypes.Float64, float64(m))), MulScalar(lr, s.gamma()), lr)
		}
		return Where(inWarmup, Mul(lr, warmFactor), lr)
	}
	warm := MulScalar(warmFactor, s.BaseLR)
	var p *Node
	if s.TotalSteps > s.WarmupSteps {
		p = DivScalar(AddScalar(st, -float64(s.WarmupSteps)), float64(s.TotalSteps-s.WarmupSteps))
		p = ClipScalar(p, 0, 1)
	} else {
		p = ScalarZero(g, dtypes.Float64)
	}
	var decayed *Node
	switch strings.ToLower(s.Kind) {
	case "constant":
		decayed = Scalar(g, dtypes.Float64, s.BaseLR)
	case "poly":
		decayed = AddScalar(MulScalar(Pow(OneMinus(p), Scalar(g, dtypes.Float64, s.power())), s.BaseLR-s.MinLR), s.MinLR)
	default:
		decayed = AddScalar(MulScalar(OnePlus(Cos(MulScalar(p, math.Pi))), 0.5*(s.BaseLR-s.MinLR)), s.MinLR)
	}
	return Where(inWarmup, warm, decayed)
}
