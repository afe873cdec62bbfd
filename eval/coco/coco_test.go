package coco

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Expected numbers marked "pycocotools" were produced by running pycocotools' COCOeval
// (cocodataset/cocoapi at 8c9bcc3, built from source against Debian's numpy 1.24, np.float
// replaced by float) on the same json files, with the boxes of the results popped for segm as
// detectron2 does. The hand-made cases were worked out by hand first; the comments give the
// reasoning. testdata/oracle holds the scripts that wrote the json files and printed the numbers.

func TestThresholdsMatchNumpy(t *testing.T) {
	p := DefaultParams(BBox)
	// repr() of numpy.linspace(.5, 0.95, 10)
	wantIoU := []float64{0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95}
	if !slices.Equal(p.IoUThrs, wantIoU) {
		t.Errorf("iouThrs %v, want %v", p.IoUThrs, wantIoU)
	}
	// Some of numpy.linspace(0, 1, 101) that are not the nearest double to k/100.
	for i, want := range map[int]float64{3: 0.03, 35: 0.35000000000000003, 41: 0.41000000000000003,
		57: 0.5700000000000001, 69: 0.6900000000000001, 70: 0.7000000000000001, 95: 0.9500000000000001, 100: 1} {
		if p.RecThrs[i] != want {
			t.Errorf("recThrs[%d] = %v, want %v", i, p.RecThrs[i], want)
		}
	}
}

func evalFiles(t *testing.T, gtPath, dtPath string, iouType IoUType) (*COCOeval, Summary) {
	t.Helper()
	gt, err := LoadDataset(gtPath)
	if err != nil {
		t.Fatal(err)
	}
	results, err := LoadResultsFile(dtPath)
	if err != nil {
		t.Fatal(err)
	}
	if iouType == Segm {
		for i := range results {
			results[i].BBox = nil
		}
	}
	dt, err := LoadRes(gt, results)
	if err != nil {
		t.Fatal(err)
	}
	e := NewCOCOeval(gt, dt, iouType)
	if err := e.Evaluate(); err != nil {
		t.Fatal(err)
	}
	e.Accumulate()
	return e, e.Summarize()
}

func checkStats(t *testing.T, got Stats, want [12]float64) {
	t.Helper()
	names := []string{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}
	for i, g := range got.Values() {
		if g != want[i] {
			t.Errorf("%s = %v, want %v", names[i], g, want[i])
		}
	}
}

func TestHandMadeCases(t *testing.T) {
	tests := []struct {
		name    string
		iouType IoUType
		want    [12]float64 // pycocotools, to the last bit (numpy's pairwise mean gives 0.99..98)
		perCat  map[int64]float64
	}{
		// Every object found: AP 1; no large object: APl and ARl -1.
		{"perfect", BBox, [12]float64{1.0, 1.0, 1.0, 0.9999999999999998, 0.9999999999999998, -1, 1, 1, 1, 1, 1, -1}, nil},
		// FP (0.9) then TP (0.8): recall [0, 1], precision [0, .5], envelope [.5, .5], so every
		// recall threshold reads .5. With one detection per image only the FP counts: AR1 0.
		// The small FP is in no other area range, the gt neither: APm, APl -1.
		{"fp_first", BBox, [12]float64{0.5, 0.5, 0.5, 0.5, -1, -1, 0, 1, 1, 1, -1, -1}, nil},
		// The three detections inside the crowd box have IoU 1 with it (intersection over the
		// detection's area), match it and are ignored: AP 1 instead of 1/4 precision tails.
		{"crowd", BBox, [12]float64{0.9999999999999998, 0.9999999999999999, 0.9999999999999999, 0.9999999999999998, -1, -1, 1, 1, 1, 1, -1, -1}, nil},
		// Area 32^2 lies in small [0, 32^2] and medium [32^2, 96^2]; 96^2 in medium and large.
		// Two objects in one image: AR1 .5.
		{"area_bounds", BBox, [12]float64{1, 1, 1, 0.9999999999999998, 1, 0.9999999999999998, 0.5, 1, 1, 1, 1, 1}, nil},
		// Equal scores keep file order: FP, TP, TP gives precision [0, 1/2, 2/3], envelope 2/3
		// everywhere (TP, TP, FP would give 1).
		{"ties", BBox, [12]float64{0.6666666666666666, 0.6666666666666669, 0.6666666666666669, 0.6666666666666666, -1, -1, 0, 1, 1, 1, -1, -1}, nil},
		// Category 2 has a detection but no ground truth, category 3 nothing: both -1, left out
		// of the means; their per-category AP is NaN.
		{"empty_cat", BBox, [12]float64{0.9999999999999998, 0.9999999999999999, 0.9999999999999999, 0.9999999999999998, -1, -1, 1, 1, 1, 1, -1, -1},
			map[int64]float64{1: 0.9999999999999998, 2: math.NaN(), 3: math.NaN()}},
		// 4x4 masks: the 2x2 block is found exactly (IoU 1); column 3 is found with 3 of its
		// 4 pixels (IoU .75, a match up to the .75 threshold). Above .75: recall [.5, .5],
		// precision [1, .5], so AP = 51/101 there. AP = (6 + 4*51/101)/10.
		{"segm_tiny", Segm, [12]float64{0.801980198019802, 1.0, 1.0, 0.801980198019802, -1, -1, 0.5, 0.8, 0.8, 0.8, -1, -1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, s := evalFiles(t, filepath.Join("testdata", tc.name+"_gt.json"), filepath.Join("testdata", tc.name+"_dt.json"), tc.iouType)
			checkStats(t, s.Stats, tc.want)
			for cat, want := range tc.perCat {
				got := e.PerCategoryAP()[cat]
				if !(got == want || math.IsNaN(got) && math.IsNaN(want)) {
					t.Errorf("category %d AP %v, want %v", cat, got, want)
				}
			}
		})
	}
}

