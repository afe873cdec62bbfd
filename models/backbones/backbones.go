// Package backbones defines what every image backbone returns — named multi-scale feature maps
// with declared channels and strides — and the registry of backbones by name.
//
// A backbone family lives in its own sub-package (resnet, convnext) and registers its named
// configurations in init; import models/backbones/all to get all of them.
package backbones

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Info describes one feature level.
type Info struct {
	Name     string // "C2".."C5"
	Channels int
	Stride   int // input pixels per feature pixel
}

// Features are the multi-scale outputs of a backbone, finest first.
type Features struct {
	Info []Info
	Maps map[string]*Node // by Info.Name, each [N, H/stride, W/stride, channels]
}

// Add appends a level, checking that strides only increase and that the map matches its info.
func (f *Features) Add(info Info, x *Node) {
	if n := len(f.Info); n > 0 && info.Stride <= f.Info[n-1].Stride {
		exceptions.Panicf("backbone feature %s has stride %d after %s with stride %d: strides must increase",
			info.Name, info.Stride, f.Info[n-1].Name, f.Info[n-1].Stride)
	}
	if x.Shape().Dim(-1) != info.Channels {
		exceptions.Panicf("backbone feature %s declares %d channels, its map is %s", info.Name, info.Channels, x.Shape())
	}
	if f.Maps == nil {
		f.Maps = map[string]*Node{}
	}
	f.Info = append(f.Info, info)
	f.Maps[info.Name] = x
}

// Get returns the map of the named level; a wrong name panics listing the known ones.
func (f *Features) Get(name string) *Node {
	x, ok := f.Maps[name]
	if !ok {
		exceptions.Panicf("no feature level %q: the backbone has %s", name, strings.Join(f.Names(), ", "))
	}
	return x
}

// Names of the levels, finest first.
func (f *Features) Names() []string {
	names := make([]string, len(f.Info))
	for i, info := range f.Info {
		names[i] = info.Name
	}
	return names
}

// Last is the coarsest level.
func (f *Features) Last() *Node { return f.Maps[f.Info[len(f.Info)-1].Name] }

// Options common to all backbones.
type Options struct {
	// NumClasses > 0 adds the classification head ("head" scope) and returns logits.
	NumClasses int
	// SmallInputStem replaces the stem by one for tiny (e.g. 32x32) images: ResNet's CIFAR stem
	// (3x3 stride-1 conv, no max-pool; feature strides 1, 2, 4, 8) or a 2x2 stride-2 ConvNeXt
	// stem (strides 2, 4, 8, 16).
	SmallInputStem bool
	// DropPath is the stochastic depth rate of the last block (ConvNeXt), linearly increasing.
	DropPath float64
}

// Output of a backbone.
type Output struct {
	Features Features
	Logits   *Node // [N, NumClasses], nil without a head
}

// BuildFn builds a backbone on images x [N, H, W, 3] under scope.
type BuildFn func(scope *model.Scope, x *Node, opts Options) Output

// Entry is a registered backbone.
type Entry struct {
	Name   string
	Family string
	Build  BuildFn
	// Levels declares the feature levels (channels, strides with the standard stem), known
	// without building a graph.
	Levels []Info
	// Reference is where the parameter count with a 1000-class head comes from, and the count.
	Reference      string
	ReferenceCount int
}

var (
	mu       sync.Mutex
	registry = map[string]Entry{}
)

// Register adds a backbone; registering a name twice panics.
func Register(e Entry) {
	mu.Lock()
	defer mu.Unlock()
	if _, ok := registry[e.Name]; ok {
		panic(fmt.Sprintf("backbone %q registered twice", e.Name))
	}
	registry[e.Name] = e
}

// Get returns the named backbone, or an error listing the known names.
func Get(name string) (Entry, error) {
	mu.Lock()
	defer mu.Unlock()
	e, ok := registry[name]
	if !ok {
		return Entry{}, fmt.Errorf("unknown backbone %q: known backbones are %s", name, strings.Join(namesLocked(), ", "))
	}
	return e, nil
}

// Names lists the registered backbones, sorted.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	return namesLocked()
}

func namesLocked() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LevelNames are the names of the four standard levels, strides 4 to 32.
var LevelNames = []string{"C2", "C3", "C4", "C5"}

// Stride returns the stride of a named standard level, or 0.
func Stride(level string) int {
	if i := slices.Index(LevelNames, level); i >= 0 {
		return 4 << i
	}
	return 0
}

// ImageNet mean and standard deviation of RGB values in [0, 1], the input normalisation of
// every backbone (torchvision's and timm's).
var (
	ImageNetMean = [3]float64{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float64{0.229, 0.224, 0.225}
)

// Normalize maps images [N, H, W, 3] with values in [0, 1] to the backbones' input:
// (x - ImageNetMean) / ImageNetStd per channel.
func Normalize(x *Node) *Node {
	g := x.Graph()
	mean := ConvertDType(Reshape(Const(g, ImageNetMean[:]), 1, 1, 1, 3), x.DType())
	std := ConvertDType(Reshape(Const(g, ImageNetStd[:]), 1, 1, 1, 3), x.DType())
	return Div(Sub(x, mean), std)
}
