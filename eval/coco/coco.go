// Package coco reads COCO-format ground truth and detection results and computes COCO
// average precision for boxes and masks exactly as pycocotools' COCOeval does: IoU
// thresholds .50:.05:.95, 101 recall points, at most 1/10/100 detections per image, and
// area ranges all/small/medium/large, with crowd ground truth re-matchable and ignored.
//
// Use it as pycocotools is used:
//
//	gt, _ := coco.LoadDataset("instances_val.json")
//	results, _ := coco.LoadResultsFile("segm_results.json")
//	dt, _ := coco.LoadRes(gt, results)
//	e := coco.NewCOCOeval(gt, dt, coco.Segm)
//	_ = e.Evaluate()
//	e.Accumulate()
//	fmt.Print(e.Summarize().Text())
//
// or through Evaluator, which has detectron2's Reset/Process/Evaluate shape.
//
// Faithfulness notes. Everything pycocotools computes is reproduced, including its quirks:
//   - a ground-truth annotation with id 0 is never counted as matched (pycocotools stores the
//     matched id and tests it against 0), so give annotations ids from 1, as COCO does;
//   - ground truth "area" is read from the annotation, never recomputed from the mask;
//   - the "ignore" field of ground truth is overridden by "iscrowd";
//   - detections are ordered by score with a stable sort, ties keeping file order.
//
// Annotation ids must be unique: ParseDataset (so LoadDataset) and COCOeval.Evaluate reject two
// annotations with the same id, with an error naming the file and the id. pycocotools does not
// check: it indexes annotations by id (COCO.anns, the later one wins) and COCOeval loads the
// ground truth of each image as loadAnns(getAnnIds(...)), so each annotation carrying a
// duplicated id is replaced by the last one with that id (on that one's image): the earlier
// object is never evaluated and the later one is counted twice, a silently wrong AP (one
// measured case: 1.0 here, 0.2525 in pycocotools). Detection results get ids 1..N in LoadRes, as
// in pycocotools' loadRes, so they cannot collide.
//
// Where pycocotools would crash (a polygon list whose first polygon has 4 numbers, an empty
// polygon list, an empty result list) this package rasterises the polygons, gives an empty
// mask, or evaluates no detections.
package coco

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
)

// Dataset is a COCO instances file: images, annotations and categories. It also holds
// loaded results (LoadRes), whose annotations carry scores.
type Dataset struct {
	Images      []Image      `json:"images"`
	Annotations []Annotation `json:"annotations"`
	Categories  []Category   `json:"categories"`

	// Source names where the data came from (a file path), for error messages.
	Source string `json:"-"`

	images map[int64]int // image id -> index in Images
}

// Image is one entry of "images".
type Image struct {
	ID       int64  `json:"id"`
	FileName string `json:"file_name,omitempty"`
	Height   int    `json:"height"`
	Width    int    `json:"width"`
}

// Category is one entry of "categories".
type Category struct {
	ID            int64  `json:"id"`
	Name          string `json:"name"`
	Supercategory string `json:"supercategory,omitempty"`
}

// Annotation is one ground-truth object, or one detection once results are loaded.
type Annotation struct {
	ID           int64         `json:"id"`
	ImageID      int64         `json:"image_id"`
	CategoryID   int64         `json:"category_id"`
	Segmentation *Segmentation `json:"segmentation,omitempty"`
	Area         float64       `json:"area"`
	BBox         []float64     `json:"bbox,omitempty"` // x, y, width, height
	IsCrowd      int           `json:"iscrowd"`
	Score        float64       `json:"score,omitempty"` // detections only
}

// Segmentation is an annotation's mask in one of COCO's three forms: polygons, an
// uncompressed RLE {"counts": [...], "size": [h, w]} or a compressed RLE
// {"counts": "...", "size": [h, w]}.
type Segmentation struct {
	Polygons [][]float64 // x0,y0,x1,y1,... per polygon; set for the polygon form

	// The RLE forms: Size is [height, width]; Counts is set for uncompressed RLE and
	// Compressed for compressed RLE.
	Size       [2]int
	Counts     []uint32
	Compressed string
	isRLE      bool
}

// IsRLE reports whether s is one of the RLE forms (and not polygons).
func (s *Segmentation) IsRLE() bool { return s.isRLE }

// SegmentationFromRLE is the compressed-RLE segmentation of r, as detection results store it.
func SegmentationFromRLE(r rle.RLE) *Segmentation {
	return &Segmentation{Size: [2]int{r.H, r.W}, Compressed: r.String(), isRLE: true}
}

