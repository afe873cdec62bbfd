// Package coco reads COCO-format instance annotations with their images, the layout of COCO
// 2017 as downloaded:
//
//	root/
//	  annotations/instances_train2017.json   annotations/instances_val2017.json
//	  train2017/000000000009.jpg ...         val2017/000000000139.jpg ...
//
// Any other COCO-format file (labelme's export, BDD100K's conversion, the scenes generator) is
// read with Options.Annotations (the json, absolute or relative to root) and Options.Images
// (the folder that image file_name values are relative to; default root).
//
// Categories are sorted by id and numbered 0..K-1 in that order (COCO's 80 categories with
// sparse ids 1..90 become classes 0..79); Classes returns their names. Segmentations may be
// polygons (a list of [x0, y0, x1, y1, ...], rasterized and OR-ed as pycocotools does),
// uncompressed RLE ({"counts": [...], "size": [h, w]}, column-major runs) or compressed RLE
// ({"counts": "string", ...}); iscrowd sets Instance.IsCrowd. Box is bbox [x, y, w, h] as
// (x, y, x+w, y+h); Area is the annotated area. An annotation without segmentation is a box-only
// instance (Mask nil).
//
// Masks are decoded in Get. An annotation with an unknown category, a malformed polygon or
// RLE, or an image whose size differs from its entry is an error naming the image file and the
// annotation id. Images without annotations are kept (Instances empty), in id order.
//
// Registered as "coco"; splits "train", "val" (2017) or any name N with
// annotations/instances_N.json and images N/.
package coco

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
)

func init() { datasets.Register("coco", Open) }

// File is a COCO-format annotation file, for reading and writing.
type File struct {
	Info        map[string]any `json:"info,omitempty"`
	Licenses    []any          `json:"licenses,omitempty"`
	Images      []Image        `json:"images"`
	Annotations []Annotation   `json:"annotations"`
	Categories  []Category     `json:"categories"`
}

// Image is an entry of File.Images.
type Image struct {
	ID       int64  `json:"id"`
	FileName string `json:"file_name"`
	Width    int    `json:"width"`
	Height   int    `json:"height"`
}

// Annotation is an entry of File.Annotations. Segmentation is kept raw and decoded in Get.
type Annotation struct {
	ID           int64           `json:"id"`
	ImageID      int64           `json:"image_id"`
	CategoryID   int64           `json:"category_id"`
	Segmentation json.RawMessage `json:"segmentation,omitempty"`
	Area         float64         `json:"area"`
	BBox         []float64       `json:"bbox"`
	IsCrowd      int             `json:"iscrowd"`
}

// Category is an entry of File.Categories.
type Category struct {
	ID            int64  `json:"id"`
	Name          string `json:"name"`
	Supercategory string `json:"supercategory,omitempty"`
}

// RLEJSON is the json form of an RLE segmentation; Counts is a string (compressed) or a list
// of run lengths.
type RLEJSON struct {
	Counts json.RawMessage `json:"counts"`
	Size   []int           `json:"size"`
}

// decodePolygons rasterizes the union of polygons into an h x w row-major 0/1 mask, exactly as
// pycocotools (eval/coco/rle).
func decodePolygons(polys [][]float64, h, w int) ([]uint8, error) {
	out := make([]uint8, h*w)
	// Rasterization walks the outline at 5x resolution: bound it to keep a corrupt file from
	// allocating gigabytes.
	far := float64(2 * max(h, w))
	for i, p := range polys {
		if err := checkPolygon(p); err != nil {
			return nil, fmt.Errorf("polygon %d: %w", i, err)
		}
		for _, c := range p {
			if c < -far || c > far {
				return nil, fmt.Errorf("polygon %d: coordinate %v is far outside the %dx%d image", i, c, w, h)
			}
		}
		if err := rle.FrPoly(p, h, w).DecodeInto(out); err != nil {
			return nil, fmt.Errorf("polygon %d: %w", i, err)
		}
	}
	return out, nil
}

// checkPolygon rejects a polygon that cannot be rasterized meaningfully: an odd number of
// coordinates, fewer than 3 points, or a non-finite coordinate.
func checkPolygon(xy []float64) error {
	if len(xy)%2 != 0 {
		return fmt.Errorf("polygon has an odd number (%d) of coordinates", len(xy))
	}
	if len(xy) < 6 {
		return fmt.Errorf("polygon has %d points, needs at least 3", len(xy)/2)
	}
	for _, c := range xy {
		if math.IsNaN(c) || math.IsInf(c, 0) || math.Abs(c) > 1e7 {
			return fmt.Errorf("polygon has an invalid coordinate %v", c)
		}
	}
	return nil
}

