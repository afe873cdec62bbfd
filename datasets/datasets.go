package datasets

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// IgnoreLabel marks pixels of a semantic mask that losses and metrics ignore.
const IgnoreLabel = 255

// Sample is one example of a dataset.
type Sample struct {
	// Path is the image file.
	Path string
	// Image is the decoded RGB image.
	Image Image
	// Semantic is the HxW class-index mask (IgnoreLabel = ignore), nil if the dataset has none.
	Semantic []uint8
	// Instances are the annotated objects, nil if the dataset has none.
	Instances []Instance
	// Label is the class index for classification, -1 if none.
	Label int
	// Dropped counts the instances removed by transforms (cropped out or left empty).
	Dropped int
}

// Instance is one annotated object of a Sample.
type Instance struct {
	// ID is the annotation id in the dataset's files (COCO annotation id, BDD100K instance id).
	ID int
	// Class is the contiguous class index 0..K-1.
	Class int
	// Box is (x0, y0, x1, y1) in pixels.
	Box [4]float32
	// Mask is the HxW 0/1 mask of the object, row-major; nil for box-only annotations.
	Mask []uint8
	// IsCrowd marks a region of many objects (COCO iscrowd; BDD100K crowd or ignore), that
	// training and evaluation ignore.
	IsCrowd bool
	// Area is the object's area in pixels as annotated (mask area for COCO).
	Area float64
}

// Dataset is an indexed collection of samples.
type Dataset interface {
	// Name identifies the dataset and split, e.g. "ade20k/validation".
	Name() string
	// Len is the number of samples.
	Len() int
	// Get decodes sample i, 0 <= i < Len(). The error names the file (and annotation id).
	Get(i int) (Sample, error)
	// Classes are the class names, indexed by class index; nil for unlabeled datasets.
	Classes() []string
}

// Pather is implemented by datasets that can name the file of sample i without decoding it;
// the loader uses it to report skipped samples.
type Pather interface {
	Path(i int) string
}

// Options tune how a dataset is opened. Each loader documents which fields it reads; the
// zero value opens the official layout with the official conventions.
type Options struct {
	// Task selects the annotations where a dataset has several: "semantic" or "instance"
	// (bdd100k, scenes). Empty means the dataset's default.
	Task string
	// Annotations overrides the annotation file (COCO json), absolute or relative to root.
	Annotations string
	// Images overrides the image folder (COCO), absolute or relative to root.
	Images string
	// KeepZeroLabel disables ADE20K's reduce_zero_label (0 -> 255, others -1).
	KeepZeroLabel bool
	// Limit > 0 keeps only the first Limit samples, for smoke runs.
	Limit int
}

// OpenFunc opens a dataset split found under root.
type OpenFunc func(root, split string, opts Options) (Dataset, error)

var (
	registryMu sync.Mutex
	registry   = map[string]OpenFunc{}
)

// Register makes a dataset available to Open under name. It panics on a duplicate name.
func Register(name string, open OpenFunc) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("datasets: %q registered twice", name))
	}
	registry[name] = open
}

// Names lists the registered datasets, sorted.
func Names() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Open opens split of the dataset registered as name, reading it from root.
func Open(name, root, split string, opts Options) (Dataset, error) {
	registryMu.Lock()
	open, ok := registry[name]
	registryMu.Unlock()
	if !ok {
		known := Names()
		if len(known) == 0 {
			return nil, fmt.Errorf("datasets: unknown dataset %q: none is registered (import github.com/dreamteacher-go/dreamteacher/datasets/all)", name)
		}
		return nil, fmt.Errorf("datasets: unknown dataset %q: known datasets are %s", name, strings.Join(known, ", "))
	}
	ds, err := open(root, split, opts)
	if err != nil {
		return nil, err
	}
	return ds, nil
}

// LimitLen applies Options.Limit to a length.
func (o Options) LimitLen(n int) int {
	if o.Limit > 0 && o.Limit < n {
		return o.Limit
	}
	return n
}
