package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/train"
)

// resultsLayoutHelp documents `eval --results --layout`, and how the paper layout names a run's
// pre-training.
const resultsLayoutHelp = `table layout of --results: runs (one row per run, then per-class IoU), ` +
	`paper (fine-tuning runs that differ only by seed grouped as mean ± sample std over seeds, n runs; a table per dataset, task and metric, ` +
	`rows the backbone's pre-training, columns the number of labelled images; with a random row, then each other row's difference from it paired by seed), or auto (paper when some runs differ only by seed, else runs). ` +
	`The pre-training of a run: init=random is random; an init checkpoint (or run folder) that records its command names it: ` +
	`distill is dt (mode feature), dt-mixed or dt-label, pretrain-ssl its method (mocov2, byol), weights from convert are supervised; ` +
	`when the checkpoint is not here or records neither, the run folder's name <init>-<labels>-s<seed> gives <init>, else the init folder's name`

// runResult is one run's result.json.
type runResult struct {
	name     string // the run folder's name
	path     string // its result.json
	r        map[string]any
	settings map[string]any
}

// loadResults reads the result.json of each entry: a run folder, a result.json file, or a glob
// pattern of them, whose matches without a result.json (a teacher's sample folder) are left
// out. A named run without one is a usage error.
func loadResults(entries []string) ([]runResult, error) {
	var runs []runResult
	for _, entry := range entries {
		paths := []string{entry}
		if strings.ContainsAny(entry, "*?[") {
			matches, err := filepath.Glob(entry)
			if err != nil {
				return nil, usagef("--results: pattern %q: %v", entry, err)
			}
			paths = paths[:0]
			for _, m := range matches {
				if _, err := os.Stat(resultFile(m)); err == nil {
					paths = append(paths, m)
				}
			}
			if len(paths) == 0 {
				return nil, usagef("--results: no run folder with a result.json matches %s", entry)
			}
		}
		for _, p := range paths {
			p = resultFile(p)
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, usagef("--results: %v", err)
			}
			var r map[string]any
			if err := json.Unmarshal(data, &r); err != nil {
				return nil, fmt.Errorf("%s: %v", p, err)
			}
			settings, _ := r["settings"].(map[string]any)
			runs = append(runs, runResult{name: filepath.Base(filepath.Dir(p)), path: p, r: r, settings: settings})
		}
	}
	return runs, nil
}

// resultsTable prints the result.json of runs in a layout (resultsLayoutHelp).
func resultsTable(entries []string, layout string) error {
	runs, err := loadResults(entries)
	if err != nil {
		return err
	}
	switch layout {
	case "runs":
		runsTable(runs)
		return nil
	case "paper":
		tables, err := seedTables(runs)
		if err != nil {
			return err
		}
		if len(tables) == 0 {
			return usagef("--layout paper: none of the runs is a fine-tuning run (finetune --task semseg or instseg)")
		}
		printSeedTables(tables)
		return nil
	case "auto":
		if tables, err := seedTables(runs); err == nil && repeatsSeeds(tables) {
			printSeedTables(tables)
		} else {
			runsTable(runs)
		}
		return nil
	default:
		return usagef("--layout: want runs, paper or auto, got %q", layout)
	}
}

