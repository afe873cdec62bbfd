package loader

import (
	"fmt"
	"time"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

// Throughput is a measured loading rate.
type Throughput struct {
	Images    int     // real samples timed
	Seconds   float64 // wall time
	PerSecond float64 // Images / Seconds
	Workers   int
	PerWorker float64 // PerSecond / Workers: the rate of one core
}

func (t Throughput) String() string {
	return fmt.Sprintf("%d images in %.2fs: %.1f images/s with %d workers (%.1f per worker)",
		t.Images, t.Seconds, t.PerSecond, t.Workers, t.PerWorker)
}

// MeasureThroughput times the loader on ds with cfg — decoding, transforming and batching —
// over at least images samples after one warm-up batch, cycling epochs as needed. For the
// standard figure, use 256x256 JPEGs (e.g. scenes.Generate with Size 256, read by imagefolder)
// with transforms.ImageNetTrain(256) and 2 workers.
func MeasureThroughput(ds datasets.Dataset, cfg Config, images int) (Throughput, error) {
	l, err := New(ds, cfg)
	if err != nil {
		return Throughput{}, err
	}
	it := l.Iterate(Position{}, 0)
	defer it.Close()
	if _, err := it.Next(); err != nil { // warm-up: workers started, first batch ready
		return Throughput{}, err
	}
	start := time.Now()
	n := 0
	for n < images {
		b, err := it.Next()
		if err != nil {
			return Throughput{}, err
		}
		n += b.NumValid
	}
	secs := time.Since(start).Seconds()
	t := Throughput{Images: n, Seconds: secs, PerSecond: float64(n) / secs, Workers: l.cfg.Workers}
	t.PerWorker = t.PerSecond / float64(t.Workers)
	return t, nil
}
