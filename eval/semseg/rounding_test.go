package semseg

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
)

// TestPrintedPercentMatchesMMSeg: on confusion matrices where the 2-decimal percentages of the
// exact ratios rounded in float64 differ from what mmseg prints (.xx5 boundaries), ours are
// mmseg's: per-class IoU and accuracy, aAcc, and mIoU/mAcc over 4 and 150 classes (the float32
// pairwise mean). testdata/mmseg_rounding.json was written by make_mmseg_rounding.py beside it,
// with mmseg's own arithmetic in numpy 1.24.
func TestPrintedPercentMatchesMMSeg(t *testing.T) {
	data, err := os.ReadFile("testdata/mmseg_rounding.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct {
		Cases []struct {
			Name             string
			Differs          []string
			Classes          int
			Entries          [][3]int64
			AAcc, MIoU, MAcc string
			IoU              []string `json:"iou"`
			Acc              []string `json:"acc"`
		}
	}
	if err := json.Unmarshal(data, &fixture); err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, tc := range fixture.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			cm := make([][]int64, tc.Classes)
			for i := range cm {
				cm[i] = make([]int64, tc.Classes)
			}
			for _, e := range tc.Entries {
				cm[e[0]][e[1]] = e[2]
			}
			r := FromConfusion(cm)
			m := r.Metrics()
			for _, s := range []struct {
				name      string
				got, want string
			}{{"aAcc", pyFloat(m["aAcc"]), tc.AAcc}, {"mIoU", pyFloat(m["mIoU"]), tc.MIoU}, {"mAcc", pyFloat(m["mAcc"]), tc.MAcc}} {
				if s.got != s.want {
					t.Errorf("%s prints %s, mmseg %s", s.name, s.got, s.want)
				}
			}
			for c := range tc.Classes {
				if got := pyFloat32(classPercent(r.IoU[c])); got != tc.IoU[c] {
					t.Errorf("class %d IoU prints %s, mmseg %s (ratio %.17g)", c, got, tc.IoU[c], r.IoU[c])
				}
				if got := pyFloat32(classPercent(r.Acc[c])); got != tc.Acc[c] {
					t.Errorf("class %d Acc prints %s, mmseg %s (ratio %.17g)", c, got, tc.Acc[c], r.Acc[c])
				}
			}
			// The summary table prints the same digits.
			f := r.Format(nil)
			for _, want := range []string{tc.AAcc, tc.MIoU, tc.MAcc} {
				if !strings.Contains(f[strings.Index(f, "Summary:"):], " "+want+" ") {
					t.Errorf("summary table lacks %s:\n%s", want, f)
				}
			}
			for _, d := range tc.Differs {
				covered[d] = true
			}
		})
	}
	for _, what := range []string{"iou", "acc", "aAcc", "mIoU", "mAcc"} {
		if !covered[what] {
			t.Errorf("no case where %s rounds differently in float64: the fixture does not test it", what)
		}
	}
}

// TestPercentBoundaryByHand: an IoU of 57/20000 = 0.285% exactly. In float64, 0.00285*100*100 is
// 28.500000000000004, which rounds to 0.29; in float32 the products are 0.285 and exactly 28.5,
// which rounds half to even: mmseg prints 0.28.
func TestPercentBoundaryByHand(t *testing.T) {
	v := 57.0 / 20000
	if y := v * 100 * 100; y != 28.500000000000004 {
		t.Fatalf("float64 product %.17g", y)
	}
	if got := pyFloat32(classPercent(v)); got != "0.28" {
		t.Errorf("0.285%% prints %s, want mmseg's 0.28", got)
	}
	r := FromConfusion([][]int64{{57, 19943}, {0, 200000}})
	if got := pyFloat32(classPercent(r.IoU[0])); got != "0.28" {
		t.Errorf("class 0 IoU %.17g prints %s, want 0.28", r.IoU[0], got)
	}
	if !strings.Contains(r.Format(nil), "|   0   |  0.28 |  0.28 |") {
		t.Errorf("table:\n%s", r.Format(nil))
	}
}

// TestPairwiseSum32: np.sum(np.array([1/(i+1) for i in range(n)], dtype=np.float32)) in numpy
// 1.24, as float32 bits: the plain loop, one block of 8 accumulators, and the recursive split.
func TestPairwiseSum32(t *testing.T) {
	for _, tc := range []struct {
		n    int
		bits uint32
	}{{7, 1076228448}, {8, 1076752736}, {9, 1077218770}, {100, 1084620545}, {128, 1085135960},
		{129, 1085152218}, {150, 1085467381}, {300, 1086917527}, {1000, 1089439996}} {
		v := make([]float32, tc.n)
		var sequential float32
		for i := range v {
			v[i] = float32(1 / float64(i+1))
			sequential += v[i]
		}
		if got := pairwiseSum32(v); math.Float32bits(got) != tc.bits {
			t.Errorf("n=%d: sum %v, numpy %v (a plain float32 loop gives %v)", tc.n, got, math.Float32frombits(tc.bits), sequential)
		}
	}
}