func TestSummaryTextFormat(t *testing.T) {
	_, s := evalFiles(t, "testdata/segm_tiny_gt.json", "testdata/segm_tiny_dt.json", Segm)
	want := ` Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.802
 Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 1.000
 Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 1.000
 Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.802
 Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000
 Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000
 Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.500
 Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ] = 0.800
 Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.800
 Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.800
 Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000
 Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000
` // pycocotools' printed summary
	if got := s.Text(); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
}

const labelmeCOCO = "/usr/share/doc/labelme-examples/examples/instance_segmentation/data_dataset_coco/annotations.json"

// TestLabelmeRealAnnotations evaluates shifted copies of the real polygons of Debian's
// labelme-examples COCO file (testdata/labelme_results.json, made from it) plus a few false
// positives. Its first annotation has id 0, which pycocotools never counts as matched.
func TestLabelmeRealAnnotations(t *testing.T) {
	if _, err := os.Stat(labelmeCOCO); err != nil {
		t.Skipf("labelme-examples not installed: %v", err)
	}
	tests := []struct {
		iouType IoUType
		want    [12]float64 // pycocotools
		perCat  map[int64]float64
	}{
		{BBox, [12]float64{0.528124312431243, 0.849009900990099, 0.3875687568756876, 0.175, 0.44999999999999996, 0.6694306930693069, 0.4138888888888889, 0.575, 0.575, 0.25, 0.45, 0.7125},
			map[int64]float64{5: 0.1, 6: 0.800990099009901, 7: 0.49999999999999994, 9: 0.9999999999999998, 15: 0.36775577557755773, 18: 0.39999999999999997}},
		{Segm, [12]float64{0.431002671695741, 0.6526559798837026, 0.3875687568756876, 0.075, 0.24999999999999997, 0.5570544554455445, 0.34722222222222227, 0.4666666666666667, 0.4666666666666667, 0.1, 0.25, 0.6},
			map[int64]float64{5: 0.05, 6: 0.7514851485148515, 7: 0.49999999999999994, 9: 0.9999999999999998, 15: 0.2845308816595945, 18: 0.0}},
	}
	for _, tc := range tests {
		t.Run(tc.iouType.String(), func(t *testing.T) {
			e, s := evalFiles(t, labelmeCOCO, "testdata/labelme_results.json", tc.iouType)
			checkStats(t, s.Stats, tc.want)
			ap := e.PerCategoryAP()
			for cat, got := range ap {
				want, ok := tc.perCat[cat]
				if !ok {
					want = math.NaN()
				}
				if !(got == want || math.IsNaN(got) && math.IsNaN(want)) {
					t.Errorf("category %d AP %v, want %v", cat, got, want)
				}
			}
		})
	}
}

