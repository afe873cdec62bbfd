// Package bdd100k reads the BDD100K driving dataset's segmentation tasks as downloaded:
//
//	root/                                 (the "bdd100k" folder of the archives)
//	  images/10k/{train,val}/*.jpg
//	  labels/sem_seg/masks/{train,val}/*.png          semantic: 8-bit, 0..18, 255 = ignore
//	  labels/ins_seg/bitmasks/{train,val}/*.png       instance: RGBA bitmasks
//	  labels/ins_seg/...coco json (optional)          instance: COCO conversion (Options.Annotations)
//
// Semantic masks hold the 19 Cityscapes train ids (SemanticClasses) and 255 for ignore; other
// values are an error naming the file.
//
// Instance bitmasks (Options.Task = "instance") encode per pixel: R = category id (1..8 for
// pedestrian, rider, car, truck, bus, train, motorcycle, bicycle; 0 = background), G =
// attributes (truncated<<3 | occluded<<2 | crowd<<1 | ignore), B<<8 | A = instance id (0 = none).
// Each instance id is one Instance with Class = category id - 1 and its mask and tight box;
// crowd or ignore instances have IsCrowd set (training and evaluation ignore them, as BDD100K's
// own evaluation does). Pixels of an instance id with category 0 are background regions, not
// instances. An instance whose pixels disagree on category is an error naming the file.
//
// With Options.Annotations set, Task "instance" reads the COCO-format json that BDD100K's
// to_coco conversion writes instead, through the coco loader (images under images/10k/<split>
// unless Options.Images says otherwise).
//
// Registered as "bdd100k"; splits "train" and "val"; Task "semantic" (default) or "instance".
package bdd100k

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/coco"
)

// SemanticClasses are the 19 classes of the semantic masks, by train id.
var SemanticClasses = []string{"road", "sidewalk", "building", "wall", "fence", "pole",
	"traffic light", "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
	"truck", "bus", "train", "motorcycle", "bicycle"}

// InstanceClasses are the 8 instance segmentation classes, by category id - 1.
var InstanceClasses = []string{"pedestrian", "rider", "car", "truck", "bus", "train",
	"motorcycle", "bicycle"}

// Attribute bits of the G channel of a bitmask.
const (
	AttrIgnore    = 1
	AttrCrowd     = 2
	AttrOccluded  = 4
	AttrTruncated = 8
)

func init() { datasets.Register("bdd100k", Open) }

// Open reads split of BDD100K under root for opts.Task.
func Open(root, split string, opts datasets.Options) (datasets.Dataset, error) {
	if split != "train" && split != "val" {
		return nil, fmt.Errorf("bdd100k: unknown split %q (want train or val)", split)
	}
	if err := datasets.CheckDir(root, "BDD100K"); err != nil {
		return nil, err
	}
	imgDir := filepath.Join(root, "images", "10k", split)
	switch opts.Task {
	case "", "semantic":
		annDir := filepath.Join(root, "labels", "sem_seg", "masks", split)
		imgs, err := datasets.ListFiles(imgDir, datasets.ImageExts, "BDD100K 10k "+split+" images")
		if err != nil {
			return nil, err
		}
		anns, err := datasets.ListFiles(annDir, []string{".png"}, "BDD100K sem_seg "+split+" masks")
		if err != nil {
			return nil, err
		}
		// Not every 10k image has a semantic mask in every release: the masks define the split.
		pairs, err := pairByMask(anns, imgDir, imgs)
		if err != nil {
			return nil, err
		}
		return &datasets.SegPairs{
			DatasetName: "bdd100k/sem_seg/" + split,
			Pairs:       pairs[:opts.LimitLen(len(pairs))],
			Labels:      datasets.IdentityLabels(len(SemanticClasses), datasets.IgnoreLabel),
			ClassNames:  SemanticClasses,
		}, nil
	case "instance":
		if opts.Annotations != "" {
			o := opts
			if o.Images == "" {
				o.Images = imgDir
			}
			return coco.OpenFile(root, "bdd100k/ins_seg/"+split, o)
		}
		annDir := filepath.Join(root, "labels", "ins_seg", "bitmasks", split)
		imgs, err := datasets.ListFiles(imgDir, datasets.ImageExts, "BDD100K 10k "+split+" images")
		if err != nil {
			return nil, err
		}
		anns, err := datasets.ListFiles(annDir, []string{".png"}, "BDD100K ins_seg "+split+" bitmasks")
		if err != nil {
			return nil, err
		}
		pairs, err := pairByMask(anns, imgDir, imgs)
		if err != nil {
			return nil, err
		}
		return &Instances{name: "bdd100k/ins_seg/" + split, pairs: pairs[:opts.LimitLen(len(pairs))]}, nil
	default:
		return nil, fmt.Errorf("bdd100k: unknown task %q (want semantic or instance)", opts.Task)
	}
}

