// Package pretraintest makes small pre-trained teachers for the tests of the code that uses
// them (the teachers, distillation, the sample command).
package pretraintest

import (
	"io"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets/imagenet/imagenettest"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
)

// ConditionalGAN pre-trains the class-conditional biggan_tiny with 3 classes (num_classes) for
// one step on a generated ImageNet-layout folder of 3 classes of 2 JPEGs, and returns its
// checkpoint.
func ConditionalGAN(t testing.TB) string {
	t.Helper()
	root := imagenettest.Folder(t, []string{"train"}, 3, 2, 32)
	store, err := configs.NewStore(pretrain.GANDefaults(), nil, "dataset=imagenet", "data="+root, "biggan=biggan_tiny", "num_classes=3",
		"batch=2", "steps=1", "d_steps=1", "samples=0", "workers=1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := pretrain.GAN(backend.Go(), store, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return res.Checkpoint
}