// Dataset is a COCO-format instance segmentation split.
type Dataset struct {
	name     string
	imageDir string
	images   []Image
	anns     [][]Annotation // by image, file order
	classOf  map[int64]int  // category id -> class index
	classes  []string
	annFile  string
}

// Open reads split ("train", "val", or a name N with annotations/instances_N.json) under root;
// with Options.Annotations it reads that file instead (see OpenFile).
func Open(root, split string, opts datasets.Options) (datasets.Dataset, error) {
	if opts.Annotations != "" {
		return OpenFile(root, "coco/"+split, opts)
	}
	name := split
	if split == "train" || split == "val" {
		name = split + "2017"
	}
	if err := datasets.CheckDir(root, "COCO"); err != nil {
		return nil, err
	}
	o := opts // both relative to root (OpenFile resolves them), so that a relative root works
	o.Annotations = filepath.Join("annotations", "instances_"+name+".json")
	if o.Images == "" {
		o.Images = name
	}
	if err := datasets.CheckDir(datasets.Resolve(root, o.Images), "COCO "+name+" images"); err != nil {
		return nil, err
	}
	return OpenFile(root, "coco/"+name, o)
}

// OpenFile reads the COCO-format file opts.Annotations with images under opts.Images (both
// absolute or relative to root; Images defaults to root) and names the dataset name.
func OpenFile(root, name string, opts datasets.Options) (*Dataset, error) {
	path := datasets.Resolve(root, opts.Annotations)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	imageDir := root
	if opts.Images != "" {
		imageDir = datasets.Resolve(root, opts.Images)
	}
	return fromFile(&f, name, path, imageDir, opts.Limit)
}

