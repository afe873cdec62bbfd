// Package scenes generates the project's default dataset: small synthetic scenes of shapes on
// textured backgrounds, written in BOTH the COCO layout (instance masks) and the ADE20K layout
// (semantic masks), so the coco and ade20k loaders read it like the real data. It needs no
// download, is deterministic given its seed, and is fast: hundreds of 64..128 px images a second.
//
// A scene is a background texture (linear gradient, stripes, smooth value noise or a rotated
// checkerboard, with pixel noise) and 1..MaxObjects objects of 6 classes — disc, square,
// triangle, ring, cross, star — with random colour, shading, scale, aspect, rotation and
// position (objects may be cut by the border). Objects occlude the earlier ones, each keeping
// at least half of its area visible. Some scenes hold a crowd: a cluster of small shapes of one
// class annotated as one iscrowd region. Config.Plain flattens the textures and Config.Objects
// labels every object as one class, "object" (the demo's task). Generate(dir, cfg) writes:
//
//	dir/coco/annotations/instances_{train,val}2017.json
//	dir/coco/{train,val}2017/000000000001.jpg ...
//	dir/ade20k/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_00000001.jpg ...
//	dir/ade20k/ADEChallengeData2016/annotations/{training,validation}/ADE_..._00000001.png ...
//	dir/ade20k/ADEChallengeData2016/objectInfo150.txt    (the 6 class names)
//	dir/scenes.json                                      (the Config; written last)
//
// COCO annotations hold the visible part of each object: a polygon when the object is fully
// visible, inside the image and simply connected; compressed RLE otherwise (occluded objects,
// rings); uncompressed RLE with iscrowd = 1 for crowds. Category ids are sparse (like COCO's),
// so the loader's id -> class mapping is exercised. ADE20K annotation PNGs follow that
// dataset's convention: 0 = background ("other", ignored after reduce_zero_label) and
// class index + 1 for object pixels. The same picture is written to both layouts.
//
// Registered as "scenes": Open generates DefaultConfig into root when root is missing or empty,
// then opens the ADE20K layout (Options.Task "semantic", the default) or the COCO layout
// ("instance").
package scenes

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/ade20k"
	"github.com/dreamteacher-go/dreamteacher/datasets/coco"
	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
)

// Classes are the object classes, by class index.
var Classes = []string{"disc", "square", "triangle", "ring", "cross", "star"}

// CategoryIDs are the sparse COCO category ids of the classes.
var CategoryIDs = []int64{1, 3, 4, 8, 11, 13}

// Config says what to generate.
type Config struct {
	Train, Val int   // images per split
	Size       int   // image width and height in pixels
	Seed       int64 // the same seed gives the same files
	MaxObjects int   // objects per scene, at most (default 6)
	Quality    int   // JPEG quality (default 92)
	Workers    int   // parallel workers (default GOMAXPROCS); does not change the output
	// Plain paints every background as one flat colour and every object in its flat colour (no
	// gradients, stripes, noise, checkerboards or shading; the pixel noise stays). The objects,
	// their colours and the masks are those of the textured scenes of the same seed: an easier
	// variant of the same dataset, for small generative teachers and short demos.
	Plain bool
	// Objects labels every object as one class, "object" (ObjectClasses): the task becomes
	// objects against background, in the semantic masks (value 1) and in the COCO annotations
	// (category id 1). The pictures are those of the same config without it, byte for byte.
	// It is the demo's task: a teacher small enough to train in minutes learns where the
	// objects are long before it learns their shapes (docs/RESULTS.md).
	Objects bool
}

// ObjectClasses are the classes of Config.Objects scenes, with ObjectCategoryIDs.
var (
	ObjectClasses     = []string{"object"}
	ObjectCategoryIDs = []int64{1}
)

// classes are the class names and COCO category ids c's annotations use.
func (c Config) classes() ([]string, []int64) {
	if c.Objects {
		return ObjectClasses, ObjectCategoryIDs
	}
	return Classes, CategoryIDs
}

