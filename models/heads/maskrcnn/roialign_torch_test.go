package maskrcnn

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// torchRoIAlign is testdata/roialign.json, written by testdata/make_roialign.py with
// torchvision.ops.roi_align (see the script for the layout).
type torchRoIAlign struct {
	Torch, Torchvision string
	Maps               map[string]struct {
		Shape []int     // [N, C, H, W]
		Data  []float64 // row-major
	}
	Cases []struct {
		Name string
		Map  string
		// Levels, MinLevel, CanonicalSize, CanonicalLevel: a ROIPooler case over several maps.
		Levels         []string
		MinLevel       int     `json:"min_level"`
		CanonicalSize  float64 `json:"canonical_size"`
		CanonicalLevel int     `json:"canonical_level"`
		Level          []int32
		Scale          float64
		Out            int
		SR             int
		Boxes          [][][4]float64
		Out64, Out32   []float64
		Grad64         []float64
	}
}

// torchWeight is the script's weight(i): the weight of output element i (torch's layout) in
// the summed output whose gradient the fixture holds.
func torchWeight(i int) float64 { return float64((i*37)%17-8) / 8 }

// nchwToNHWC returns data [N, C, H, W] as a tensor [N, H, W, C] of dtype dt.
func nchwToNHWC(shape []int, data []float64, dt dtypes.DType) *tensors.Tensor {
	n, c, h, w := shape[0], shape[1], shape[2], shape[3]
	out := make([]float64, len(data))
	for i := range n {
		for ch := range c {
			for y := range h {
				for x := range w {
					out[((i*h+y)*w+x)*c+ch] = data[((i*c+ch)*h+y)*w+x]
				}
			}
		}
	}
	t := tensors.FromFlatDataAndDimensions(out, n, h, w, c)
	if dt == dtypes.Float32 {
		f := make([]float32, len(out))
		for i, v := range out {
			f[i] = float32(v)
		}
		t = tensors.FromFlatDataAndDimensions(f, n, h, w, c)
	}
	return t
}

// torchOutputIndex is the index in torch's [N*R, C, out, out] of our [N, R, out, out, C]
// element (n, r, ph, pw, c).
func torchOutputIndex(r, n, nr, ph, pw, ch, c, out int) int {
	return (((n*r+nr)*c+ch)*out+ph)*out + pw
}

