// Package imagefolder reads a plain folder tree of images, without labels: every .jpg, .jpeg
// and .png file under the root, recursively (hidden files and folders skipped), in sorted path
// order. It is the unlabeled source for teacher pre-training and distillation.
//
// Layout:
//
//	root/
//	  a.jpg
//	  any/depth/b.png
//
// Registered as "imagefolder"; the split argument names an optional sub-folder of root ("" or
// "." for root itself). FromList reads the images a list file names instead.
package imagefolder

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

func init() { datasets.Register("imagefolder", Open) }

// Dataset is a list of image files; samples have Label -1.
type Dataset struct {
	name  string
	paths []string
}

// Open lists the images under root/split.
func Open(root, split string, opts datasets.Options) (datasets.Dataset, error) {
	dir := root
	if split != "" && split != "." {
		dir = filepath.Join(root, split)
	}
	paths, err := datasets.WalkFiles(dir, datasets.ImageExts, "images")
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no .jpg, .jpeg or .png images found", dir)
	}
	return &Dataset{name: "imagefolder/" + filepath.Base(dir), paths: paths[:opts.LimitLen(len(paths))]}, nil
}

// FromList makes a dataset of the images a list file names, one per line in the order written:
// the line's first field (any further field, such as the label of a CamVid "image label" line,
// is ignored; blank lines and lines starting with # are skipped). Entries are found as
// datasets.FindListed does, against the list's folder and the folder named like the list
// (CamVid's test.txt: root/test/).
func FromList(list string) (*Dataset, error) {
	f, err := os.Open(list)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	root := filepath.Dir(list)
	dir := filepath.Join(root, datasets.Stem(list))
	var paths []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, err := datasets.FindListed(strings.Fields(line)[0], root, dir)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", list, n, err)
		}
		paths = append(paths, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", list, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no images listed", list)
	}
	return New("imagefolder/"+filepath.Base(list), paths), nil
}

// New makes a dataset of the given image files.
func New(name string, paths []string) *Dataset { return &Dataset{name: name, paths: paths} }

// Name implements datasets.Dataset.
func (d *Dataset) Name() string { return d.name }

// Len implements datasets.Dataset.
func (d *Dataset) Len() int { return len(d.paths) }

// Classes implements datasets.Dataset: nil, the images are unlabeled.
func (d *Dataset) Classes() []string { return nil }

// Path implements datasets.Pather.
func (d *Dataset) Path(i int) string { return d.paths[i] }

// Get implements datasets.Dataset.
func (d *Dataset) Get(i int) (datasets.Sample, error) {
	s := datasets.Sample{Path: d.paths[i], Label: -1}
	img, err := datasets.ReadImage(d.paths[i])
	s.Image = img
	return s, err
}