// class is the class index an object of shape class k is annotated with.
func (c Config) class(k int) int {
	if c.Objects {
		return 0
	}
	return k
}

// DefaultConfig is what the demo and the registry use.
func DefaultConfig() Config {
	return Config{Train: 256, Val: 64, Size: 96, Seed: 1, MaxObjects: 6, Quality: 92}
}

func (c Config) withDefaults() Config {
	if c.MaxObjects <= 0 {
		c.MaxObjects = 6
	}
	if c.Quality <= 0 {
		c.Quality = 92
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	return c
}

// COCODir is the root of the COCO layout inside a generated folder.
func COCODir(dir string) string { return filepath.Join(dir, "coco") }

// ADE20KDir is the root of the ADE20K layout inside a generated folder.
func ADE20KDir(dir string) string { return filepath.Join(dir, "ade20k") }

const stampFile = "scenes.json"

func init() { datasets.Register("scenes", Open) }

// Open opens the scenes under root (see the package doc), generating DefaultConfig first when
// root does not exist or is empty.
func Open(root, split string, opts datasets.Options) (datasets.Dataset, error) {
	if _, err := os.Stat(filepath.Join(root, stampFile)); err != nil {
		entries, rerr := os.ReadDir(root)
		if rerr != nil && !os.IsNotExist(rerr) {
			return nil, rerr
		}
		if len(entries) > 0 {
			return nil, fmt.Errorf("%s: not a generated scenes folder (no %s) and not empty: give an empty or missing folder to generate into", root, stampFile)
		}
		if err := Generate(root, DefaultConfig()); err != nil {
			return nil, err
		}
	}
	switch opts.Task {
	case "", "semantic":
		return ade20k.Open(ADE20KDir(root), split, opts)
	case "instance":
		return coco.Open(COCODir(root), split, opts)
	default:
		return nil, fmt.Errorf("scenes: unknown task %q (want semantic or instance)", opts.Task)
	}
}

// Ensure generates cfg into dir unless dir already holds exactly that configuration.
func Ensure(dir string, cfg Config) error {
	cfg.Workers = 0
	if data, err := os.ReadFile(filepath.Join(dir, stampFile)); err == nil {
		var have Config
		if json.Unmarshal(data, &have) == nil && reflect.DeepEqual(have, cfg) {
			return nil
		}
	}
	return Generate(dir, cfg)
}

// Generate writes cfg's scenes into dir (see the package doc), replacing earlier files.
func Generate(dir string, cfg Config) error {
	if cfg.Size < 16 || cfg.Train < 0 || cfg.Val < 0 || cfg.Train+cfg.Val == 0 {
		return fmt.Errorf("scenes: bad config %+v: want Size >= 16 and some images", cfg)
	}
	c := cfg.withDefaults()
	_ = os.Remove(filepath.Join(dir, stampFile))
	splits := []struct {
		n                  int
		coco, ade, adePref string
		firstID            int64
	}{
		{cfg.Train, "train2017", "training", "ADE_train_", 1},
		{cfg.Val, "val2017", "validation", "ADE_val_", int64(cfg.Train) + 1},
	}
	adeRoot := filepath.Join(ADE20KDir(dir), ade20k.Folder)
	for _, sp := range splits {
		for _, d := range []string{filepath.Join(COCODir(dir), sp.coco), filepath.Join(COCODir(dir), "annotations"),
			filepath.Join(adeRoot, "images", sp.ade), filepath.Join(adeRoot, "annotations", sp.ade)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	for si, sp := range splits {
		results := make([]*scene, sp.n)
		errs := make([]error, sp.n)
		var wg sync.WaitGroup
		next := make(chan int)
		for w := 0; w < c.Workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					rng := rand.New(rand.NewPCG(uint64(c.Seed), uint64(si)<<32|uint64(i)))
					s := render(rng, c)
					id := sp.firstID + int64(i)
					jpg, err := datasets.EncodeJPEG(s.img, c.Quality)
					if err == nil {
						err = os.WriteFile(filepath.Join(COCODir(dir), sp.coco, fmt.Sprintf("%012d.jpg", id)), jpg, 0o644)
					}
					name := fmt.Sprintf("%s%08d", sp.adePref, i+1)
					if err == nil {
						err = os.WriteFile(filepath.Join(adeRoot, "images", sp.ade, name+".jpg"), jpg, 0o644)
					}
					var png []byte
					if err == nil {
						png, err = datasets.EncodeLabelPNG(s.semantic, c.Size, c.Size)
					}
					if err == nil {
						err = os.WriteFile(filepath.Join(adeRoot, "annotations", sp.ade, name+".png"), png, 0o644)
					}
					results[i], errs[i] = s, err
				}
			}()
		}
		for i := 0; i < sp.n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		f := coco.File{Info: map[string]any{"description": "DreamTeacher-Go synthetic scenes", "seed": c.Seed}}
		names, ids := c.classes()
		for i, name := range names {
			f.Categories = append(f.Categories, coco.Category{ID: ids[i], Name: name, Supercategory: "shape"})
		}
		f.Images = make([]coco.Image, 0, sp.n)
		f.Annotations = []coco.Annotation{}
		annID := int64(1)
		if si == 1 {
			annID = 1_000_000
		}
		for i, s := range results {
			id := sp.firstID + int64(i)
			f.Images = append(f.Images, coco.Image{ID: id, FileName: fmt.Sprintf("%012d.jpg", id), Width: c.Size, Height: c.Size})
			for _, a := range s.anns {
				a.ID, a.ImageID = annID, id
				annID++
				f.Annotations = append(f.Annotations, a)
			}
		}
		data, err := json.Marshal(&f)
		if err != nil {
			return err
		}
		if err := datasets.WriteFile(filepath.Join(COCODir(dir), "annotations", "instances_"+sp.coco+".json"), data); err != nil {
			return err
		}
	}
	names, _ := c.classes()
	if err := ade20k.WriteObjectInfo(filepath.Join(adeRoot, "objectInfo150.txt"), names); err != nil {
		return err
	}
	cfg.Workers = 0
	stamp, _ := json.MarshalIndent(cfg, "", "  ")
	return datasets.WriteFile(filepath.Join(dir, stampFile), stamp)
}

