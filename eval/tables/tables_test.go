package tables

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestMarkdownAndCSVGolden(t *testing.T) {
	tab, err := PaperTable("convnext-coco")
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Add(Row{Method: "DT (ADM), 1 epoch", Values: map[string]float64{"COCO APbb": 12.345}, Source: Ours}); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add(Row{Method: "from scratch", Values: map[string]float64{"COCO APbb": math.NaN(), "COCO APmk": 3}}); err != nil {
		t.Fatal(err)
	}
	wantMD := `### ConvNeXt-B, COCO Cascade Mask R-CNN

| Method | COCO APbb | COCO APmk |
|---|---:|---:|
| Supervised IN-1k (paper) | 51.2 | 44.3 |
| SparK (paper) | 51.9 | 44.6 |
| DT (ADM) (paper) | 52.5 | 45.2 |
| DT (ADM), 1 epoch | 12.3 | - |
| from scratch | - | 3.0 |
`
	if got := tab.Markdown(); got != wantMD {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, wantMD)
	}
	wantCSV := `method,source,COCO APbb,COCO APmk
Supervised IN-1k,paper,51.2,44.3
SparK,paper,51.9,44.6
DT (ADM),paper,52.5,45.2
"DT (ADM), 1 epoch",ours,12.3,-
from scratch,ours,-,3.0
`
	if got := tab.CSV(); got != wantCSV {
		t.Errorf("csv:\n%s\nwant:\n%s", got, wantCSV)
	}
}

func TestPaperTablesCarryThePaperRows(t *testing.T) {
	tests := []struct {
		table, method, column string
		want                  float64 // PAPER.md, "Headline results"
	}{
		{"imagenet-r50", "DT (ADM)", "ADE20K mIoU", 42.5},
		{"imagenet-r50", "MoCo v2", "COCO 1x APmk", 36.4},
		{"imagenet-r50", "Supervised IN-1k", "BDD100K APmk", 20.2},
		{"convnext-coco", "SparK", "COCO APmk", 44.6},
		{"generators", "SD-1.4", "COCO APbb", 43.3},
		{"bdd100k", "DT (ADM)", "Pan PQ", 21.8},
		{"cityscapes-transfer", "DT", "100", 50.0},
		{"label-efficient", "DT-mix ConvNeXt-B", "Cat-15 (30)", 58.6},
		{"linear-probe", "BYOL", "Top-1", 71.7},
	}
	for _, tc := range tests {
		tab, err := PaperTable(tc.table)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range tab.Rows {
			if r.Method == tc.method {
				found = true
				if got := r.Values[tc.column]; got != tc.want || r.Source != Paper {
					t.Errorf("%s / %s / %s = %v (%s), want %v (paper)", tc.table, tc.method, tc.column, got, r.Source, tc.want)
				}
			}
		}
		if !found {
			t.Errorf("%s has no row %q", tc.table, tc.method)
		}
	}
	// SimCLR has no COCO numbers in the paper.
	tab, _ := PaperTable("imagenet-r50")
	if !strings.Contains(tab.Markdown(), "| SimCLR (paper) | 39.9 | - | - | 24.5 | 20.6 |") {
		t.Errorf("SimCLR row:\n%s", tab.Markdown())
	}
	if got := len(Names()); got != 7 {
		t.Errorf("%d paper tables, want 7", got)
	}
}

func TestErrors(t *testing.T) {
	if _, err := PaperTable("imagenet"); err == nil || !strings.Contains(err.Error(), "imagenet-r50") {
		t.Errorf("unknown table: error %v should list the known ones", err)
	}
	tab, _ := PaperTable("linear-probe")
	if err := tab.Add(Row{Method: "x", Values: map[string]float64{"top-1": 1}}); err == nil {
		t.Error("misspelt column: no error")
	}
	// Each call is a fresh copy.
	_ = tab.Add(Row{Method: "x", Values: map[string]float64{"Top-1": 1}})
	again, _ := PaperTable("linear-probe")
	if len(again.Rows) != 4 {
		t.Errorf("fresh table has %d rows, want 4", len(again.Rows))
	}
}

func ExampleTable_Markdown() {
	t, _ := PaperTable("cityscapes-transfer")
	_ = t.Add(Row{Method: "DT (ours, CamVid teacher)", Source: Ours,
		Values: map[string]float64{"2975": 71.25, "100": 44.0}})
	fmt.Print(t.Markdown())
	// Output:
	// ### BDD100K to Cityscapes transfer, UperNet mIoU by number of labelled images
	//
	// | Method | 2975 | 744 | 372 | 100 |
	// |---|---:|---:|---:|---:|
	// | From scratch (paper) | 70.9 | 41.8 | 40.7 | 36.7 |
	// | DT (paper) | 77.5 | 63.9 | 60.0 | 50.0 |
	// | DT (ours, CamVid teacher) | 71.2 | - | - | 44.0 |
}