// runsTable prints the result.json of runs side by side, then the per-class IoU of the
// semantic segmentation runs among them.
func runsTable(runs []runResult) {
	cell := func(v any) string {
		if f, ok := v.(float64); ok {
			return fmt.Sprintf("%.1f", f)
		}
		return "-"
	}
	fmt.Fprintln(stdout, "| run | task | backbone | init | seed | labelled images | mIoU | APbb | APmk | train time |")
	fmt.Fprintln(stdout, "|---|---|---|---|---:|---:|---:|---:|---:|---:|")
	for _, x := range runs {
		init := fmt.Sprint(x.settings["init"])
		if init != "random" {
			init = "distilled (" + filepath.Base(filepath.Dir(init)) + ")"
		}
		secs, _ := x.r["train_seconds"].(float64)
		fmt.Fprintf(stdout, "| %s | %v | %v | %s | %v | %v | %s | %s | %s | %s |\n", x.name, x.r["task"], x.settings["backbone"],
			init, x.settings["seed"], x.r["labeled_images"], cell(x.r["mIoU"]), cell(x.r["APbb"]), cell(x.r["APmk"]),
			time.Duration(secs*float64(time.Second)).Round(time.Second))
	}

	// Per-class IoU, in the dataset's class order (sorted names for results that lack it).
	var classes []string
	var semseg []runResult
	for _, x := range runs {
		perClass, ok := x.r["per_class_iou"].(map[string]any)
		if !ok {
			continue
		}
		semseg = append(semseg, x)
		if names, ok := x.r["classes"].([]any); ok && classes == nil {
			for _, n := range names {
				classes = append(classes, fmt.Sprint(n))
			}
		}
		if classes == nil {
			classes = slices.Sorted(maps.Keys(perClass))
		}
	}
	if len(semseg) == 0 {
		return
	}
	fmt.Fprintf(stdout, "\n| run | %s |\n|---|%s\n", strings.Join(classes, " | "), strings.Repeat("---:|", len(classes)))
	for _, x := range semseg {
		perClass := x.r["per_class_iou"].(map[string]any)
		cells := make([]string, len(classes))
		for i, c := range classes {
			cells[i] = cell(perClass[c])
		}
		fmt.Fprintf(stdout, "| %s | %s |\n", x.name, strings.Join(cells, " | "))
	}
}

// seedTable holds the fine-tuning runs of one dataset and task by (pre-training, labels).
type seedTable struct {
	dataset, task string
	metrics       []string
	cells         map[seedCell][]runResult
	from          map[string]string // how each method was found
}

type seedCell struct {
	method string
	labels int
}

// notDefining reports whether runs of one cell may differ in setting k: the seed, what the row
// and column summarise (init, init_scope, label_fraction, label_count), and what a resumed run
// may change (resumable) except its length: where the data lie, the workers, the logging, ...
func notDefining(k string) bool {
	switch k {
	case "seed", "init", "init_scope", "label_fraction", "label_count":
		return true
	case "steps", "epochs":
		return false
	}
	return resumable[k]
}

// seedTables groups the fine-tuning runs (task semseg or instseg; others are left out) into
// tables. Two runs of one cell must differ only by seed: another difference, or the same seed
// twice, is an error naming both runs.
func seedTables(runs []runResult) ([]*seedTable, error) {
	byKey := map[string]*seedTable{}
	var tables []*seedTable
	for _, x := range runs {
		task, _ := x.r["task"].(string)
		metrics := map[string][]string{"semseg": {"mIoU"}, "instseg": {"APbb", "APmk"}}[task]
		if metrics == nil {
			continue
		}
		dataset := fmt.Sprint(x.settings["dataset"])
		key := dataset + "\x00" + task
		t := byKey[key]
		if t == nil {
			t = &seedTable{dataset: dataset, task: task, metrics: metrics, cells: map[seedCell][]runResult{}, from: map[string]string{}}
			byKey[key] = t
			tables = append(tables, t)
		}
		method, from := initMethod(x)
		labels, ok := x.r["labeled_images"].(float64)
		if !ok {
			return nil, fmt.Errorf("%s: no labeled_images (the number of labelled images the run fine-tuned on)", x.path)
		}
		if _, ok := runSeed(x); !ok {
			return nil, fmt.Errorf("%s: no seed setting, and the run folder's name is not <init>-<labels>-s<seed>", x.path)
		}
		c := seedCell{method, int(labels)}
		for _, y := range t.cells[c] {
			if err := sameButSeed(x, y); err != nil {
				return nil, err
			}
		}
		t.cells[c] = append(t.cells[c], x)
		if _, seen := t.from[method]; !seen {
			t.from[method] = from
		}
	}
	return tables, nil
}

