// Package loader turns a datasets.Dataset into fixed-shape GoMLX batches: samples are decoded
// and transformed by parallel workers, batches are prefetched, and iteration is deterministic
// and resumable.
//
// Determinism: the visiting order of an epoch is a permutation drawn from (Seed, epoch) (or the
// dataset order without Shuffle), and each sample's transform draws from a generator seeded by
// (Seed, epoch, dataset index). The batches are therefore the same whatever the number of
// workers, and Iterate(Position{Epoch: e, Batch: b}, ...) reproduces exactly what an
// uninterrupted run yields from that position.
//
// Fixed shapes: every batch has BatchSize samples. The last, partial batch of an epoch is padded
// by repeating its samples, and Valid (1/0) marks the real ones. Transforms must give every
// sample the same size (a batch of mixed sizes is an error naming the sample). Images are
// float32 [N,H,W,3] in [0,1] (or normalized with Config.Normalize; models normalize in the graph
// otherwise), Semantic int32 [N,H,W] (255 = ignore), Labels int32 [N] (-1 = none), Valid
// float32 [N]; with MaxInstances = M > 0 also Boxes float32 [N,M,4] (x0,y0,x1,y1 pixels),
// Classes int32 [N,M] (-1 = padding), Crowd int32 [N,M] and Masks uint8 [N,M,H,W].
//
// Bad samples: by default the first sample that fails to load ends the iteration with its
// error (which names the file). With SkipBad the sample is left out of its batch (which is
// padded as above; a batch with no good sample is skipped) and recorded: Skipped lists every
// skipped sample once with its error. Instances beyond MaxInstances and instances emptied by
// transforms are counted in Stats; nothing is dropped silently.
package loader

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
)

// Config says how to batch a dataset.
type Config struct {
	BatchSize int
	// Transform is applied to each sample (nil: none). It must give all samples one size.
	Transform transforms.Transform
	// Shuffle draws a new order every epoch from (Seed, epoch).
	Shuffle bool
	// Seed of the order and of the per-sample transform randomness.
	Seed int64
	// Workers decoding and transforming samples in parallel (default 2).
	Workers int
	// Prefetch is the number of batches prepared ahead of the consumer (default 2).
	Prefetch int
	// MaxInstances > 0 adds the padded instance tensors with that many slots per sample.
	MaxInstances int
	// SkipBad skips samples that fail to load instead of stopping (see Skipped).
	SkipBad bool
	// Normalize, when set, normalizes the float images (else they are in [0,1]).
	Normalize *transforms.Normalization
}

// Position addresses a batch: batch Batch of epoch Epoch.
type Position struct{ Epoch, Batch int }

// Batch is one fixed-shape batch. Tensors are local (host) tensors.
type Batch struct {
	Position Position
	Images   *tensors.Tensor // float32 [N,H,W,3]
	Semantic *tensors.Tensor // int32 [N,H,W], nil when the dataset has no semantic masks
	Labels   *tensors.Tensor // int32 [N], -1 = none
	Valid    *tensors.Tensor // float32 [N], 1 = real sample, 0 = padding
	Boxes    *tensors.Tensor // float32 [N,M,4], nil unless MaxInstances > 0
	Classes  *tensors.Tensor // int32 [N,M], -1 = no instance
	Crowd    *tensors.Tensor // int32 [N,M], 1 = crowd region
	Masks    *tensors.Tensor // uint8 [N,M,H,W]
	NumValid int             // real samples: the first NumValid of the batch
	Paths    []string        // per slot (padding repeats real samples)
	Indices  []int           // dataset index per slot
}

// Skip is a sample left out under SkipBad.
type Skip struct {
	Index int // dataset index
	Path  string
	Err   error
}

// Stats counts what the loader did since New.
type Stats struct {
	Samples            int64 // real samples delivered
	Skipped            int64 // sample loads skipped (a bad sample counts once per epoch)
	DroppedInstances   int64 // instances removed by transforms (cropped out or emptied)
	TruncatedInstances int64 // instances beyond MaxInstances, left out of the tensors
}

// Loader batches a dataset.
type Loader struct {
	ds  datasets.Dataset
	cfg Config

	mu      sync.Mutex
	skipped map[int]Skip

	samples, skips, dropped, truncated atomic.Int64
}

