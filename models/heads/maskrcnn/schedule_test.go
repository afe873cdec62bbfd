package maskrcnn

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

func TestSchedules(t *testing.T) {
	for name, want := range map[string][3]int{"1x": {90_000, 60_000, 80_000}, "2x": {180_000, 120_000, 160_000}, "3x": {270_000, 210_000, 250_000}} {
		s, ok := Schedules[name]
		if !ok || s.MaxIter != want[0] || !slices.Equal(s.Steps, want[1:]) || s.BaseLR != 0.02 || s.ImsPerBatch != 16 {
			t.Errorf("schedule %s: %+v", name, s)
		}
	}
	s := Schedules["1x"]
	cases := map[int]float64{
		0:      0.02 * 0.001,
		500:    0.02 * (0.001*0.5 + 0.5),
		999:    0.02 * (0.001*0.001 + 0.999),
		1000:   0.02,
		59_999: 0.02,
		60_000: 0.002,
		79_999: 0.002,
		80_000: 0.0002,
		89_999: 0.0002,
	}
	iters := make([]int64, 0, len(cases))
	for it, want := range cases {
		if got := s.LR(it); math.Abs(got-want) > 1e-12 {
			t.Errorf("LR(%d) = %g, want %g", it, got, want)
		}
		iters = append(iters, int64(it))
	}
	got := tensors.MustCopyFlatData[float64](MustExecOnce(backend.Go(), func(it *Node) *Node {
		return s.LRGraph(it)
	}, iters))
	for i, it := range iters {
		if math.Abs(got[i]-s.LR(int(it))) > 1e-12 {
			t.Errorf("LRGraph(%d) = %g, want %g", it, got[i], s.LR(int(it)))
		}
	}
	half, err := s.Scaled(8)
	if err != nil || half.BaseLR != 0.01 || half.MaxIter != 180_000 || !slices.Equal(half.Steps, []int{120_000, 160_000}) || half.WarmupIters != 2000 {
		t.Errorf("1x scaled to batch 8: %+v, %v", half, err)
	}
}

func ExampleSchedule_LR() {
	s := Schedules["1x"]
	for _, it := range []int{0, 999, 1000, 60_000, 80_000} {
		fmt.Printf("iteration %5d: lr %.4g\n", it, s.LR(it))
	}
	// Output:
	// iteration     0: lr 2e-05
	// iteration   999: lr 0.01998
	// iteration  1000: lr 0.02
	// iteration 60000: lr 0.002
	// iteration 80000: lr 0.0002
}