func fromFile(f *File, name, path, imageDir string, limit int) (*Dataset, error) {
	cats := slices.Clone(f.Categories)
	slices.SortFunc(cats, func(a, b Category) int { return cmpInt64(a.ID, b.ID) })
	d := &Dataset{name: name, imageDir: imageDir, classOf: map[int64]int{}, annFile: path}
	for i, c := range cats {
		if _, dup := d.classOf[c.ID]; dup {
			return nil, fmt.Errorf("%s: category id %d appears twice", path, c.ID)
		}
		d.classOf[c.ID] = i
		d.classes = append(d.classes, c.Name)
	}
	imgs := slices.Clone(f.Images)
	slices.SortStableFunc(imgs, func(a, b Image) int { return cmpInt64(a.ID, b.ID) })
	index := make(map[int64]int, len(imgs))
	for i, im := range imgs {
		if _, dup := index[im.ID]; dup {
			return nil, fmt.Errorf("%s: image id %d appears twice", path, im.ID)
		}
		if im.Width <= 0 || im.Height <= 0 || im.FileName == "" {
			return nil, fmt.Errorf("%s: image id %d has no file_name or size (%q, %dx%d)", path, im.ID, im.FileName, im.Width, im.Height)
		}
		index[im.ID] = i
	}
	anns := make([][]Annotation, len(imgs))
	for _, a := range f.Annotations {
		i, ok := index[a.ImageID]
		if !ok {
			return nil, fmt.Errorf("%s: annotation %d refers to image id %d, which is not in the file", path, a.ID, a.ImageID)
		}
		anns[i] = append(anns[i], a)
	}
	n := len(imgs)
	if limit > 0 && limit < n {
		n = limit
	}
	d.images, d.anns = imgs[:n], anns[:n]
	return d, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Name implements datasets.Dataset.
func (d *Dataset) Name() string { return d.name }

// Len implements datasets.Dataset.
func (d *Dataset) Len() int { return len(d.images) }

// Classes implements datasets.Dataset: category names sorted by category id.
func (d *Dataset) Classes() []string { return d.classes }

// CategoryIDs returns the COCO category id of each class index, for writing results back.
func (d *Dataset) CategoryIDs() []int64 {
	ids := make([]int64, len(d.classes))
	for id, c := range d.classOf {
		ids[c] = id
	}
	return ids
}

// ImageInfo returns the annotation file's entry of sample i.
func (d *Dataset) ImageInfo(i int) Image { return d.images[i] }

// Path implements datasets.Pather.
func (d *Dataset) Path(i int) string {
	return filepath.Join(d.imageDir, filepath.FromSlash(d.images[i].FileName))
}

// Get implements datasets.Dataset.
func (d *Dataset) Get(i int) (datasets.Sample, error) {
	im := d.images[i]
	path := d.Path(i)
	s := datasets.Sample{Path: path, Label: -1}
	img, err := datasets.ReadImage(path)
	if err != nil {
		return s, err
	}
	if img.W != im.Width || img.H != im.Height {
		return s, fmt.Errorf("%s: image is %dx%d but %s says %dx%d (image id %d)", path, img.W, img.H, d.annFile, im.Width, im.Height, im.ID)
	}
	s.Image = img
	s.Instances = make([]datasets.Instance, 0, len(d.anns[i]))
	for _, a := range d.anns[i] {
		inst, err := d.instance(a, im)
		if err != nil {
			return s, fmt.Errorf("%s: annotation %d: %w", path, a.ID, err)
		}
		s.Instances = append(s.Instances, inst)
	}
	return s, nil
}

func (d *Dataset) instance(a Annotation, im Image) (datasets.Instance, error) {
	class, ok := d.classOf[a.CategoryID]
	if !ok {
		return datasets.Instance{}, fmt.Errorf("unknown category_id %d (the file has %d categories)", a.CategoryID, len(d.classes))
	}
	inst := datasets.Instance{ID: int(a.ID), Class: class, IsCrowd: a.IsCrowd != 0, Area: a.Area}
	h, w := im.Height, im.Width
	mask, err := DecodeSegmentation(a.Segmentation, h, w)
	if err != nil {
		return inst, err
	}
	inst.Mask = mask
	switch {
	case len(a.BBox) == 4:
		b := a.BBox
		if b[2] < 0 || b[3] < 0 {
			return inst, fmt.Errorf("bbox %v has a negative size", b)
		}
		inst.Box = [4]float32{float32(b[0]), float32(b[1]), float32(b[0] + b[2]), float32(b[1] + b[3])}
	case len(a.BBox) == 0 && mask != nil:
		inst.Box = MaskBox(mask, w, h)
	default:
		return inst, fmt.Errorf("bbox %v: want [x, y, width, height]", a.BBox)
	}
	return inst, nil
}

// DecodeSegmentation decodes a COCO segmentation (polygons, uncompressed or compressed RLE) to
// a row-major h x w 0/1 mask; an absent or null one gives nil.
func DecodeSegmentation(raw json.RawMessage, h, w int) ([]uint8, error) {
	t := strings.TrimSpace(string(raw))
	switch {
	case t == "" || t == "null":
		return nil, nil
	case t[0] == '[':
		var polys [][]float64
		if err := json.Unmarshal(raw, &polys); err != nil {
			return nil, fmt.Errorf("malformed polygon segmentation: %w", err)
		}
		if len(polys) == 0 {
			return nil, fmt.Errorf("polygon segmentation has no polygon")
		}
		return decodePolygons(polys, h, w)
	case t[0] == '{':
		var r RLEJSON
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("malformed RLE segmentation: %w", err)
		}
		if len(r.Size) != 2 || r.Size[0] != h || r.Size[1] != w {
			return nil, fmt.Errorf("RLE size %v differs from the image's [%d %d]", r.Size, h, w)
		}
		c := strings.TrimSpace(string(r.Counts))
		switch {
		case strings.HasPrefix(c, "\""):
			var s string
			if err := json.Unmarshal(r.Counts, &s); err != nil {
				return nil, fmt.Errorf("malformed RLE counts: %w", err)
			}
			m, err := decodeString(s, h, w)
			if err != nil {
				return nil, fmt.Errorf("compressed RLE: %w", err)
			}
			return m, nil
		case strings.HasPrefix(c, "["):
			var counts []uint32
			if err := json.Unmarshal(r.Counts, &counts); err != nil {
				return nil, fmt.Errorf("malformed RLE counts: %w", err)
			}
			m, err := rle.RLE{H: h, W: w, Counts: counts}.Decode()
			if err != nil {
				return nil, fmt.Errorf("uncompressed RLE: %w", err)
			}
			return m, nil
		default:
			return nil, fmt.Errorf("RLE counts must be a string or a list, got %.20s", c)
		}
	default:
		return nil, fmt.Errorf("segmentation must be a list of polygons or an RLE object, got %.20s", t)
	}
}

// MaskBox is the tight box (x0, y0, x1, y1) of a row-major mask's 1 pixels (zero if empty).
func MaskBox(mask []uint8, w, h int) [4]float32 {
	x0, y0, x1, y1 := w, h, -1, -1
	for y := 0; y < h; y++ {
		row := mask[y*w : (y+1)*w]
		for x, v := range row {
			if v != 0 {
				x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
			}
		}
	}
	if x1 < 0 {
		return [4]float32{}
	}
	return [4]float32{float32(x0), float32(y0), float32(x1 + 1), float32(y1 + 1)}
}

// decodeString decodes a compressed RLE string to a row-major mask.
func decodeString(s string, h, w int) ([]uint8, error) {
	r, err := rle.FromString(s, h, w)
	if err != nil {
		return nil, err
	}
	return r.Decode()
}
