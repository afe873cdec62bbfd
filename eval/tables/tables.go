// Package tables prints the DreamTeacher paper's benchmark tables as Markdown and CSV, with
// the paper's published rows (marked "(paper)") and the rows we measure added beside them.
//
//	t, _ := tables.PaperTable("imagenet-r50")
//	_ = t.Add(tables.Row{Method: "DT (ADM)", Source: tables.Ours,
//		Values: map[string]float64{"ADE20K mIoU": 41.7}})
//	fmt.Print(t.Markdown())
//
// Values are in the paper's units (percentage points); a value a row lacks, or NaN, prints "-".
package tables

import (
	"encoding/csv"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Source says where a row's numbers come from.
type Source string

const (
	Paper Source = "paper" // published in the DreamTeacher paper
	Ours  Source = "ours"  // measured by this project
)

// Row is one method's numbers, keyed by column name.
type Row struct {
	Method string
	Values map[string]float64
	Source Source
}

// Table is one benchmark table.
type Table struct {
	Name     string // registry name, e.g. "imagenet-r50"
	Title    string
	Columns  []string
	Decimals int // digits after the point (the paper uses 1)
	Rows     []Row
}

// Add appends a row. Values for columns the table does not have are an error (a typo would
// otherwise silently print "-"); a row without a source counts as ours.
func (t *Table) Add(r Row) error {
	for col := range r.Values {
		if !slices.Contains(t.Columns, col) {
			return fmt.Errorf("tables: %q has no column %q (columns: %s)", t.Name, col, strings.Join(t.Columns, ", "))
		}
	}
	if r.Source == "" {
		r.Source = Ours
	}
	t.Rows = append(t.Rows, r)
	return nil
}

// cell formats one value, "-" when missing or NaN.
func (t *Table) cell(r Row, col string) string {
	v, ok := r.Values[col]
	if !ok || math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', t.Decimals, 64)
}

// label is the row's method name as printed: paper rows end in " (paper)".
func (r Row) label() string {
	if r.Source == Paper {
		return r.Method + " (paper)"
	}
	return r.Method
}

// Markdown is the table under a "### Title" heading.
func (t *Table) Markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "### %s\n\n", t.Title)
	sb.WriteString("| Method | " + strings.Join(t.Columns, " | ") + " |\n")
	sb.WriteString("|---" + strings.Repeat("|---:", len(t.Columns)) + "|\n")
	for _, r := range t.Rows {
		cells := []string{escape(r.label())}
		for _, col := range t.Columns {
			cells = append(cells, t.cell(r, col))
		}
		sb.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return sb.String()
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// CSV is the table with a header line: method, source, then the columns.
func (t *Table) CSV() string {
	var sb strings.Builder
	w := csv.NewWriter(&sb)
	_ = w.Write(append([]string{"method", "source"}, t.Columns...))
	for _, r := range t.Rows {
		rec := []string{r.Method, string(r.Source)}
		for _, col := range t.Columns {
			rec = append(rec, t.cell(r, col))
		}
		_ = w.Write(rec)
	}
	w.Flush()
	return sb.String()
}

// paperRow builds a paper row from values in column order; NaN marks a value the paper
// does not report.
func paperRow(method string, columns []string, values ...float64) Row {
	if len(values) != len(columns) {
		panic(fmt.Sprintf("tables: %d values for %d columns in row %q", len(values), len(columns), method))
	}
	m := make(map[string]float64, len(values))
	for i, v := range values {
		if !math.IsNaN(v) {
			m[columns[i]] = v
		}
	}
	return Row{Method: method, Values: m, Source: Paper}
}

var none = math.NaN()

// paperTables builds the paper's tables (PAPER.md, "Headline results").
func paperTables() []*Table {
	var out []*Table
	add := func(name, title string, columns []string, rows ...[]any) {
		t := &Table{Name: name, Title: title, Columns: columns, Decimals: 1}
		for _, r := range rows {
			vals := make([]float64, len(r)-1)
			for i, v := range r[1:] {
				vals[i] = v.(float64)
			}
			t.Rows = append(t.Rows, paperRow(r[0].(string), columns, vals...))
		}
		out = append(out, t)
	}
	add("imagenet-r50", "ResNet-50 pre-trained on ImageNet-1k without labels",
		[]string{"ADE20K mIoU", "COCO 1x APbb", "COCO 1x APmk", "BDD100K APbb", "BDD100K APmk"},
		[]any{"Supervised IN-1k", 40.9, 38.9, 35.4, 26.1, 20.2},
		[]any{"SimCLR", 39.9, none, none, 24.5, 20.6},
		[]any{"MoCo v2", 40.9, 40.4, 36.4, 26.9, 22.9},
		[]any{"BYOL", 41.6, 40.4, 37.2, 26.2, 22.6},
		[]any{"SparK", 40.5, 41.6, 37.7, 25.7, 22.4},
		[]any{"DT (ADM)", 42.5, 44.1, 40.1, 28.3, 24.8},
	)
	add("convnext-coco", "ConvNeXt-B, COCO Cascade Mask R-CNN",
		[]string{"COCO APbb", "COCO APmk"},
		[]any{"Supervised IN-1k", 51.2, 44.3},
		[]any{"SparK", 51.9, 44.6},
		[]any{"DT (ADM)", 52.5, 45.2},
	)
	add("generators", "Choice of generative teacher (ResNet-50)",
		[]string{"ADE20K mIoU", "COCO APbb", "COCO APmk"},
		[]any{"BigGAN", 40.8, 40.7, 36.9},
		[]any{"ICGAN", 41.2, 40.0, 36.5},
		[]any{"SD-1.4", 41.4, 43.3, 39.4},
		[]any{"ADM", 42.5, 44.1, 40.1},
	)
	add("bdd100k", "In-domain pre-training on BDD100K (70k unlabeled images, ResNet-50)",
		[]string{"Inst APbb", "Inst APmk", "Sem mIoU", "Pan PQ"},
		[]any{"IN supervised", 26.1, 20.2, 61.1, 22.4},
		[]any{"BYOL", 23.9, 20.0, 58.4, 20.9},
		[]any{"SparK", 24.4, 20.6, 56.9, 20.2},
		[]any{"DT (ADM)", 26.7, 22.9, 60.3, 21.8},
	)
	add("cityscapes-transfer", "BDD100K to Cityscapes transfer, UperNet mIoU by number of labelled images",
		[]string{"2975", "744", "372", "100"},
		[]any{"From scratch", 70.9, 41.8, 40.7, 36.7},
		[]any{"DT", 77.5, 63.9, 60.0, 50.0},
	)
	add("label-efficient", "Label-efficient semantic segmentation, mIoU (labelled images)",
		[]string{"Bedroom-28 (40)", "FFHQ-34 (20)", "Cat-15 (30)", "Horse-21 (30)"},
		[]any{"DDPM-seg", 49.4, 59.1, 53.7, 65.0},
		[]any{"DT-mix RN101", 49.9, 59.4, 56.7, 65.9},
		[]any{"DT-mix ConvNeXt-B", 54.8, 61.2, 58.6, 67.6},
	)
	add("linear-probe", "ImageNet linear probe (ResNet-50)",
		[]string{"Top-1"},
		[]any{"DT (ADM)", 63.9},
		[]any{"BYOL", 71.7},
		[]any{"SparK", 54.1},
		[]any{"Supervised IN-1k", 79.3},
	)
	return out
}

// Names lists the paper tables in the paper's order.
func Names() []string {
	var out []string
	for _, t := range paperTables() {
		out = append(out, t.Name)
	}
	return out
}

// PaperTable is a fresh copy of the named paper table holding the paper's rows; an unknown
// name is an error listing the known ones.
func PaperTable(name string) (*Table, error) {
	for _, t := range paperTables() {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, fmt.Errorf("tables: no paper table %q (known: %s)", name, strings.Join(Names(), ", "))
}
