package diffusion

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Schedule is a named beta schedule (guided-diffusion's get_named_beta_schedule).
type Schedule int

const (
	// Linear is Ho et al.'s schedule, betas linear from 1e-4 to 2e-2 at 1000 steps, both ends
	// scaled by 1000/steps so that the process stays similar for other step counts.
	Linear Schedule = iota
	// Cosine is Nichol & Dhariwal's: alphā(t) = cos²((t+0.008)/1.008 · π/2), betas clipped at 0.999.
	Cosine
)

func (s Schedule) String() string {
	switch s {
	case Linear:
		return "linear"
	case Cosine:
		return "cosine"
	}
	return fmt.Sprintf("Schedule(%d)", int(s))
}

// Betas returns the betas of schedule s for steps diffusion steps, in float64.
func Betas(s Schedule, steps int) ([]float64, error) {
	if steps <= 0 {
		return nil, fmt.Errorf("diffusion: the number of steps must be positive, got %d", steps)
	}
	switch s {
	case Linear:
		scale := 1000 / float64(steps)
		start, end := scale*1e-4, scale*0.02
		betas := make([]float64, steps)
		if steps == 1 {
			betas[0] = start
			return betas, nil
		}
		// As numpy.linspace: i*step + start, the last value exactly end.
		step := (end - start) / float64(steps-1)
		for i := range betas {
			betas[i] = float64(i)*step + start
		}
		betas[steps-1] = end
		return betas, nil
	case Cosine:
		return BetasForAlphaBar(steps, func(t float64) float64 {
			c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
			return c * c
		}, 0.999), nil
	}
	return nil, fmt.Errorf("diffusion: unknown beta schedule %v", s)
}

// BetasForAlphaBar discretises a cumulative product alphā(t), t in [0, 1], into steps betas:
// beta_i = min(1 - alphā((i+1)/steps) / alphā(i/steps), maxBeta).
func BetasForAlphaBar(steps int, alphaBar func(t float64) float64, maxBeta float64) []float64 {
	betas := make([]float64, steps)
	for i := range betas {
		t1, t2 := float64(i)/float64(steps), float64(i+1)/float64(steps)
		betas[i] = math.Min(1-alphaBar(t2)/alphaBar(t1), maxBeta)
	}
	return betas
}

// SpaceTimesteps chooses the timesteps of a process of numTimesteps steps to keep, as
// guided-diffusion's space_timesteps: sectionCounts is "N" (N evenly spaced steps including the
// first and last), "N1,N2,..." (the process cut into equal sections, each strided to its count)
// or "ddimN" (the DDIM paper's fixed integer stride, starting at 0). The result is sorted.
func SpaceTimesteps(numTimesteps int, sectionCounts string) ([]int, error) {
	if strings.HasPrefix(sectionCounts, "ddim") {
		want, err := strconv.Atoi(strings.TrimPrefix(sectionCounts, "ddim"))
		if err != nil || want <= 0 {
			return nil, fmt.Errorf("diffusion: bad respacing %q: want ddimN with N > 0", sectionCounts)
		}
		for stride := 1; stride < numTimesteps; stride++ {
			if (numTimesteps+stride-1)/stride == want {
				var steps []int
				for t := 0; t < numTimesteps; t += stride {
					steps = append(steps, t)
				}
				return steps, nil
			}
		}
		return nil, fmt.Errorf("diffusion: cannot take exactly %d of %d steps with an integer stride", want, numTimesteps)
	}
	var counts []int
	for _, f := range strings.Split(sectionCounts, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 0 {
			return nil, fmt.Errorf("diffusion: bad respacing %q: want N, N1,N2,... or ddimN", sectionCounts)
		}
		counts = append(counts, c)
	}
	sizePer, extra := numTimesteps/len(counts), numTimesteps%len(counts)
	start := 0
	kept := map[int]bool{}
	for i, count := range counts {
		size := sizePer
		if i < extra {
			size++
		}
		if size < count {
			return nil, fmt.Errorf("diffusion: cannot divide a section of %d steps into %d", size, count)
		}
		stride := 1.0
		if count > 1 {
			stride = float64(size-1) / float64(count-1)
		}
		cur := 0.0
		for range count {
			kept[start+int(math.RoundToEven(cur))] = true
			cur += stride
		}
		start += size
	}
	steps := make([]int, 0, len(kept))
	for t := range kept {
		steps = append(steps, t)
	}
	slices.Sort(steps)
	return steps, nil
}
