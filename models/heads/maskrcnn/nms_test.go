package maskrcnn

import (
	"math/rand/v2"
	"sort"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// refNMS is torchvision's nms (per group, as batched_nms) in plain Go on boxes already sorted by
// decreasing score: a box is suppressed by an earlier kept box of its group with IoU > thresh.
func refNMS(boxes [][4]float32, valid []bool, groups []int32, thresh float32) []bool {
	keep := make([]bool, len(boxes))
	area := func(b [4]float32) float32 { return (b[2] - b[0]) * (b[3] - b[1]) }
	for i, bi := range boxes {
		if !valid[i] {
			continue
		}
		keep[i] = true
		for j := range i {
			if !keep[j] || (groups != nil && groups[j] != groups[i]) {
				continue
			}
			bj := boxes[j]
			w := max(min(bi[2], bj[2])-max(bi[0], bj[0]), 0)
			h := max(min(bi[3], bj[3])-max(bi[1], bj[1]), 0)
			inter := w * h
			if inter > 0 && inter/(area(bi)+area(bj)-inter) > thresh {
				keep[i] = false
				break
			}
		}
	}
	return keep
}

func runNMS(t *testing.T, boxes [][][4]float32, valid [][]bool, groups [][]int32, thresh float64) [][]bool {
	t.Helper()
	b, n := len(boxes), len(boxes[0])
	fb := make([]float32, 0, b*n*4)
	fv := make([]bool, 0, b*n)
	fg := make([]int32, 0, b*n)
	for i := range b {
		for j := range n {
			fb = append(fb, boxes[i][j][:]...)
			fv = append(fv, valid[i][j])
			if groups != nil {
				fg = append(fg, groups[i][j])
			} else {
				fg = append(fg, 0)
			}
		}
	}
	out := exec1(t, func(g *Graph, in []*Node) *Node {
		var grp *Node
		if groups != nil {
			grp = in[2]
		}
		return NMS(in[0], in[1], grp, thresh)
	}, tensors.FromFlatDataAndDimensions(fb, b, n, 4), tensors.FromFlatDataAndDimensions(fv, b, n), tensors.FromFlatDataAndDimensions(fg, b, n))
	flat := tensors.MustCopyFlatData[bool](out)
	res := make([][]bool, b)
	for i := range b {
		res[i] = flat[i*n : (i+1)*n]
	}
	return res
}

func TestNMSKnownCases(t *testing.T) {
	boxes := [][][4]float32{{
		{0, 0, 10, 10},   // kept
		{1, 0, 11, 10},   // IoU 9/11 with 0: suppressed
		{20, 20, 30, 30}, // kept
		{5, 0, 15, 10},   // IoU 5/15 with 0, 6/14 with 1 (suppressed, does not count): kept at 0.5
		{6, 0, 16, 10},   // IoU 9/11 with 3: suppressed
		{0, 0, 10, 10},   // duplicate of 0 but invalid: neither kept nor suppressing
	}}
	valid := [][]bool{{true, true, true, true, true, false}}
	got := runNMS(t, boxes, valid, nil, 0.5)
	want := []bool{true, false, true, true, false, false}
	for i := range want {
		if got[0][i] != want[i] {
			t.Fatalf("keep %v, want %v", got[0], want)
		}
	}
	// A chain where each box only overlaps its neighbours: greedy keeps every other box.
	chain := make([][4]float32, 9)
	for i := range chain {
		chain[i] = [4]float32{float32(i) * 2, 0, float32(i)*2 + 10, 10}
	}
	all := []bool{true, true, true, true, true, true, true, true, true}
	got = runNMS(t, [][][4]float32{chain}, [][]bool{all}, nil, 0.6)
	ref := refNMS(chain, all, nil, 0.6)
	for i := range ref {
		if got[0][i] != ref[i] {
			t.Fatalf("chain: keep %v, want %v", got[0], ref)
		}
	}
	// Groups (classes) never suppress each other; equal IoU to the threshold is not suppressed.
	two := [][4]float32{{0, 0, 10, 10}, {0, 0, 10, 10}, {0, 0, 10, 5}}
	got = runNMS(t, [][][4]float32{two}, [][]bool{{true, true, true}}, [][]int32{{0, 1, 0}}, 0.5)
	if !got[0][0] || !got[0][1] || !got[0][2] {
		t.Errorf("groups/threshold: keep %v, want all", got[0])
	}
}

func TestNMSMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const b, n = 3, 60
	boxes := make([][][4]float32, b)
	valid := make([][]bool, b)
	groups := make([][]int32, b)
	for i := range b {
		type scored struct {
			box   [4]float32
			score float32
		}
		items := make([]scored, n)
		for j := range items {
			x, y := rng.Float32()*40, rng.Float32()*40
			items[j] = scored{[4]float32{x, y, x + 5 + rng.Float32()*20, y + 5 + rng.Float32()*20}, rng.Float32()}
		}
		sort.Slice(items, func(p, q int) bool { return items[p].score > items[q].score })
		boxes[i] = make([][4]float32, n)
		valid[i] = make([]bool, n)
		groups[i] = make([]int32, n)
		for j, it := range items {
			boxes[i][j] = it.box
			valid[i][j] = rng.Float32() < 0.9
			groups[i][j] = int32(rng.IntN(3))
		}
	}
	for _, thresh := range []float64{0.3, 0.5, 0.7} {
		for _, withGroups := range []bool{false, true} {
			var grp [][]int32
			if withGroups {
				grp = groups
			}
			got := runNMS(t, boxes, valid, grp, thresh)
			for i := range b {
				var gi []int32
				if withGroups {
					gi = groups[i]
				}
				want := refNMS(boxes[i], valid[i], gi, float32(thresh))
				for j := range want {
					if got[i][j] != want[j] {
						t.Fatalf("thresh %g groups %v list %d: keep differs at %d", thresh, withGroups, i, j)
					}
				}
			}
		}
	}
}