// New checks the configuration and makes a loader.
func New(ds datasets.Dataset, cfg Config) (*Loader, error) {
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("loader: BatchSize must be positive, got %d", cfg.BatchSize)
	}
	if ds.Len() == 0 {
		return nil, fmt.Errorf("loader: dataset %s is empty", ds.Name())
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 2
	}
	if cfg.MaxInstances < 0 {
		return nil, fmt.Errorf("loader: MaxInstances must not be negative, got %d", cfg.MaxInstances)
	}
	return &Loader{ds: ds, cfg: cfg, skipped: map[int]Skip{}}, nil
}

// Dataset is the dataset batched.
func (l *Loader) Dataset() datasets.Dataset { return l.ds }

// BatchesPerEpoch is ceil(Len / BatchSize).
func (l *Loader) BatchesPerEpoch() int { return (l.ds.Len() + l.cfg.BatchSize - 1) / l.cfg.BatchSize }

// Next is the position after p.
func (l *Loader) Next(p Position) Position {
	p.Batch++
	if p.Batch >= l.BatchesPerEpoch() {
		p.Epoch, p.Batch = p.Epoch+1, 0
	}
	return p
}

// splitmix64 scrambles seeds.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Order is the sequence of dataset indices visited in epoch.
func (l *Loader) Order(epoch int) []int {
	n := l.ds.Len()
	if !l.cfg.Shuffle {
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		return order
	}
	rng := rand.New(rand.NewPCG(splitmix64(uint64(l.cfg.Seed)), splitmix64(uint64(epoch)^0x5eed)))
	return rng.Perm(n)
}

// SampleRNG is the generator of the transform of dataset sample index in epoch.
func SampleRNG(seed int64, epoch, index int) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix64(uint64(seed)^splitmix64(uint64(epoch))), splitmix64(uint64(index))))
}

// Skipped lists the samples skipped so far under SkipBad, each once, by dataset index.
func (l *Loader) Skipped() []Skip {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Skip, 0, len(l.skipped))
	for _, s := range l.skipped {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Stats returns the counters.
func (l *Loader) Stats() Stats {
	return Stats{Samples: l.samples.Load(), Skipped: l.skips.Load(),
		DroppedInstances: l.dropped.Load(), TruncatedInstances: l.truncated.Load()}
}

// Epoch iterates over the batches of one epoch.
func (l *Loader) Epoch(epoch int) iter.Seq2[*Batch, error] {
	return func(yield func(*Batch, error) bool) {
		it := l.Iterate(Position{Epoch: epoch}, 1)
		defer it.Close()
		for {
			b, err := it.Next()
			if err == io.EOF {
				return
			}
			if !yield(b, err) || err != nil {
				return
			}
		}
	}
}

// Iterate starts the workers and returns an iterator over batches from position start to the
// end of epoch start.Epoch+epochs-1 (epochs <= 0: without end). Close it when done.
func (l *Loader) Iterate(start Position, epochs int) *Iterator {
	it := &Iterator{
		l:     l,
		order: make(chan *job, l.cfg.Prefetch),
		work:  make(chan task, l.cfg.BatchSize),
		done:  make(chan struct{}),
	}
	end := -1
	if epochs > 0 {
		end = start.Epoch + epochs
	}
	if start.Batch >= l.BatchesPerEpoch() || start.Batch < 0 || start.Epoch < 0 {
		it.err = fmt.Errorf("loader: position %+v outside the %d batches of an epoch", start, l.BatchesPerEpoch())
		close(it.order)
		return it
	}
	it.wg.Add(1 + l.cfg.Workers)
	go it.produce(start, end)
	for w := 0; w < l.cfg.Workers; w++ {
		go it.worker()
	}
	return it
}

// Iterator yields batches in order; Next returns io.EOF after the last one.
type Iterator struct {
	l      *Loader
	order  chan *job
	work   chan task
	done   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
	err    error
}

type job struct {
	pos       Position
	idx       []int
	samples   []datasets.Sample
	errs      []error
	remaining atomic.Int32
	ready     chan struct{}
	batch     *Batch
	err       error
}

type task struct {
	j    *job
	slot int
}

func (it *Iterator) produce(pos Position, endEpoch int) {
	defer it.wg.Done()
	defer close(it.order)
	l := it.l
	bs := l.cfg.BatchSize
	var order []int
	orderEpoch := -1
	for endEpoch < 0 || pos.Epoch < endEpoch {
		if orderEpoch != pos.Epoch {
			order, orderEpoch = l.Order(pos.Epoch), pos.Epoch
		}
		lo, hi := pos.Batch*bs, min((pos.Batch+1)*bs, len(order))
		j := &job{pos: pos, idx: order[lo:hi], ready: make(chan struct{})}
		j.samples = make([]datasets.Sample, len(j.idx))
		j.errs = make([]error, len(j.idx))
		j.remaining.Store(int32(len(j.idx)))
		select {
		case it.order <- j:
		case <-it.done:
			return
		}
		for slot := range j.idx {
			select {
			case it.work <- task{j, slot}:
			case <-it.done:
				return
			}
		}
		pos = l.Next(pos)
	}
}

func (it *Iterator) worker() {
	defer it.wg.Done()
	l := it.l
	for {
		var t task
		select {
		case t = <-it.work:
		case <-it.done:
			return
		}
		j := t.j
		idx := j.idx[t.slot]
		s, err := l.load(j.pos.Epoch, idx)
		j.samples[t.slot], j.errs[t.slot] = s, err
		if j.remaining.Add(-1) == 0 {
			j.batch, j.err = l.assemble(j)
			j.samples = nil
			close(j.ready)
		}
	}
}

// load reads and transforms one sample; panics in dataset or transform code become errors.
func (l *Loader) load(epoch, idx int) (s datasets.Sample, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sample %d (%s): panic: %v", idx, l.path(idx, s), r)
		}
	}()
	s, err = l.ds.Get(idx)
	if err != nil {
		return s, err
	}
	if l.cfg.Transform != nil {
		if err = l.cfg.Transform.Apply(&s, SampleRNG(l.cfg.Seed, epoch, idx)); err != nil {
			return s, fmt.Errorf("%s: transform: %w", l.path(idx, s), err)
		}
	}
	return s, nil
}