// sameButSeed says how runs x and y of one cell differ otherwise than by seed, if they do.
func sameButSeed(x, y runResult) error {
	sx, _ := runSeed(x)
	sy, _ := runSeed(y)
	for _, k := range slices.Sorted(maps.Keys(x.settings)) {
		if notDefining(k) {
			continue
		}
		if a, b := x.settings[k], y.settings[k]; !reflect.DeepEqual(a, b) {
			return usagef("--results: %s and %s fine-tune the same pre-training on as many labels but differ in %s (%v and %v), "+
				"not only by seed: give them to separate eval --results", y.path, x.path, k, b, a)
		}
	}
	if sx == sy {
		return usagef("--results: %s and %s are the same experiment with the same seed %d", y.path, x.path, sx)
	}
	return nil
}

// runFolderName is issue 11's naming of fine-tuning runs: <init>-<labels>-s<seed>.
var runFolderName = regexp.MustCompile(`^(.+)-([0-9.]+)-s([0-9]+)$`)

// runSeed is the run's seed setting, else the seed of its folder's name.
func runSeed(x runResult) (int, bool) {
	if s, ok := x.settings["seed"].(float64); ok {
		return int(s), true
	}
	if m := runFolderName.FindStringSubmatch(x.name); m != nil {
		s, err := strconv.Atoi(m[3])
		return s, err == nil
	}
	return 0, false
}

// initMethod names the pre-training of a fine-tuning run's backbone (see resultsLayoutHelp) and
// says what it was read from.
func initMethod(x runResult) (method, from string) {
	init, _ := x.settings["init"].(string)
	if init == "random" {
		return "random", "init=random"
	}
	if init != "" {
		path, err := checkpointPath("init", init)
		var settings map[string]any
		if err == nil {
			settings, err = train.ReadSettings(path)
		}
		if err == nil {
			command, _ := settings[strings.TrimPrefix(commandParam, "/")].(string)
			switch {
			case command == "distill":
				mode, _ := settings["mode"].(string)
				name := map[string]string{"feature": "dt", "mixed": "dt-mixed", "label": "dt-label"}[mode]
				if name == "" {
					name = "dt"
				}
				return name, fmt.Sprintf("the init checkpoint's command: distill, mode %s", mode)
			case command == "pretrain-ssl":
				method, _ := settings["ssl_method"].(string)
				if method == "" {
					method, _ = settings["method"].(string)
				}
				if method != "" {
					return method, "the init checkpoint's command: pretrain-ssl, method " + method
				}
			case command == "" && settings["convert_source"] != nil:
				return "supervised", fmt.Sprintf("the init checkpoint was converted from %v", settings["convert_source"])
			}
		}
	}
	if m := runFolderName.FindStringSubmatch(x.name); m != nil {
		return m[1], "the run folders' names (<init>-<labels>-s<seed>)"
	}
	if init == "" {
		return "?", "no init setting"
	}
	return filepath.Base(filepath.Dir(init)), "the init checkpoint's folder name"
}

// repeatsSeeds reports whether some cell holds more than one run.
func repeatsSeeds(tables []*seedTable) bool {
	for _, t := range tables {
		for _, runs := range t.cells {
			if len(runs) > 1 {
				return true
			}
		}
	}
	return false
}

// methodOrder is the order of the paper's rows; other methods follow, sorted.
var methodOrder = []string{"random", "supervised", "mocov2", "byol", "dt", "dt-label", "dt-mixed"}

// printSeedTables prints each table and metric: rows the pre-training, columns the labelled
// images, cells mean ± sample std (n runs), then which runs each row holds and how its
// pre-training was named.
func printSeedTables(tables []*seedTable) {
	for i, t := range tables {
		var methods []string
		var labels []int
		for c := range t.cells {
			if !slices.Contains(methods, c.method) {
				methods = append(methods, c.method)
			}
			if !slices.Contains(labels, c.labels) {
				labels = append(labels, c.labels)
			}
		}
		sort.Ints(labels)
		sort.Slice(methods, func(a, b int) bool {
			ia, ib := slices.Index(methodOrder, methods[a]), slices.Index(methodOrder, methods[b])
			if ia < 0 {
				ia = len(methodOrder)
			}
			if ib < 0 {
				ib = len(methodOrder)
			}
			if ia != ib {
				return ia < ib
			}
			return methods[a] < methods[b]
		})
		for j, metric := range t.metrics {
			if i+j > 0 {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "%s, %s: %s, mean ± sample std over seeds (n runs)\n\n", t.dataset, t.task, metric)
			printLabelsHead(labels)
			for _, m := range methods {
				cells := make([]string, len(labels))
				for k, l := range labels {
					var values []float64
					for _, x := range t.cells[seedCell{m, l}] {
						if v, ok := x.r[metric].(float64); ok {
							values = append(values, v)
						}
					}
					cells[k] = meanStdCell(values)
				}
				fmt.Fprintf(stdout, "| %s | %s |\n", m, strings.Join(cells, " | "))
			}
			printPairedDifferences(t, metric, methods, labels)
		}
		fmt.Fprintln(stdout)
		for _, m := range methods {
			var names []string
			for _, l := range labels {
				for _, x := range t.cells[seedCell{m, l}] {
					names = append(names, x.name)
				}
			}
			fmt.Fprintf(stdout, "- %s (from %s): %s\n", m, t.from[m], strings.Join(names, ", "))
		}
	}
}

