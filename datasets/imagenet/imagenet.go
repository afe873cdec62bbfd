// Package imagenet reads ImageNet-1k (ILSVRC2012 CLS-LOC) for classification, in the layouts
// it is commonly unpacked to:
//
//	root/                                   (or root/ILSVRC/Data/CLS-LOC/, the Kaggle archive)
//	  train/n01440764/n01440764_10026.JPEG ...    one folder per WordNet id (wnid)
//	  val/n01440764/ILSVRC2012_val_00000293.JPEG  val sorted into wnid folders, or
//	  val/ILSVRC2012_val_00000001.JPEG ...        val flat, labelled by LOC_val_solution.csv
//	  LOC_val_solution.csv                  "ImageId,PredictionString", the string starting
//	                                        with the wnid (in root or beside train/ and val/)
//	  LOC_synset_mapping.txt                optional "n01440764 tench, Tinca tinca" lines
//
// The class index is the position of the wnid among the sorted wnids (the torchvision
// ImageFolder convention): the wnid folders of train/ when present, else the synset mapping,
// else the wnids of the split itself. Classes returns the first human-readable name of each
// wnid when LOC_synset_mapping.txt is present, else the wnids. A validation image whose wnid
// is not a class, or a flat val folder without its csv, is an error.
//
// Registered as "imagenet"; splits "train" and "val".
package imagenet

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

func init() { datasets.Register("imagenet", Open) }

// Dataset is an ImageNet split: image paths with their class index.
type Dataset struct {
	name    string
	paths   []string
	labels  []int
	wnids   []string
	classes []string
}

var imageExts = []string{".jpeg", ".jpg", ".png"}

// Open reads split ("train" or "val") under root.
func Open(root, split string, opts datasets.Options) (datasets.Dataset, error) {
	if split != "train" && split != "val" {
		return nil, fmt.Errorf("imagenet: unknown split %q (want train or val)", split)
	}
	if err := datasets.CheckDir(root, "ImageNet"); err != nil {
		return nil, err
	}
	base := root
	if kaggle := filepath.Join(root, "ILSVRC", "Data", "CLS-LOC"); isDir(kaggle) && !isDir(filepath.Join(root, split)) {
		base = kaggle
	}
	names, err := readSynsets(root, base)
	if err != nil {
		return nil, err
	}
	// The class list: train's wnid folders, else the synset mapping.
	var wnids []string
	if trainDir := filepath.Join(base, "train"); isDir(trainDir) {
		if wnids, err = subdirs(trainDir); err != nil {
			return nil, err
		}
	} else if len(names) > 0 {
		for w := range names {
			wnids = append(wnids, w)
		}
		slices.Sort(wnids)
	}
	dir := filepath.Join(base, split)
	if err := datasets.CheckDir(dir, "ImageNet "+split+" images"); err != nil {
		return nil, err
	}
	splitWnids, err := subdirs(dir)
	if err != nil {
		return nil, err
	}
	d := &Dataset{name: "imagenet/" + split}
	if len(splitWnids) > 0 {
		if wnids == nil {
			wnids = splitWnids
		}
		if err := d.listFolders(dir, splitWnids, wnids); err != nil {
			return nil, err
		}
	} else {
		csvPath := ""
		for _, c := range []string{filepath.Join(root, "LOC_val_solution.csv"), filepath.Join(base, "LOC_val_solution.csv")} {
			if _, err := os.Stat(c); err == nil {
				csvPath = c
				break
			}
		}
		if csvPath == "" {
			return nil, fmt.Errorf("%s: flat ImageNet %s folder but no LOC_val_solution.csv in %s or %s (or sort the images into wnid folders)", dir, split, root, base)
		}
		if err := d.listFlat(dir, csvPath, &wnids); err != nil {
			return nil, err
		}
	}
	if len(d.paths) == 0 {
		return nil, fmt.Errorf("%s: no ImageNet images", dir)
	}
	d.wnids = wnids
	d.classes = make([]string, len(wnids))
	for i, w := range wnids {
		d.classes[i] = w
		if n, ok := names[w]; ok {
			d.classes[i] = n
		}
	}
	n := opts.LimitLen(len(d.paths))
	d.paths, d.labels = d.paths[:n], d.labels[:n]
	return d, nil
}