func TestEvaluatorShape(t *testing.T) {
	gt, err := LoadDataset("testdata/segm_tiny_gt.json")
	if err != nil {
		t.Fatal(err)
	}
	results, err := LoadResultsFile("testdata/segm_tiny_dt.json")
	if err != nil {
		t.Fatal(err)
	}
	ev := NewEvaluator(gt, Segm)
	ev.Process(Result{ImageID: 1, CategoryID: 1, Score: 1, Segmentation: results[0].Segmentation})
	ev.Reset()
	for _, r := range results { // one detection per batch
		ev.Process(r)
	}
	reports, err := ev.Evaluate()
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || reports[0].IoUType != Segm {
		t.Fatalf("reports %+v, want one segm report", reports)
	}
	m := reports[0].Metrics(gt.Categories)
	if got := m["AP"]; math.Abs(got-80.1980198019802) > 1e-9 {
		t.Errorf("AP %v, want 80.198", got)
	}
	if !math.IsNaN(m["APl"]) {
		t.Errorf("APl %v, want NaN", m["APl"])
	}
	if got := m["AP-thing"]; math.Abs(got-80.1980198019802) > 1e-9 {
		t.Errorf("AP-thing %v, want 80.198", got)
	}
	if !strings.HasPrefix(reports[0].Format(), "Evaluate annotation type *segm*\n Average Precision") {
		t.Errorf("format:\n%s", reports[0].Format())
	}

	// No detections at all: AP 0 where there is ground truth.
	ev.Reset()
	reports, err = NewEvaluator(gt, BBox).Evaluate()
	if err != nil {
		t.Fatal(err)
	}
	if got := reports[0].Summary.Stats.AP; got != 0 {
		t.Errorf("AP without detections %v, want 0", got)
	}
}

