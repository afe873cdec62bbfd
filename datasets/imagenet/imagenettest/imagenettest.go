// Package imagenettest writes small labelled folders in the ImageNet layout for the tests of
// the recipes that read labelled images (class-conditional GAN pre-training, the conditional
// GAN teacher, linear probes): root/<split>/<wnid>/<wnid>_<i>.JPEG.
package imagenettest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

// WNID is the WordNet id of class c in the folders written here (sorted as c).
func WNID(c int) string { return fmt.Sprintf("n%08d", 1440764+c) }

// Folder writes, under a new temporary folder, the given splits with `classes` classes of
// perClass size x size images each, and returns its root. Class c's images are colour
// gradients of hue c, each with its own direction and noise, so that classes are separable
// from their colours but no two images are equal.
func Folder(t testing.TB, splits []string, classes, perClass, size int) string {
	t.Helper()
	root := t.TempDir()
	for s, split := range splits {
		rng := rand.New(rand.NewPCG(uint64(classes), uint64(perClass)+uint64(s)<<32))
		for c := range classes {
			for i := range perClass {
				m := datasets.NewImage(size, size)
				a, b := rng.Float64()*2-1, rng.Float64()*2-1
				for y := range size {
					for x := range size {
						v := 0.5 + 0.5*math.Tanh(a*float64(2*x-size)/float64(size)+b*float64(2*y-size)/float64(size))
						for ch := range 3 {
							hue := 0.5 + 0.5*math.Cos(2*math.Pi*(float64(c)/float64(classes)+float64(ch)/3))
							m.Pix[(y*size+x)*3+ch] = uint8(math.Min(255, 255*v*hue+20*rng.Float64()))
						}
					}
				}
				path := filepath.Join(root, split, WNID(c), fmt.Sprintf("%s_%d.JPEG", WNID(c), i))
				if err := datasets.WriteJPEG(path, m, 90); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return root
}