func (d *Dataset) listFolders(dir string, splitWnids, wnids []string) error {
	index := make(map[string]int, len(wnids))
	for i, w := range wnids {
		index[w] = i
	}
	files := make([][]string, len(splitWnids))
	errs := make([]error, len(splitWnids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // folder listing is I/O bound
	for _, w := range splitWnids {
		if _, ok := index[w]; !ok {
			return fmt.Errorf("%s: class folder %s is not among the %d training classes", filepath.Join(dir, w), w, len(wnids))
		}
	}
	for i, w := range splitWnids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			files[i], errs[i] = datasets.ListFiles(filepath.Join(dir, w), imageExts, "ImageNet images of "+w)
		}()
	}
	wg.Wait()
	for i, w := range splitWnids {
		if errs[i] != nil {
			return errs[i]
		}
		for _, p := range files[i] {
			d.paths = append(d.paths, p)
			d.labels = append(d.labels, index[w])
		}
	}
	return nil
}

func (d *Dataset) listFlat(dir, csvPath string, wnids *[]string) error {
	f, err := os.Open(csvPath)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = 2
	label := map[string]string{}
	for line := 1; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", csvPath, err)
		}
		if line == 1 && rec[0] == "ImageId" {
			continue
		}
		fields := strings.Fields(rec[1])
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "n") {
			return fmt.Errorf("%s:%d: PredictionString %q does not start with a wnid", csvPath, line, rec[1])
		}
		label[rec[0]] = fields[0]
	}
	files, err := datasets.ListFiles(dir, imageExts, "ImageNet validation images")
	if err != nil {
		return err
	}
	if *wnids == nil {
		set := map[string]bool{}
		for _, w := range label {
			set[w] = true
		}
		for w := range set {
			*wnids = append(*wnids, w)
		}
		slices.Sort(*wnids)
	}
	index := make(map[string]int, len(*wnids))
	for i, w := range *wnids {
		index[w] = i
	}
	for _, p := range files {
		w, ok := label[datasets.Stem(p)]
		if !ok {
			return fmt.Errorf("%s: no label in %s", p, csvPath)
		}
		c, ok := index[w]
		if !ok {
			return fmt.Errorf("%s: wnid %s (from %s) is not among the %d classes", p, w, csvPath, len(*wnids))
		}
		d.paths = append(d.paths, p)
		d.labels = append(d.labels, c)
	}
	return nil
}

// readSynsets reads LOC_synset_mapping.txt if present: wnid -> first name.
func readSynsets(root, base string) (map[string]string, error) {
	for _, p := range []string{filepath.Join(root, "LOC_synset_mapping.txt"), filepath.Join(base, "LOC_synset_mapping.txt")} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		defer f.Close()
		names := map[string]string{}
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			w, rest, _ := strings.Cut(line, " ")
			if !strings.HasPrefix(w, "n") {
				return nil, fmt.Errorf("%s:%d: want \"wnid name, ...\", got %q", p, n, line)
			}
			name, _, _ := strings.Cut(rest, ",")
			names[w] = strings.TrimSpace(name)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return names, nil
	}
	return nil, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// subdirs lists the sub-folders of dir, sorted (hidden ones skipped).
func subdirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// Name implements datasets.Dataset.
func (d *Dataset) Name() string { return d.name }

// Len implements datasets.Dataset.
func (d *Dataset) Len() int { return len(d.paths) }

// Classes implements datasets.Dataset.
func (d *Dataset) Classes() []string { return d.classes }

// WNIDs are the WordNet ids of the classes, by class index.
func (d *Dataset) WNIDs() []string { return d.wnids }

// Path implements datasets.Pather.
func (d *Dataset) Path(i int) string { return d.paths[i] }

// Get implements datasets.Dataset.
func (d *Dataset) Get(i int) (datasets.Sample, error) {
	s := datasets.Sample{Path: d.paths[i], Label: d.labels[i]}
	img, err := datasets.ReadImage(d.paths[i])
	s.Image = img
	return s, err
}
