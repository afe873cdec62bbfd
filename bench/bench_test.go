package bench

import (
	"os"
	"runtime/pprof"
	"strconv"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/ml/model"
)

func TestRunSmall(t *testing.T) {
	r, err := Run(backend.Go(), "resnet18-cifar", 8, 2, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.MedianStep <= 0 || r.GFLOPPerStep <= 0 || r.ImagesPerS <= 0 {
		t.Errorf("result %+v", r)
	}
	if _, err := Run(backend.Go(), "nope", 8, 2, 1, 1); err == nil {
		t.Error("unknown workload must fail")
	}
}

// TestProfile writes a CPU profile of the ResNet-18 step when BENCH_PROFILE is set
// (image size BENCH_PROFILE_SIZE, default 32).
func TestProfile(t *testing.T) {
	path := os.Getenv("BENCH_PROFILE")
	if path == "" {
		t.Skip("set BENCH_PROFILE=file.prof to profile the ResNet-18 step")
	}
	size := 32
	if v := os.Getenv("BENCH_PROFILE_SIZE"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			size = n
		}
	}
	lossFn, inputs := resnet18CIFAR(size, 8)
	store := model.NewStore()
	tr, err := train.NewTrainer(backend.Go(), store, train.Config{
		Optimizer: train.OptimizerConfig{Name: "adamw"}, Schedule: train.Schedule{Kind: "constant", BaseLR: 1e-3},
	}, lossFn)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		tr.Step(inputs...)
	}
	f, _ := os.Create(path)
	pprof.StartCPUProfile(f)
	for range 4 {
		tr.Step(inputs...)
	}
	pprof.StopCPUProfile()
	f.Close()
}

func TestVerifySameBackendIsExact(t *testing.T) {
	v, err := Verify(backend.Go(), backend.Go(), "resnet18-cifar", 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	if v.LossRef != v.LossGot || v.MaxGradRelErr != 0 || v.NumGradsCompared < 60 {
		t.Errorf("verification of a backend against itself: %+v", v)
	}
}