func (l *Loader) path(idx int, s datasets.Sample) string {
	if p, ok := l.ds.(datasets.Pather); ok {
		return p.Path(idx)
	}
	return s.Path
}

// Next returns the next batch, io.EOF after the last, or the error that ended the iteration.
func (it *Iterator) Next() (*Batch, error) {
	for {
		if it.err != nil {
			return nil, it.err
		}
		j, ok := <-it.order
		if !ok {
			it.err = io.EOF
			return nil, io.EOF
		}
		select {
		case <-j.ready:
		case <-it.done:
			return nil, errors.New("loader: iterator closed")
		}
		if j.err != nil {
			it.err = j.err
			it.Close()
			return nil, j.err
		}
		if j.batch != nil {
			return j.batch, nil
		}
	}
}

// Feed is a training loop's next function (train.Run) over the iterator: each batch mapped to
// the step's inputs by pick (e.g. ImagesOnly), the iteration's error passed through.
func (it *Iterator) Feed(pick func(*Batch) []*tensors.Tensor) func() ([]*tensors.Tensor, error) {
	return func() ([]*tensors.Tensor, error) {
		batch, err := it.Next()
		if err != nil {
			return nil, err
		}
		return pick(batch), nil
	}
}

// ImagesOnly picks a batch's images: the input of the unlabeled recipes (teachers, SSL).
func ImagesOnly(b *Batch) []*tensors.Tensor { return []*tensors.Tensor{b.Images} }

// ImagesAndMasks picks a batch's images, semantic masks and valid flags: the input of the
// semantic segmentation recipes.
func ImagesAndMasks(b *Batch) []*tensors.Tensor {
	return []*tensors.Tensor{b.Images, b.Semantic, b.Valid}
}

// Close stops the workers and waits for them. Safe to call more than once.
func (it *Iterator) Close() {
	it.closed.Do(func() {
		close(it.done)
		// Unblock a producer waiting on a full order channel.
		go func() {
			for range it.order {
			}
		}()
		it.wg.Wait()
	})
}