// scene is one rendered image with its annotations.
type scene struct {
	img      datasets.Image
	semantic []uint8 // ADE20K convention: 0 background, class+1
	anns     []coco.Annotation
}

// object is a placed shape.
type object struct {
	class   int
	crowd   bool
	polys   [][]float64 // outer outlines (OR-ed)
	hole    []float64   // inner outline removed (ring), nil otherwise
	full    []uint8     // full mask
	area    int
	col     [3]float64
	col2    [3]float64
	texture int
	dir     [2]float64
	period  float64
}

func render(rng *rand.Rand, c Config) *scene {
	n := c.Size
	s := &scene{img: datasets.NewImage(n, n), semantic: make([]uint8, n*n)}
	bg := newBackground(rng, n)
	if c.Plain {
		bg.kind = backgroundPlain
	}

	ids := make([]int16, n*n) // 0 background, k+1 object k on top
	var objs []*object
	nObj := 1 + rng.IntN(c.MaxObjects)
	minArea := max(16, n*n/250)
	crowd := rng.Float64() < 0.15
	for k := 0; k < nObj; k++ {
		for attempt := 0; attempt < 20; attempt++ {
			o := newObject(rng, n, crowd && k == 0)
			if c.Plain {
				o.texture = 0
			}
			if o.area < minArea {
				continue
			}
			if !keepsVisible(objs, ids, o, minArea) {
				continue
			}
			objs = append(objs, o)
			for p, v := range o.full {
				if v != 0 {
					ids[p] = int16(len(objs))
				}
			}
			break
		}
	}
	// Paint.
	const noise = 6 // uniform pixel noise in [-noise, noise]
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			p := y*n + x
			var col [3]float64
			if id := ids[p]; id > 0 {
				o := objs[id-1]
				col = o.colour(x, y)
				s.semantic[p] = uint8(c.class(o.class) + 1)
			} else {
				col = bg.colour(x, y)
			}
			r := rng.Uint64()
			for ch := 0; ch < 3; ch++ {
				v := int(col[ch]+0.5) + int(r>>(8*ch)&0xff)*(2*noise+1)/256 - noise
				s.img.Pix[3*p+ch] = uint8(min(255, max(0, v)))
			}
		}
	}
	// Annotations of the visible parts.
	_, catIDs := c.classes()
	for k, o := range objs {
		vis := make([]uint8, n*n)
		area := 0
		for p, id := range ids {
			if int(id) == k+1 {
				vis[p] = 1
				area++
			}
		}
		box := coco.MaskBox(vis, n, n)
		a := coco.Annotation{
			CategoryID: catIDs[c.class(o.class)],
			Area:       float64(area),
			BBox:       []float64{float64(box[0]), float64(box[1]), float64(box[2] - box[0]), float64(box[3] - box[1])},
		}
		enc := rle.Encode(vis, n, n)
		switch {
		case o.crowd:
			a.IsCrowd = 1
			a.Segmentation = mustJSON(map[string]any{"counts": enc.Counts, "size": []int{n, n}})
		case area == o.area && o.hole == nil && inside(o.polys, n):
			a.Segmentation = mustJSON(o.polys)
		default:
			a.Segmentation = mustJSON(map[string]any{"counts": enc.String(), "size": []int{n, n}})
		}
		s.anns = append(s.anns, a)
	}
	return s
}