// pairByMask pairs each mask with the image of the same stem; a mask without its image is an
// error naming the image expected.
func pairByMask(masks []string, imgDir string, imgs []string) ([][2]string, error) {
	byStem := make(map[string]string, len(imgs))
	for _, p := range imgs {
		byStem[datasets.Stem(p)] = p
	}
	pairs := make([][2]string, 0, len(masks))
	for _, m := range masks {
		img, ok := byStem[datasets.Stem(m)]
		if !ok {
			return nil, fmt.Errorf("%s: image of mask %s not found", filepath.Join(imgDir, datasets.Stem(m)+".jpg"), m)
		}
		pairs = append(pairs, [2]string{img, m})
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%s: no masks", filepath.Dir(imgDir))
	}
	return pairs, nil
}

// Instances is the instance segmentation split read from RGBA bitmasks.
type Instances struct {
	name  string
	pairs [][2]string
}

// Name implements datasets.Dataset.
func (d *Instances) Name() string { return d.name }

// Len implements datasets.Dataset.
func (d *Instances) Len() int { return len(d.pairs) }

// Classes implements datasets.Dataset.
func (d *Instances) Classes() []string { return InstanceClasses }

// Path implements datasets.Pather.
func (d *Instances) Path(i int) string { return d.pairs[i][0] }

// Get implements datasets.Dataset.
func (d *Instances) Get(i int) (datasets.Sample, error) {
	imgPath, maskPath := d.pairs[i][0], d.pairs[i][1]
	s := datasets.Sample{Path: imgPath, Label: -1}
	img, err := datasets.ReadImage(imgPath)
	if err != nil {
		return s, err
	}
	pix, w, h, err := datasets.ReadRGBAPNG(maskPath)
	if err != nil {
		return s, err
	}
	if err := datasets.CheckSize(imgPath, img, maskPath, w, h); err != nil {
		return s, err
	}
	insts, err := ParseBitmask(pix, w, h)
	if err != nil {
		return s, fmt.Errorf("%s: %w", maskPath, err)
	}
	s.Image, s.Instances = img, insts
	return s, nil
}

// ParseBitmask splits an RGBA bitmask (row-major, 4 bytes a pixel) into instances sorted by
// instance id.
func ParseBitmask(pix []uint8, w, h int) ([]datasets.Instance, error) {
	type acc struct {
		cat, attr            uint8
		x0, y0, x1, y1, area int
		mask                 []uint8
	}
	byID := map[int]*acc{}
	var ids []int
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := pix[4*(y*w+x):]
			id := int(p[2])<<8 | int(p[3])
			if id == 0 {
				continue
			}
			a := byID[id]
			if a == nil {
				a = &acc{cat: p[0], attr: p[1], x0: x, y0: y, x1: x, y1: y, mask: make([]uint8, w*h)}
				byID[id] = a
				ids = append(ids, id)
			} else if a.cat != p[0] {
				return nil, fmt.Errorf("instance %d has pixels of categories %d and %d", id, a.cat, p[0])
			}
			a.attr |= p[1]
			a.x0, a.y0, a.x1, a.y1 = min(a.x0, x), min(a.y0, y), max(a.x1, x), max(a.y1, y)
			a.area++
			a.mask[y*w+x] = 1
		}
	}
	insts := make([]datasets.Instance, 0, len(ids))
	slices.Sort(ids)
	for _, id := range ids {
		a := byID[id]
		if a.cat == 0 {
			continue // background region (e.g. the blank bitmask's ignore area), not an object
		}
		if int(a.cat) > len(InstanceClasses) {
			return nil, fmt.Errorf("instance %d has category id %d, want 1..%d", id, a.cat, len(InstanceClasses))
		}
		insts = append(insts, datasets.Instance{
			ID:      id,
			Class:   int(a.cat) - 1,
			Box:     [4]float32{float32(a.x0), float32(a.y0), float32(a.x1 + 1), float32(a.y1 + 1)},
			Mask:    a.mask,
			IsCrowd: a.attr&(AttrCrowd|AttrIgnore) != 0,
			Area:    float64(a.area),
		})
	}
	return insts, nil
}