// assemble builds the batch of a job whose samples are all loaded.
func (l *Loader) assemble(j *job) (*Batch, error) {
	var good []int
	for slot, err := range j.errs {
		if err == nil {
			good = append(good, slot)
			continue
		}
		idx := j.idx[slot]
		if !l.cfg.SkipBad {
			return nil, fmt.Errorf("loader: epoch %d batch %d, sample %d: %w", j.pos.Epoch, j.pos.Batch, idx, err)
		}
		l.skips.Add(1)
		l.mu.Lock()
		if _, seen := l.skipped[idx]; !seen {
			l.skipped[idx] = Skip{Index: idx, Path: l.path(idx, j.samples[slot]), Err: err}
		}
		l.mu.Unlock()
	}
	if len(good) == 0 {
		return nil, nil
	}
	n := l.cfg.BatchSize
	first := j.samples[good[0]]
	w, h := first.Image.W, first.Image.H
	hasSem := first.Semantic != nil
	for _, slot := range good {
		s := j.samples[slot]
		if s.Image.W != w || s.Image.H != h {
			return nil, fmt.Errorf("loader: epoch %d batch %d: sample %s is %dx%d, %s is %dx%d: set a Transform that gives all samples one size",
				j.pos.Epoch, j.pos.Batch, s.Path, s.Image.W, s.Image.H, first.Path, w, h)
		}
		if (s.Semantic != nil) != hasSem {
			return nil, fmt.Errorf("loader: epoch %d batch %d: %s and %s differ in having a semantic mask", j.pos.Epoch, j.pos.Batch, s.Path, first.Path)
		}
	}
	// Slot k of the batch holds sample src[k]: the good ones, then repeats.
	src := make([]int, n)
	for k := range src {
		src[k] = good[k%len(good)]
	}
	b := &Batch{Position: j.pos, NumValid: len(good), Paths: make([]string, n), Indices: make([]int, n)}
	for k, slot := range src {
		b.Paths[k] = j.samples[slot].Path
		b.Indices[k] = j.idx[slot]
	}
	hw := h * w
	b.Images = tensors.FromShape(shapes.Make(dtypes.Float32, n, h, w, 3))
	tensors.MustMutableFlatData(b.Images, func(flat []float32) {
		for k, slot := range src {
			if k >= len(good) {
				copy(flat[k*hw*3:(k+1)*hw*3], flat[(k%len(good))*hw*3:])
				continue
			}
			transforms.ToFloat(flat[k*hw*3:(k+1)*hw*3], j.samples[slot].Image.Pix, l.cfg.Normalize)
		}
	})
	if hasSem {
		b.Semantic = tensors.FromShape(shapes.Make(dtypes.Int32, n, h, w))
		tensors.MustMutableFlatData(b.Semantic, func(flat []int32) {
			for k, slot := range src {
				dst := flat[k*hw : (k+1)*hw]
				for i, v := range j.samples[slot].Semantic {
					dst[i] = int32(v)
				}
			}
		})
	}
	labels := make([]int32, n)
	valid := make([]float32, n)
	for k, slot := range src {
		labels[k] = int32(j.samples[slot].Label)
		if k < len(good) {
			valid[k] = 1
		}
	}
	b.Labels = tensors.FromFlatDataAndDimensions(labels, n)
	b.Valid = tensors.FromFlatDataAndDimensions(valid, n)
	for _, slot := range good {
		l.dropped.Add(int64(j.samples[slot].Dropped))
	}
	if m := l.cfg.MaxInstances; m > 0 {
		boxes := make([]float32, n*m*4)
		classes := make([]int32, n*m)
		crowd := make([]int32, n*m)
		for i := range classes {
			classes[i] = -1
		}
		b.Masks = tensors.FromShape(shapes.Make(dtypes.Uint8, n, m, h, w))
		tensors.MustMutableFlatData(b.Masks, func(masks []uint8) {
			for k, slot := range src {
				insts := j.samples[slot].Instances
				if len(insts) > m {
					if k < len(good) {
						l.truncated.Add(int64(len(insts) - m))
					}
					insts = insts[:m]
				}
				for q, inst := range insts {
					o := k*m + q
					copy(boxes[4*o:4*o+4], inst.Box[:])
					classes[o] = int32(inst.Class)
					if inst.IsCrowd {
						crowd[o] = 1
					}
					if inst.Mask != nil {
						copy(masks[o*hw:(o+1)*hw], inst.Mask)
					}
				}
			}
		})
		b.Boxes = tensors.FromFlatDataAndDimensions(boxes, n, m, 4)
		b.Classes = tensors.FromFlatDataAndDimensions(classes, n, m)
		b.Crowd = tensors.FromFlatDataAndDimensions(crowd, n, m)
	}
	l.samples.Add(int64(len(good)))
	return b, nil
}

// IterateFrom iterates without end from the n-th batch of the whole run (0-based, counting
// across epochs): a training run that has taken n steps of one batch resumes exactly with
// IterateFrom(n).
func (l *Loader) IterateFrom(n int64) *Iterator {
	per := int64(l.BatchesPerEpoch())
	return l.Iterate(Position{Epoch: int(n / per), Batch: int(n % per)}, math.MaxInt32)
}

// SkippedLines lists the skipped samples as "path: error" lines, in dataset order: what a run
// reports of them.
func (l *Loader) SkippedLines() []string {
	var out []string
	for _, s := range l.Skipped() {
		out = append(out, fmt.Sprintf("%s: %v", s.Path, s.Err))
	}
	return out
}
