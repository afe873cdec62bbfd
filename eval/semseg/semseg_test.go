package semseg

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func near(a, b float64) bool {
	return a == b || math.IsNaN(a) && math.IsNaN(b) || math.Abs(a-b) < 1e-12
}

func checkAll(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !near(got[i], want[i]) {
			t.Errorf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestMetricsByHand(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name             string
		numClasses       int
		pred, label      []int32
		confusion        [][]int64
		iou, acc         []float64
		mIoU, mAcc, aAcc float64
	}{
		{
			// Pairs (label, pred), the two 255s skipped: (0,0)x3 (0,1) (1,1) (1,0) (2,1).
			// TP = 3,1,0; label counts 4,2,1; prediction counts 4,3,0.
			// IoU = 3/(4+4-3), 1/(2+3-1), 0/(1+0-0); Acc = 3/4, 1/2, 0/1; aAcc = 4/7.
			name:       "three classes",
			numClasses: 3,
			label:      []int32{0, 0, 0, 0, 1, 1, 2, 255, 255},
			pred:       []int32{0, 0, 0, 1, 1, 0, 1, 2, 0},
			confusion:  [][]int64{{3, 1, 0}, {1, 1, 0}, {0, 1, 0}},
			iou:        []float64{0.6, 0.25, 0},
			acc:        []float64{0.75, 0.5, 0},
			mIoU:       (0.6 + 0.25) / 3, mAcc: 1.25 / 3, aAcc: 4.0 / 7,
		},
		{
			// Class 3 appears nowhere: NaN IoU and Acc, left out of the means. Class 4 is
			// predicted but never labelled: IoU 0/(0+1-0) = 0 counts, Acc 0/0 is NaN.
			name:       "absent and never-labelled classes",
			numClasses: 5,
			label:      []int32{0, 0, 1, 1, 2},
			pred:       []int32{0, 4, 1, 1, 2},
			confusion:  [][]int64{{1, 0, 0, 0, 1}, {0, 2, 0, 0, 0}, {0, 0, 1, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}},
			iou:        []float64{0.5, 1, 1, nan, 0},
			acc:        []float64{0.5, 1, 1, nan, nan},
			mIoU:       2.5 / 4, mAcc: 2.5 / 3, aAcc: 4.0 / 5,
		},
		{
			name:       "perfect",
			numClasses: 4,
			label:      []int32{3, 2, 1, 0, 255, 3},
			pred:       []int32{3, 2, 1, 0, 7, 3},
			confusion:  [][]int64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 2}},
			iou:        []float64{1, 1, 1, 1},
			acc:        []float64{1, 1, 1, 1},
			mIoU:       1, mAcc: 1, aAcc: 1,
		},
		{
			name:       "only ignored pixels",
			numClasses: 2,
			label:      []int32{255, 255},
			pred:       []int32{0, 1},
			confusion:  [][]int64{{0, 0}, {0, 0}},
			iou:        []float64{nan, nan},
			acc:        []float64{nan, nan},
			mIoU:       nan, mAcc: nan, aAcc: nan,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(tc.numClasses, DefaultIgnoreIndex)
			// Split in two images to check accumulation.
			h := len(tc.label) / 2
			if err := e.Process(tc.pred[:h], tc.label[:h]); err != nil {
				t.Fatal(err)
			}
			if err := e.Process(tc.pred[h:], tc.label[h:]); err != nil {
				t.Fatal(err)
			}
			r := e.Evaluate()
			for i := range tc.confusion {
				if !slices.Equal(r.Confusion[i], tc.confusion[i]) {
					t.Errorf("confusion row %d = %v, want %v", i, r.Confusion[i], tc.confusion[i])
				}
			}
			checkAll(t, "IoU", r.IoU, tc.iou)
			checkAll(t, "Acc", r.Acc, tc.acc)
			checkAll(t, "means", []float64{r.MIoU, r.MAcc, r.AAcc}, []float64{tc.mIoU, tc.mAcc, tc.aAcc})
		})
	}
}