// TestRoIAlignMatchesTorchvision compares RoIAlign and MultiLevelRoIAlign, float32 and float64,
// and their gradients with respect to the features, with torchvision's roi_align (aligned=True).
func TestRoIAlignMatchesTorchvision(t *testing.T) {
	data, err := os.ReadFile("testdata/roialign.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx torchRoIAlign
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Cases) == 0 {
		t.Fatal("no cases in testdata/roialign.json")
	}
	t.Logf("reference: torch %s, torchvision %s", fx.Torch, fx.Torchvision)
	var worst struct{ f32, f32vs32, f64, g32, g64 float64 }
	for _, tc := range fx.Cases {
		names := tc.Levels
		if len(names) == 0 {
			names = []string{tc.Map}
		}
		n, r, c := len(tc.Boxes), len(tc.Boxes[0]), fx.Maps[names[0]].Shape[1]
		out := tc.Out
		// Our layout of the weights: w[n, r, ph, pw, c] = torchWeight(torch's index).
		wFlat := make([]float64, n*r*out*out*c)
		for i := range n {
			for j := range r {
				for ph := range out {
					for pw := range out {
						for ch := range c {
							wFlat[(((i*r+j)*out+ph)*out+pw)*c+ch] = torchWeight(torchOutputIndex(r, i, j, ph, pw, ch, c, out))
						}
					}
				}
			}
		}
		// The expected gradients, in our layout, level after level.
		var wantGrad []float64
		off := 0
		for _, name := range names {
			m := fx.Maps[name]
			size := m.Shape[0] * m.Shape[1] * m.Shape[2] * m.Shape[3]
			wantGrad = append(wantGrad, tensors.MustCopyFlatData[float64](nchwToNHWC(m.Shape, tc.Grad64[off:off+size], dtypes.Float64))...)
			off += size
		}
		if off != len(tc.Grad64) || len(tc.Out64) != len(wFlat) || len(tc.Out32) != len(wFlat) {
			t.Fatalf("%s: fixture sizes do not match: %d gradients for maps of %d, %d/%d outputs for %d", tc.Name, len(tc.Grad64), off, len(tc.Out64), len(tc.Out32), len(wFlat))
		}
		for _, dt := range []dtypes.DType{dtypes.Float32, dtypes.Float64} {
			args := []any{boxesTensor(tc.Boxes), tensors.FromFlatDataAndDimensions(wFlat, n, r, out, out, c)}
			for _, name := range names {
				args = append(args, nchwToNHWC(fx.Maps[name].Shape, fx.Maps[name].Data, dt))
			}
			res := model.MustCallOnceN(backend.Go(), model.NewStore(), func(_ *model.Scope, in []*Node) []*Node {
				boxes, w, maps := in[0], in[1], in[2:]
				var y, lvl *Node
				if len(tc.Levels) > 0 {
					y = MultiLevelRoIAlign(maps, tc.MinLevel, boxes, out, tc.SR, tc.CanonicalSize, tc.CanonicalLevel)
					lvl = AssignLevels(boxes, tc.MinLevel, tc.MinLevel+len(maps)-1, tc.CanonicalSize, tc.CanonicalLevel)
				} else {
					y = RoIAlign(maps[0], boxes, out, tc.Scale, tc.SR)
					lvl = ZerosLike(ConvertDType(coord(boxes, 0), dtypes.Int32))
				}
				loss := ReduceAllSum(Mul(y, ConvertDType(w, y.DType())))
				grads := Gradient(loss, maps...)
				flat := make([]*Node, len(grads))
				for i, g := range grads {
					flat[i] = ConvertDType(Reshape(g, -1), dtypes.Float64)
				}
				gradAll := flat[0]
				if len(flat) > 1 {
					gradAll = Concatenate(flat, 0)
				}
				return []*Node{ConvertDType(y, dtypes.Float64), gradAll, Reshape(lvl, -1)}
			}, args...)
			got, grad := tensors.MustCopyFlatData[float64](res[0]), tensors.MustCopyFlatData[float64](res[1])
			if len(tc.Level) > 0 {
				for i, l := range tensors.MustCopyFlatData[int32](res[2]) {
					if l != tc.Level[i] {
						t.Errorf("%s: box %d pooled from level index %d, detectron2 %d", tc.Name, i, l, tc.Level[i])
					}
				}
			}
			var dOut, dOut32, dGrad float64
			for i := range n {
				for j := range r {
					for ph := range out {
						for pw := range out {
							for ch := range c {
								k := torchOutputIndex(r, i, j, ph, pw, ch, c, out)
								v := got[(((i*r+j)*out+ph)*out+pw)*c+ch]
								dOut = max(dOut, math.Abs(v-tc.Out64[k]))
								dOut32 = max(dOut32, math.Abs(v-tc.Out32[k]))
							}
						}
					}
				}
			}
			for i, v := range grad {
				dGrad = max(dGrad, math.Abs(v-wantGrad[i]))
			}
			t.Logf("%-52s %s: max |ours - torch float64| output %.2g, gradient %.2g; |ours - torch float32| output %.2g", tc.Name, dt, dOut, dGrad, dOut32)
			outTol, gradTol := 1e-12, 1e-12
			if dt == dtypes.Float32 {
				outTol, gradTol = 1e-5, 1e-5
				worst.f32, worst.f32vs32, worst.g32 = max(worst.f32, dOut), max(worst.f32vs32, dOut32), max(worst.g32, dGrad)
			} else {
				worst.f64, worst.g64 = max(worst.f64, dOut), max(worst.g64, dGrad)
			}
			if dOut > outTol || dGrad > gradTol {
				t.Errorf("%s (%s): output differs from torchvision by %.3g (tolerance %g), gradient by %.3g (tolerance %g)", tc.Name, dt, dOut, outTol, dGrad, gradTol)
			}
		}
	}
	t.Logf("worst over %d cases: float32 output %.2g (%.2g from torch's float32), gradient %.2g; float64 output %.2g, gradient %.2g",
		len(fx.Cases), worst.f32, worst.f32vs32, worst.g32, worst.f64, worst.g64)
}
