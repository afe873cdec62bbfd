package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/imagefolder"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
)

// labelmePhotos are real photographs installed by Debian's labelme-examples package.
const labelmePhotos = "/usr/share/doc/labelme-examples/examples/instance_segmentation/data_dataset_voc/JPEGImages"

// writeJPEGs writes n JPEGs of size x size: crops of real photographs when available (JPEG
// decoding cost depends on image content), else random noise blocks.
func writeJPEGs(tb testing.TB, dir string, n, size int) {
	tb.Helper()
	var photos []datasets.Image
	if paths, err := datasets.ListFiles(labelmePhotos, datasets.ImageExts, "photos"); err == nil {
		for _, p := range paths {
			if m, err := datasets.ReadImage(p); err == nil && m.W >= size && m.H >= size/2 {
				photos = append(photos, m)
			}
		}
	}
	for i := 0; i < n; i++ {
		var s datasets.Sample
		if len(photos) > 0 {
			s.Image = photos[i%len(photos)]
			s.Image.Pix = append([]uint8(nil), s.Image.Pix...)
			if err := transforms.Resize(&s, size+i%7*8, size+i%5*8); err != nil {
				tb.Fatal(err)
			}
			if err := transforms.Crop(&s, i%7*8, i%5*8, size, size); err != nil {
				tb.Fatal(err)
			}
		} else {
			s.Image = datasets.NewImage(size, size)
			for p := range s.Image.Pix {
				s.Image.Pix[p] = uint8((p*7 + i*13) ^ (p / 97))
			}
		}
		if err := datasets.WriteJPEG(filepath.Join(dir, fmt.Sprintf("%04d.jpg", i)), s.Image, 90); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkJPEG256 measures decoded + augmented (ImageNetTrain at 256) 256x256 JPEGs per
// second with 1 and 2 workers. Run: go test -run XXX -bench JPEG ./datasets/loader
func BenchmarkJPEG256(b *testing.B) {
	dir := b.TempDir()
	writeJPEGs(b, dir, 64, 256)
	benchLoader(b, dir, transforms.ImageNetTrain(256))
}

// BenchmarkJPEGPhoto measures ImageNet-like 500x375 photographs (labelme-examples) through
// ImageNetTrain(224).
func BenchmarkJPEGPhoto(b *testing.B) {
	if _, err := os.Stat(labelmePhotos); err != nil {
		b.Skip("labelme-examples is not installed")
	}
	benchLoader(b, labelmePhotos, transforms.ImageNetTrain(224))
}

func benchLoader(b *testing.B, dir string, tr transforms.Transform) {
	ds, err := imagefolder.Open(dir, "", datasets.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			cfg := Config{BatchSize: 32, Transform: tr, Workers: workers, Shuffle: true}
			for i := 0; i < b.N; i++ {
				tp, err := MeasureThroughput(ds, cfg, 512)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(tp.PerSecond, "images/s")
				b.ReportMetric(tp.PerWorker, "images/s/worker")
			}
		})
	}
}

func TestMeasureThroughput(t *testing.T) {
	dir := t.TempDir()
	writeJPEGs(t, dir, 8, 64)
	ds, err := imagefolder.Open(dir, "", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := MeasureThroughput(ds, Config{BatchSize: 4, Transform: transforms.ImageNetTrain(64)}, 16)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Images < 16 || tp.PerSecond <= 0 || tp.Workers != 2 {
		t.Errorf("throughput %v", tp)
	}
	t.Log(tp)
}