func TestMetricsPercent(t *testing.T) {
	e := New(3, 255)
	_ = e.Process([]int32{0, 0, 0, 1, 1, 0, 1}, []int32{0, 0, 0, 0, 1, 1, 2})
	m := e.Evaluate().Metrics()
	want := map[string]float64{"mIoU": 28.33, "mAcc": 41.67, "aAcc": 57.14}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

func TestReduceZeroLabel(t *testing.T) {
	label := []uint8{0, 1, 2, 150, 254, 255}
	ReduceZeroLabel(label)
	if want := []uint8{255, 0, 1, 149, 253, 255}; !slices.Equal(label, want) {
		t.Errorf("reduced %v, want %v", label, want)
	}
	l32 := []int32{0, 1, 255}
	ReduceZeroLabel(l32)
	if want := []int32{255, 0, 255}; !slices.Equal(l32, want) {
		t.Errorf("reduced %v, want %v", l32, want)
	}
}

func TestProcessBatchSkipsPadding(t *testing.T) {
	e := New(2, 255)
	// Two images of 3 pixels; the second is padding full of garbage.
	pred := []int32{0, 1, 1, 9, 9, 9}
	label := []int32{0, 1, 0, 7, 7, 7}
	if err := e.ProcessBatch(pred, label, []bool{true, false}); err != nil {
		t.Fatal(err)
	}
	r := e.Evaluate()
	if want := [][]int64{{1, 1}, {0, 1}}; !slices.Equal(r.Confusion[0], want[0]) || !slices.Equal(r.Confusion[1], want[1]) {
		t.Errorf("confusion %v, want %v", r.Confusion, want)
	}
	if err := e.ProcessBatch(pred, label, []bool{true, true}); err == nil || !strings.Contains(err.Error(), "batch image 1") {
		t.Errorf("garbage in a valid entry: error %v, want one naming batch image 1", err)
	}
	if err := e.ProcessBatch(pred[:5], label[:5], []bool{true, true}); err == nil {
		t.Error("5 pixels for 2 images: no error")
	}
	e.Reset()
	if r := e.Evaluate(); !math.IsNaN(r.AAcc) {
		t.Errorf("after Reset aAcc = %v, want NaN", r.AAcc)
	}
}

func TestOutOfRangeIsAnError(t *testing.T) {
	e := New(3, 255)
	if err := e.ProcessUint8([]uint8{0, 1}, []uint8{0, 3}); err == nil {
		t.Error("label 3 of 3 classes: no error")
	}
	if err := e.ProcessUint8([]uint8{0, 255}, []uint8{0, 1}); err == nil {
		t.Error("prediction 255 on a labelled pixel: no error")
	}
	if err := e.Process([]int32{0}, []int32{0, 1}); err == nil {
		t.Error("length mismatch: no error")
	}
}

func TestFormat(t *testing.T) {
	e := New(3, 255)
	_ = e.Process([]int32{0, 0, 0, 1, 1, 0, 1}, []int32{0, 0, 0, 0, 1, 1, 2})
	got := e.Evaluate().Format([]string{"sky", "road"})
	want := `per class results:
+-------+------+------+
| Class | IoU  | Acc  |
+-------+------+------+
|  sky  | 60.0 | 75.0 |
|  road | 25.0 | 50.0 |
|   2   | 0.0  | 0.0  |
+-------+------+------+
Summary:
+-------+-------+-------+
|  aAcc |  mIoU |  mAcc |
+-------+-------+-------+
| 57.14 | 28.33 | 41.67 |
+-------+-------+-------+
`
	if got != want {
		t.Errorf("format:\n%s\nwant:\n%s", got, want)
	}
}

func writeGray(t *testing.T, path string, w, h int, pix []uint8) {
	t.Helper()
	vals := make([]int32, len(pix))
	for i, v := range pix {
		vals[i] = int32(v)
	}
	if err := WriteMask(path, vals, w, h); err != nil {
		t.Fatal(err)
	}
}

func writePalette(t *testing.T, path string, w, h int, pix []uint8) {
	t.Helper()
	pal := make(color.Palette, 256)
	for i := range pal {
		pal[i] = color.RGBA{uint8(i * 7), uint8(i * 13), uint8(i * 29), 255}
	}
	img := image.NewPaletted(image.Rect(0, 0, w, h), pal)
	copy(img.Pix, pix)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

func TestEvaluateFolders(t *testing.T) {
	dir := t.TempDir()
	labels, preds := filepath.Join(dir, "labels"), filepath.Join(dir, "preds")
	for _, d := range []string{labels, preds} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// ADE20K-style labels: 0 is "other" (ignored after reduce_zero_label), classes from 1.
	// a: labels 1 1 2 0 -> 0 0 1 ignore; prediction 0 1 1 0.
	// b (a palette PNG): labels 2 2 -> 1 1; prediction 1 1.
	writeGray(t, filepath.Join(labels, "a.png"), 2, 2, []uint8{1, 1, 2, 0})
	writeGray(t, filepath.Join(preds, "a.png"), 2, 2, []uint8{0, 1, 1, 0})
	writePalette(t, filepath.Join(labels, "b.png"), 2, 1, []uint8{2, 2})
	writeGray(t, filepath.Join(preds, "b.png"), 2, 1, []uint8{1, 1})

	files, err := LabelFilesInDir(labels, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name != "a" || files[1].Name != "b" {
		t.Fatalf("label files %+v", files)
	}
	r, err := EvaluateFolders(preds, files, Options{NumClasses: 2, IgnoreIndex: 255, ReduceZeroLabel: true})
	if err != nil {
		t.Fatal(err)
	}
	// Confusion [[1 1] [0 3]]: IoU 1/2, 3/4; Acc 1/2, 1; aAcc 4/5.
	checkAll(t, "IoU", r.IoU, []float64{0.5, 0.75})
	checkAll(t, "Acc", r.Acc, []float64{0.5, 1})
	checkAll(t, "aAcc", []float64{r.AAcc}, []float64{0.8})

	// Without reduce_zero_label, label 2 is out of range for 2 classes: the error names the files.
	_, err = EvaluateFolders(preds, files, DefaultOptions(2))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(labels, "a.png")) {
		t.Errorf("out-of-range label: error %v should name the label file", err)
	}

	// A prediction of the wrong size: the error names both files.
	writeGray(t, filepath.Join(preds, "b.png"), 1, 2, []uint8{1, 1})
	_, err = EvaluateFolders(preds, files, Options{NumClasses: 2, IgnoreIndex: 255, ReduceZeroLabel: true})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(preds, "b.png")) || !strings.Contains(err.Error(), filepath.Join(labels, "b.png")) {
		t.Errorf("size mismatch: error %v should name both files", err)
	}

	// A missing prediction names the expected path.
	if err := os.Remove(filepath.Join(preds, "b.png")); err != nil {
		t.Fatal(err)
	}
	_, err = EvaluateFolders(preds, files, Options{NumClasses: 2, IgnoreIndex: 255, ReduceZeroLabel: true})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(preds, "b.png")) {
		t.Errorf("missing prediction: error %v should name it", err)
	}
}