// printPairedDifferences prints, when the table has a random row, each other row's difference
// from it paired by seed: a seed fixes the labelled subset, the data order and the head's
// initialisation, and the subset alone moves mIoU by several points on CamVid (docs/RESULTS.md),
// so the spread of the paired differences is what says whether a pre-training helps, not the
// spread of the two means.
func printPairedDifferences(t *seedTable, metric string, methods []string, labels []int) {
	if !slices.Contains(methods, "random") || len(methods) < 2 {
		return
	}
	// random[k]: random init's metric by seed, with labels[k] labelled images.
	random := make([]map[int]float64, len(labels))
	for k, l := range labels {
		random[k] = map[int]float64{}
		for _, x := range t.cells[seedCell{"random", l}] {
			s, _ := runSeed(x)
			if v, ok := x.r[metric].(float64); ok {
				random[k][s] = v
			}
		}
	}
	fmt.Fprintf(stdout, "\n%s minus random's, paired by seed (the same labelled images, data order and head initialisation): "+
		"mean ± sample std over the seeds both rows have (n pairs)\n\n", metric)
	printLabelsHead(labels)
	for _, m := range methods {
		if m == "random" {
			continue
		}
		cells := make([]string, len(labels))
		for k, l := range labels {
			var diffs []float64
			for _, x := range t.cells[seedCell{m, l}] {
				s, _ := runSeed(x)
				v, ok := x.r[metric].(float64)
				if b, paired := random[k][s]; ok && paired {
					diffs = append(diffs, v-b)
				}
			}
			cells[k] = signed(meanStdCell(diffs))
		}
		fmt.Fprintf(stdout, "| %s | %s |\n", m, strings.Join(cells, " | "))
	}
}

// printLabelsHead prints the head of a paper-layout table: rows the pre-training, columns the
// numbers of labelled images.
func printLabelsHead(labels []int) {
	head := make([]string, len(labels))
	for k, l := range labels {
		head[k] = strconv.Itoa(l)
	}
	fmt.Fprintf(stdout, "| pre-training \\ labelled images | %s |\n|---|%s\n", strings.Join(head, " | "), strings.Repeat("---:|", len(labels)))
}

// signed writes a "+" before a cell that starts with a positive number.
func signed(cell string) string {
	if cell != "-" && !strings.HasPrefix(cell, "-") {
		return "+" + cell
	}
	return cell
}

// meanStdCell formats values as "mean ± std (n=N)", std the sample standard deviation (n-1);
// one value is "v (n=1)", none "-".
func meanStdCell(values []float64) string {
	n := len(values)
	if n == 0 {
		return "-"
	}
	mean, std := meanStd(values)
	if n == 1 {
		return fmt.Sprintf("%.2f (n=1)", mean)
	}
	return fmt.Sprintf("%.2f ± %.2f (n=%d)", mean, std, n)
}

// meanStd returns the mean and the sample standard deviation (NaN for one value).
func meanStd(values []float64) (mean, std float64) {
	for _, v := range values {
		mean += v
	}
	mean /= float64(len(values))
	if len(values) < 2 {
		return mean, math.NaN()
	}
	var ss float64
	for _, v := range values {
		ss += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(ss / float64(len(values)-1))
}