// keepsVisible reports whether placing o on top leaves every earlier object at least half and
// minArea of its full area visible.
func keepsVisible(objs []*object, ids []int16, o *object, minArea int) bool {
	if len(objs) == 0 {
		return true
	}
	vis := make([]int, len(objs)+1)
	for p, id := range ids {
		if id > 0 && o.full[p] == 0 {
			vis[id]++
		}
	}
	for k, prev := range objs {
		if v := vis[k+1]; v < minArea || 2*v < prev.area {
			return false
		}
	}
	return true
}

func inside(polys [][]float64, n int) bool {
	for _, p := range polys {
		for _, v := range p {
			if v < 0 || v > float64(n) {
				return false
			}
		}
	}
	return true
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// round2 rounds to 2 decimals, so the json holds exactly the coordinates rasterized here.
func round2(v float64) float64 { return math.Round(v*100) / 100 }

func newObject(rng *rand.Rand, n int, crowd bool) *object {
	o := &object{class: rng.IntN(len(Classes)), crowd: crowd}
	fn := float64(n)
	if crowd {
		cx, cy := fn*(0.2+0.6*rng.Float64()), fn*(0.2+0.6*rng.Float64())
		m := 4 + rng.IntN(4)
		for i := 0; i < m; i++ {
			r := fn * (0.035 + 0.025*rng.Float64())
			a := 2 * math.Pi * rng.Float64()
			d := fn * 0.12 * math.Sqrt(rng.Float64())
			o.polys = append(o.polys, shape(rng, o.class, cx+d*math.Cos(a), cy+d*math.Sin(a), r)...)
		}
	} else {
		r := fn * (0.08 + 0.17*rng.Float64())
		cx, cy := fn*(0.05+0.9*rng.Float64()), fn*(0.05+0.9*rng.Float64())
		polys := shape(rng, o.class, cx, cy, r)
		o.polys = polys[:1]
		if len(polys) > 1 {
			o.hole = polys[1]
		}
	}
	o.full = make([]uint8, n*n)
	for _, p := range o.polys {
		must(rle.FrPoly(p, n, n).DecodeInto(o.full))
	}
	if o.hole != nil {
		hole := make([]uint8, n*n)
		must(rle.FrPoly(o.hole, n, n).DecodeInto(hole))
		for p, v := range hole {
			if v != 0 {
				o.full[p] = 0
			}
		}
	}
	for _, v := range o.full {
		o.area += int(v)
	}
	o.col = randColour(rng)
	o.col2 = o.col
	for ch := range o.col2 {
		o.col2[ch] *= 0.55 + 0.3*rng.Float64()
	}
	o.texture = rng.IntN(3)
	a := 2 * math.Pi * rng.Float64()
	o.dir = [2]float64{math.Cos(a), math.Sin(a)}
	o.period = 3 + 5*rng.Float64()
	return o
}

// shape returns the outline of class at (cx, cy) with radius r; for a ring the second
// polygon is the hole.
func shape(rng *rand.Rand, class int, cx, cy, r float64) [][]float64 {
	rot := 2 * math.Pi * rng.Float64()
	aspect := 0.7 + 0.6*rng.Float64()
	poly := func(radii []float64, angles []float64) []float64 {
		out := make([]float64, 0, 2*len(radii))
		for i := range radii {
			x, y := radii[i]*math.Cos(angles[i]), radii[i]*math.Sin(angles[i])*aspect
			x, y = x*math.Cos(rot)-y*math.Sin(rot), x*math.Sin(rot)+y*math.Cos(rot)
			out = append(out, round2(cx+x), round2(cy+y))
		}
		return out
	}
	regular := func(k int, rad float64, phase float64) ([]float64, []float64) {
		radii, angles := make([]float64, k), make([]float64, k)
		for i := range radii {
			radii[i], angles[i] = rad, phase+2*math.Pi*float64(i)/float64(k)
		}
		return radii, angles
	}
	switch Classes[class] {
	case "disc":
		return [][]float64{poly(regular(28, r, 0))}
	case "square":
		return [][]float64{poly(regular(4, r, math.Pi/4))}
	case "triangle":
		radii, angles := regular(3, r, 0)
		for i := range angles {
			angles[i] += 0.25 * (rng.Float64() - 0.5)
		}
		return [][]float64{poly(radii, angles)}
	case "ring":
		inner := 0.4 + 0.2*rng.Float64()
		return [][]float64{poly(regular(28, r, 0)), poly(regular(28, r*inner, 0))}
	case "cross":
		w := r * (0.28 + 0.12*rng.Float64())
		pts := [][2]float64{{w, w}, {w, r}, {-w, r}, {-w, w}, {-r, w}, {-r, -w}, {-w, -w}, {-w, -r}, {w, -r}, {w, -w}, {r, -w}, {r, w}}
		radii, angles := make([]float64, len(pts)), make([]float64, len(pts))
		for i, p := range pts {
			radii[i], angles[i] = math.Hypot(p[0], p[1]), math.Atan2(p[1], p[0])
		}
		return [][]float64{poly(radii, angles)}
	default: // star
		k := 5
		inner := 0.38 + 0.15*rng.Float64()
		radii, angles := make([]float64, 2*k), make([]float64, 2*k)
		for i := range radii {
			radii[i], angles[i] = r, math.Pi*float64(i)/float64(k)
			if i%2 == 1 {
				radii[i] = r * inner
			}
		}
		return [][]float64{poly(radii, angles)}
	}
}

func (o *object) colour(x, y int) [3]float64 {
	t := float64(x)*o.dir[0] + float64(y)*o.dir[1]
	switch o.texture {
	case 1: // stripes
		if math.Mod(math.Abs(t), 2*o.period) < o.period {
			return o.col2
		}
		return o.col
	case 2: // shading
		f := 0.5 + 0.5*math.Sin(t/(4*o.period))
		return mix(o.col, o.col2, f)
	}
	return o.col
}

func randColour(rng *rand.Rand) [3]float64 {
	h := rng.Float64() * 6
	s := 0.45 + 0.55*rng.Float64()
	v := 90 + 165*rng.Float64()
	i := int(h)
	f := h - float64(i)
	p, q, t := v*(1-s), v*(1-s*f), v*(1-s*(1-f))
	switch i % 6 {
	case 0:
		return [3]float64{v, t, p}
	case 1:
		return [3]float64{q, v, p}
	case 2:
		return [3]float64{p, v, t}
	case 3:
		return [3]float64{p, q, v}
	case 4:
		return [3]float64{t, p, v}
	}
	return [3]float64{v, p, q}
}

func mix(a, b [3]float64, f float64) [3]float64 {
	return [3]float64{a[0] + (b[0]-a[0])*f, a[1] + (b[1]-a[1])*f, a[2] + (b[2]-a[2])*f}
}

// background is a procedural texture.
type background struct {
	kind, n  int
	c1, c2   [3]float64
	dir      [2]float64
	period   float64
	grid     []float64
	cell, gw int
}

func newBackground(rng *rand.Rand, n int) *background {
	b := &background{kind: rng.IntN(4), n: n, c1: randColour(rng), c2: randColour(rng)}
	for ch := range b.c1 { // muted backgrounds
		b.c1[ch] = 0.6*b.c1[ch] + 40
		b.c2[ch] = 0.6*b.c2[ch] + 40
	}
	a := 2 * math.Pi * rng.Float64()
	b.dir = [2]float64{math.Cos(a), math.Sin(a)}
	b.period = float64(n) * (0.04 + 0.1*rng.Float64())
	if b.kind == 2 {
		b.cell = max(4, n/(3+rng.IntN(6)))
		b.gw = n/b.cell + 2
		b.grid = make([]float64, b.gw*b.gw)
		for i := range b.grid {
			b.grid[i] = rng.Float64()
		}
	}
	return b
}

// backgroundPlain is the kind of a flat background (Config.Plain): its first colour.
const backgroundPlain = -1

func (b *background) colour(x, y int) [3]float64 {
	fx, fy := float64(x), float64(y)
	t := fx*b.dir[0] + fy*b.dir[1]
	switch b.kind {
	case backgroundPlain:
		return b.c1
	case 0: // gradient
		tc := float64(b.n) / 2 * (b.dir[0] + b.dir[1])
		return mix(b.c1, b.c2, clamp01(0.5+(t-tc)/float64(b.n)))
	case 1: // stripes
		return mix(b.c1, b.c2, 0.5+0.5*math.Sin(2*math.Pi*t/b.period))
	case 2: // value noise
		gx, gy := fx/float64(b.cell), fy/float64(b.cell)
		ix, iy := int(gx), int(gy)
		ax, ay := smooth(gx-float64(ix)), smooth(gy-float64(iy))
		v00, v10 := b.grid[iy*b.gw+ix], b.grid[iy*b.gw+ix+1]
		v01, v11 := b.grid[(iy+1)*b.gw+ix], b.grid[(iy+1)*b.gw+ix+1]
		v := (v00*(1-ax)+v10*ax)*(1-ay) + (v01*(1-ax)+v11*ax)*ay
		return mix(b.c1, b.c2, v)
	default: // rotated checkerboard
		u := fx*b.dir[0] + fy*b.dir[1]
		v := -fx*b.dir[1] + fy*b.dir[0]
		if (int(math.Floor(u/b.period))+int(math.Floor(v/b.period)))%2 == 0 {
			return b.c1
		}
		return b.c2
	}
}

func smooth(t float64) float64 { return t * t * (3 - 2*t) }

func clamp01(v float64) float64 { return math.Max(0, math.Min(1, v)) }

// must panics on an error that generated (always valid) data cannot produce.
func must(err error) {
	if err != nil {
		panic(err)
	}
}