// UnmarshalJSON reads any of the three forms.
func (s *Segmentation) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		*s = Segmentation{}
		return json.Unmarshal(data, &s.Polygons)
	}
	var obj struct {
		Counts json.RawMessage `json:"counts"`
		Size   []int           `json:"size"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("segmentation is neither polygons nor an RLE object: %w", err)
	}
	if len(obj.Size) != 2 {
		return fmt.Errorf("RLE segmentation has size %v, want [height, width]", obj.Size)
	}
	*s = Segmentation{Size: [2]int{obj.Size[0], obj.Size[1]}, isRLE: true}
	counts := bytes.TrimSpace(obj.Counts)
	switch {
	case len(counts) > 0 && counts[0] == '"':
		return json.Unmarshal(counts, &s.Compressed)
	case len(counts) > 0 && counts[0] == '[':
		return json.Unmarshal(counts, &s.Counts)
	default:
		return fmt.Errorf("RLE segmentation counts %.20q is neither a string nor a list", counts)
	}
}

// MarshalJSON writes the form s holds.
func (s *Segmentation) MarshalJSON() ([]byte, error) {
	if !s.isRLE {
		if s.Polygons == nil {
			return []byte("[]"), nil
		}
		return json.Marshal(s.Polygons)
	}
	obj := struct {
		Size   [2]int `json:"size"`
		Counts any    `json:"counts"`
	}{Size: s.Size}
	if s.Counts != nil {
		obj.Counts = s.Counts
	} else {
		obj.Counts = s.Compressed
	}
	return json.Marshal(obj)
}

// ToRLE converts the segmentation of an object in an h x w image to one RLE, as
// pycocotools' COCO.annToRLE: polygons are rasterised and merged, an uncompressed RLE is taken
// with its own size, a compressed RLE is decoded.
func (s *Segmentation) ToRLE(h, w int) (rle.RLE, error) {
	switch {
	case !s.isRLE:
		parts := make([]rle.RLE, 0, len(s.Polygons))
		for _, p := range s.Polygons {
			parts = append(parts, rle.FrPoly(p, h, w))
		}
		if len(parts) == 0 {
			return rle.RLE{H: h, W: w, Counts: []uint32{uint32(h * w)}}, nil
		}
		return rle.Merge(parts, false)
	case s.Counts != nil:
		r := rle.RLE{H: s.Size[0], W: s.Size[1], Counts: s.Counts}
		return r, r.Validate()
	default:
		return rle.FromString(s.Compressed, s.Size[0], s.Size[1])
	}
}

// LoadDataset reads a COCO instances json file.
func LoadDataset(path string) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseDataset(f, path)
}

// ParseDataset reads a COCO instances json document; source names it in errors.
// Every annotation needs an "area" (pycocotools reads it); "iscrowd" defaults to 0.
func ParseDataset(r io.Reader, source string) (*Dataset, error) {
	var raw struct {
		Images      []Image           `json:"images"`
		Annotations []json.RawMessage `json:"annotations"`
		Categories  []Category        `json:"categories"`
	}
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	d := &Dataset{Images: raw.Images, Categories: raw.Categories, Source: source}
	d.Annotations = make([]Annotation, len(raw.Annotations))
	for i, msg := range raw.Annotations {
		var a struct {
			Annotation
			Area *float64 `json:"area"`
		}
		if err := json.Unmarshal(msg, &a); err != nil {
			return nil, fmt.Errorf("%s: annotation %d (id %s): %w", source, i, rawID(msg), err)
		}
		if a.Area == nil {
			return nil, fmt.Errorf("%s: annotation id %d has no \"area\"", source, a.ID)
		}
		if a.BBox != nil && len(a.BBox) != 4 {
			return nil, fmt.Errorf("%s: annotation id %d has bbox %v, want [x, y, width, height]", source, a.ID, a.BBox)
		}
		a.Annotation.Area = *a.Area
		d.Annotations[i] = a.Annotation
	}
	if err := d.checkUniqueIDs(); err != nil {
		return nil, err
	}
	d.index()
	return d, nil
}

// checkUniqueIDs fails when two annotations share an id (see the package doc).
func (d *Dataset) checkUniqueIDs() error {
	first := make(map[int64]int, len(d.Annotations))
	for i, a := range d.Annotations {
		if j, dup := first[a.ID]; dup {
			return fmt.Errorf("%s: annotations #%d and #%d (in file order, from 0) have the same id %d: "+
				"annotation ids must be unique (pycocotools would silently evaluate the later one twice and the earlier one never)",
				d.Source, j, i, a.ID)
		}
		first[a.ID] = i
	}
	return nil
}

// rawID digs the "id" out of an annotation that failed to parse, for the error message.
func rawID(msg json.RawMessage) string {
	var a struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(msg, &a) != nil || a.ID == nil {
		return "unknown"
	}
	return string(a.ID)
}

func (d *Dataset) index() {
	d.images = make(map[int64]int, len(d.Images))
	for i, img := range d.Images {
		d.images[img.ID] = i
	}
}

// Image returns the image with the given id.
func (d *Dataset) Image(id int64) (Image, bool) {
	if d.images == nil {
		d.index()
	}
	i, ok := d.images[id]
	if !ok {
		return Image{}, false
	}
	return d.Images[i], true
}

// Result is one detection in the COCO results format: a list of these is what detectors
// write and COCOeval reads. BBox or Segmentation (a compressed RLE, usually) or both are set.
type Result struct {
	ImageID      int64         `json:"image_id"`
	CategoryID   int64         `json:"category_id"`
	BBox         []float64     `json:"bbox,omitempty"`
	Score        float64       `json:"score"`
	Segmentation *Segmentation `json:"segmentation,omitempty"`
}

// LoadResultsFile reads a COCO results json file (a list of detections). Every detection
// needs a score.
func LoadResultsFile(path string) ([]Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseResults(data, path)
}

// ParseResults reads a COCO results json document; source names it in errors.
func ParseResults(data []byte, source string) ([]Result, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: results must be a list of detections: %w", source, err)
	}
	out := make([]Result, len(raw))
	for i, msg := range raw {
		var r struct {
			Result
			Score *float64 `json:"score"`
		}
		if err := json.Unmarshal(msg, &r); err != nil {
			return nil, fmt.Errorf("%s: result %d: %w", source, i, err)
		}
		if r.Score == nil {
			return nil, fmt.Errorf("%s: result %d (image %d) has no \"score\"", source, i, r.ImageID)
		}
		r.Result.Score = *r.Score
		out[i] = r.Result
	}
	return out, nil
}

// LoadRes turns detections into a results dataset over gt's images, as pycocotools'
// COCO.loadRes: detections get ids 1..N in order and iscrowd 0. The first detection decides
// the kind for all: when it has a box, every area is the box's width*height and a detection
// without a mask gets its box as a polygon; otherwise every area is the mask's pixel count
// and a missing box is the mask's bounding box. Detections on images that gt lacks are an
// error. (detectron2 drops the boxes of mask results before this for "segm"; Evaluator does.)
func LoadRes(gt *Dataset, results []Result) (*Dataset, error) {
	res := &Dataset{Images: gt.Images, Categories: gt.Categories, Source: "results"}
	res.index()
	res.Annotations = make([]Annotation, len(results))
	boxKind := len(results) > 0 && len(results[0].BBox) > 0
	for i, r := range results {
		img, ok := res.Image(r.ImageID)
		if !ok {
			return nil, fmt.Errorf("result %d: image id %d is not in the ground truth %s", i, r.ImageID, gt.Source)
		}
		a := Annotation{ID: int64(i + 1), ImageID: r.ImageID, CategoryID: r.CategoryID,
			Score: r.Score, Segmentation: r.Segmentation, BBox: r.BBox}
		if boxKind {
			if len(r.BBox) != 4 {
				return nil, fmt.Errorf("result %d (image %d): bbox %v, want [x, y, width, height]", i, r.ImageID, r.BBox)
			}
			bb := r.BBox
			if a.Segmentation == nil {
				x1, x2, y1, y2 := bb[0], bb[0]+bb[2], bb[1], bb[1]+bb[3]
				a.Segmentation = &Segmentation{Polygons: [][]float64{{x1, y1, x1, y2, x2, y2, x2, y1}}}
			}
			a.Area = bb[2] * bb[3]
		} else {
			if r.Segmentation == nil {
				return nil, fmt.Errorf("result %d (image %d) has neither bbox nor segmentation", i, r.ImageID)
			}
			m, err := r.Segmentation.ToRLE(img.Height, img.Width)
			if err != nil {
				return nil, fmt.Errorf("result %d (image %d): %w", i, r.ImageID, err)
			}
			a.Area = float64(m.Area())
			if a.BBox == nil {
				bb := m.ToBbox()
				a.BBox = bb[:]
			} else if len(a.BBox) != 4 {
				return nil, fmt.Errorf("result %d (image %d): bbox %v, want [x, y, width, height]", i, r.ImageID, r.BBox)
			}
		}
		res.Annotations[i] = a
	}
	return res, nil
}
