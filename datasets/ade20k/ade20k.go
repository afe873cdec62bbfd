// Package ade20k reads the ADE20K scene parsing benchmark (SceneParse150,
// ADEChallengeData2016.zip) as it unpacks:
//
//	root/                         (or root/ADEChallengeData2016/)
//	  images/training/ADE_train_00000001.jpg ...     annotations/training/ADE_train_00000001.png ...
//	  images/validation/ADE_val_00000001.jpg ...     annotations/validation/ADE_val_00000001.png ...
//	  objectInfo150.txt           (optional: Idx, Ratio, Train, Val, Name; tab separated)
//
// Annotations are 8-bit grayscale PNGs with values 0..150, where 0 is "other objects", which
// the benchmark does not evaluate. As in mmsegmentation (reduce_zero_label=True) the loader
// maps 0 to 255 (ignore) and v to v-1, giving classes 0..149; values above the class count are
// an error naming the file. Options.KeepZeroLabel keeps the raw values (0 = class "other").
//
// Class names come from objectInfo150.txt when the folder has one (its first name per line;
// the synthetic scenes dataset writes its own), else the built-in 150 names of mmsegmentation.
// Registered as "ade20k"; splits "train"/"training" and "val"/"validation".
package ade20k

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

func init() { datasets.Register("ade20k", Open) }

// Folder is the name of the unpacked challenge folder.
const Folder = "ADEChallengeData2016"

// Open reads split of the ADE20K challenge data under root.
func Open(root, split string, opts datasets.Options) (datasets.Dataset, error) {
	var sub string
	switch split {
	case "train", "training":
		sub = "training"
	case "val", "validation":
		sub = "validation"
	default:
		return nil, fmt.Errorf("ade20k: unknown split %q (want train or val)", split)
	}
	if err := datasets.CheckDir(root, "ADE20K ("+Folder+")"); err != nil {
		return nil, err
	}
	if st, err := os.Stat(filepath.Join(root, Folder)); err == nil && st.IsDir() {
		root = filepath.Join(root, Folder)
	}
	imgDir := filepath.Join(root, "images", sub)
	annDir := filepath.Join(root, "annotations", sub)
	imgs, err := datasets.ListFiles(imgDir, datasets.ImageExts, "ADE20K "+sub+" images")
	if err != nil {
		return nil, err
	}
	anns, err := datasets.ListFiles(annDir, []string{".png"}, "ADE20K "+sub+" annotations")
	if err != nil {
		return nil, err
	}
	pairs, err := datasets.PairByStem(imgs, anns, annDir, ".png")
	if err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%s: no ADE20K images", imgDir)
	}
	names := Classes
	info := filepath.Join(root, "objectInfo150.txt")
	if _, err := os.Stat(info); err == nil {
		if names, err = ReadObjectInfo(info); err != nil {
			return nil, err
		}
	}
	k := len(names)
	var labels datasets.LabelMap
	for v := range labels {
		labels[v] = -1
	}
	if opts.KeepZeroLabel {
		names = append([]string{"other"}, names...)
		for v := 0; v <= k; v++ {
			labels[v] = int16(v)
		}
	} else {
		labels[0] = datasets.IgnoreLabel
		for v := 1; v <= k; v++ {
			labels[v] = int16(v - 1)
		}
	}
	labels[datasets.IgnoreLabel] = datasets.IgnoreLabel
	return &datasets.SegPairs{
		DatasetName: "ade20k/" + sub,
		Pairs:       pairs[:opts.LimitLen(len(pairs))],
		Labels:      labels,
		ClassNames:  names,
	}, nil
}

// ReadObjectInfo reads the class names of objectInfo150.txt (tab-separated Idx, Ratio, Train,
// Val, Name with a header line; the CSV variant of the devkit is read too). The first of the
// comma-separated synonyms is kept; indices must run 1..K.
func ReadObjectInfo(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r\n")
		if n == 1 || strings.TrimSpace(line) == "" {
			continue // header
		}
		sep := "\t"
		if !strings.Contains(line, "\t") {
			sep = ","
		}
		fields := strings.SplitN(line, sep, 5)
		if len(fields) != 5 {
			return nil, fmt.Errorf("%s:%d: want 5 fields Idx, Ratio, Train, Val, Name, got %q", path, n, line)
		}
		idx, err := strconv.Atoi(strings.TrimSpace(fields[0]))
		if err != nil || idx != len(names)+1 {
			return nil, fmt.Errorf("%s:%d: index %q, want %d", path, n, fields[0], len(names)+1)
		}
		name := strings.Trim(fields[4], "\" ")
		if sep == "\t" {
			name, _, _ = strings.Cut(name, ",")
		} else {
			name, _, _ = strings.Cut(name, ";")
		}
		names = append(names, strings.TrimSpace(name))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(names) == 0 || len(names) > 254 {
		return nil, fmt.Errorf("%s: %d classes, want 1..254", path, len(names))
	}
	return names, nil
}

// WriteObjectInfo writes class names in the objectInfo150.txt format (ratios and counts 0).
func WriteObjectInfo(path string, names []string) error {
	var b strings.Builder
	b.WriteString("Idx\tRatio\tTrain\tVal\tName\n")
	for i, n := range names {
		fmt.Fprintf(&b, "%d\t0\t0\t0\t%s\n", i+1, n)
	}
	return datasets.WriteFile(path, []byte(b.String()))
}

// Classes are the 150 ADE20K class names of mmsegmentation, by class index (label value - 1).
var Classes = []string{
	"wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
	"cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
	"chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
	"field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
	"railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
	"sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
	"runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
	"bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
	"countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
	"arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
	"streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
	"land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van",
	"ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
	"stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
	"ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
	"dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
	"tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
	"radiator", "glass", "clock", "flag",
}