func TestSegmentationJSON(t *testing.T) {
	tests := []struct {
		json   string
		isRLE  bool
		counts []uint32 // decoded in a 4x4 image
	}{
		{`[[3,0,3,4,4,4,4,0]]`, false, []uint32{12, 4}},
		{`{"size":[4,4],"counts":[0,2,2,2,10]}`, true, []uint32{0, 2, 2, 2, 10}},
		{`{"size":[4,4],"counts":"02208"}`, true, []uint32{0, 2, 2, 2, 10}},
		{`[]`, false, []uint32{16}},
	}
	for _, tc := range tests {
		var s Segmentation
		if err := json.Unmarshal([]byte(tc.json), &s); err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if s.IsRLE() != tc.isRLE {
			t.Errorf("%s: IsRLE %v", tc.json, s.IsRLE())
		}
		r, err := s.ToRLE(4, 4)
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if !slices.Equal(r.Counts, tc.counts) {
			t.Errorf("%s: counts %v, want %v", tc.json, r.Counts, tc.counts)
		}
		back, err := json.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		if string(back) != tc.json {
			t.Errorf("marshalled %s, want %s", back, tc.json)
		}
	}
	for _, bad := range []string{`{"size":[4],"counts":"0"}`, `{"size":[4,4],"counts":3}`, `"x"`} {
		var s Segmentation
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestErrorsNameFileAndAnnotation(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noArea := write("noarea.json", `{"images":[{"id":1,"height":4,"width":4}],"categories":[{"id":1,"name":"a"}],
		"annotations":[{"id":7,"image_id":1,"category_id":1,"bbox":[0,0,1,1]}]}`)
	if _, err := LoadDataset(noArea); err == nil || !strings.Contains(err.Error(), noArea) || !strings.Contains(err.Error(), "id 7") {
		t.Errorf("missing area: error %v should name %s and annotation id 7", err, noArea)
	}
	badRLE := write("badrle.json", `{"images":[{"id":1,"height":4,"width":4}],"categories":[{"id":1,"name":"a"}],
		"annotations":[{"id":9,"image_id":1,"category_id":1,"area":1,"bbox":[0,0,1,1],"segmentation":{"size":[4,4],"counts":"02"}}]}`)
	gt, err := LoadDataset(badRLE)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := LoadRes(gt, []Result{{ImageID: 1, CategoryID: 1, Score: 1, BBox: []float64{0, 0, 1, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := NewCOCOeval(gt, dt, Segm).Evaluate(); err == nil || !strings.Contains(err.Error(), badRLE) || !strings.Contains(err.Error(), "id 9") {
		t.Errorf("bad RLE: error %v should name %s and annotation id 9", err, badRLE)
	}
	if _, err := LoadRes(gt, []Result{{ImageID: 5, CategoryID: 1, Score: 1, BBox: []float64{0, 0, 1, 1}}}); err == nil {
		t.Error("result on an unknown image: no error")
	}
	noScore := write("noscore.json", `[{"image_id":1,"category_id":1,"bbox":[0,0,1,1]}]`)
	if _, err := LoadResultsFile(noScore); err == nil || !strings.Contains(err.Error(), noScore) {
		t.Errorf("missing score: error %v should name %s", err, noScore)
	}
}

// TestDuplicateAnnotationIDsRejected: two ground-truth annotations with the same id (here on
// different images, each perfectly detected) would be evaluated by pycocotools as the later one
// twice; loading the file, or evaluating such a dataset built in memory, is an error naming
// the source and the id instead.
func TestDuplicateAnnotationIDsRejected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dup.json")
	doc := `{"images":[{"id":1,"height":10,"width":10},{"id":2,"height":10,"width":10}],
		"categories":[{"id":1,"name":"a"}],
		"annotations":[{"id":3,"image_id":1,"category_id":1,"area":4,"bbox":[0,0,2,2]},
		               {"id":5,"image_id":1,"category_id":1,"area":9,"bbox":[5,5,3,3]},
		               {"id":3,"image_id":2,"category_id":1,"area":16,"bbox":[1,1,4,4]}]}`
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadDataset(path)
	if err == nil {
		t.Fatal("two annotations with id 3: no error")
	}
	for _, want := range []string{path, "same id 3", "#0 and #2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should contain %q", err, want)
		}
	}

	gt := &Dataset{Source: "in-memory ground truth",
		Images:     []Image{{ID: 1, Height: 10, Width: 10}, {ID: 2, Height: 10, Width: 10}},
		Categories: []Category{{ID: 1, Name: "a"}},
		Annotations: []Annotation{
			{ID: 7, ImageID: 1, CategoryID: 1, Area: 4, BBox: []float64{0, 0, 2, 2}},
			{ID: 7, ImageID: 2, CategoryID: 1, Area: 16, BBox: []float64{1, 1, 4, 4}},
		}}
	dt, err := LoadRes(gt, []Result{
		{ImageID: 1, CategoryID: 1, Score: 0.9, BBox: []float64{0, 0, 2, 2}},
		{ImageID: 2, CategoryID: 1, Score: 0.8, BBox: []float64{1, 1, 4, 4}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = NewCOCOeval(gt, dt, BBox).Evaluate()
	if err == nil || !strings.Contains(err.Error(), "in-memory ground truth") || !strings.Contains(err.Error(), "same id 7") {
		t.Errorf("evaluating ground truth with id 7 twice: error %v, want one naming the source and id 7", err)
	}
	// With distinct ids the same data evaluates (AP 1: each box detected exactly).
	gt.Annotations[1].ID = 8
	e := NewCOCOeval(gt, dt, BBox)
	if err := e.Evaluate(); err != nil {
		t.Fatal(err)
	}
	e.Accumulate()
	if ap := e.Summarize().Stats.AP; ap != 1 {
		t.Errorf("AP %v with distinct ids, want 1", ap)
	}
}

// TestRandomCaseMatchesPycocotools covers what the hand-made cases do not reach at once:
// 15 images of varied sizes, 4 categories (one never used), polygon and uncompressed-RLE
// crowd ground truth, gt areas sometimes the box area instead of the mask's, near-duplicate
// detections, wrong classes, and scores rounded to 0.1 so that many tie.
// testdata/random_*.json were generated with numpy (seed 3) and scored by pycocotools.
func TestRandomCaseMatchesPycocotools(t *testing.T) {
	tests := []struct {
		iouType IoUType
		want    [12]float64 // pycocotools
		perCat  map[int64]float64
	}{
		{BBox, [12]float64{0.2948426497804291, 0.48344892758350055, 0.3101985198519852, 0.2174035480471124, 0.4202865991727377, 0.37623762376237624, 0.22614977614977613, 0.46452991452991443, 0.46452991452991443, 0.43690476190476185, 0.5238383838383839, 0.425},
			map[int64]float64{1: 0.3261363101773708, 2: 0.33492629262926293, 3: 0.22346534653465341, 7: math.NaN()}},
		{Segm, [12]float64{0.1536501660274419, 0.46996532986631995, 0.01683168316831683, 0.11063961203812687, 0.22098565625793348, 0.18836633663366337, 0.11058201058201059, 0.2616198616198616, 0.2616198616198616, 0.2619047619047619, 0.27454545454545454, 0.225},
			map[int64]float64{1: 0.18638335901547773, 2: 0.15842852520546172, 3: 0.11613861386138614, 7: math.NaN()}},
	}
	for _, tc := range tests {
		t.Run(tc.iouType.String(), func(t *testing.T) {
			e, s := evalFiles(t, "testdata/random_gt.json", "testdata/random_dt.json", tc.iouType)
			checkStats(t, s.Stats, tc.want)
			ap := e.PerCategoryAP()
			for cat, want := range tc.perCat {
				got := ap[cat]
				if !(got == want || math.IsNaN(got) && math.IsNaN(want)) {
					t.Errorf("category %d AP %v, want %v", cat, got, want)
				}
			}
		})
	}
}