func TestReadMask16Bit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.png")
	img := image.NewGray16(image.Rect(0, 0, 3, 1))
	for x, v := range []uint16{0, 300, 65535} {
		img.SetGray16(x, 0, color.Gray16{Y: v})
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
	vals, w, h, err := ReadMask(path)
	if err != nil {
		t.Fatal(err)
	}
	if w != 3 || h != 1 || !slices.Equal(vals, []int32{0, 300, 65535}) {
		t.Errorf("read %v (%dx%d)", vals, w, h)
	}
}

// TestCamVidLabelsAgainstThemselves reads the real CamVid val labels (11 classes, 11 = void)
// when the shared data folder is present: labels as predictions must give 100%.
func TestCamVidLabelsAgainstThemselves(t *testing.T) {
	dir := "../../../shared/data/camvid/valannot"
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("CamVid not present: %v", err)
	}
	files, err := LabelFilesInDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := EvaluateFolders(dir, files, Options{NumClasses: 11, IgnoreIndex: 11})
	if err != nil {
		t.Fatal(err)
	}
	if r.MIoU != 1 || r.MAcc != 1 || r.AAcc != 1 {
		t.Errorf("labels against themselves: mIoU %v mAcc %v aAcc %v, want 1", r.MIoU, r.MAcc, r.AAcc)
	}
	if len(files) != 101 {
		t.Errorf("%d val labels, want 101", len(files))
	}
}
