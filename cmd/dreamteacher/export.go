package main

import (
	"fmt"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/gomlx/compute/dtypes"
)

func init() {
	register("export", "write the weights a run's users need (e.g. a teacher's EMA UNet), optionally in half precision, as a small checkpoint", runExport)
}

// runExport writes the variables under --scope of a checkpoint to --out, with its settings and
// command, so that the file stands in for the run wherever a checkpoint is read (a teacher for
// distill or interpret, a backbone for finetune). --dtype float16 halves a float32 model; the
// weights are converted back to the model's precision when loaded.
func runExport(args []string) error {
	fs, _ := flagSet("export")
	ckpt := fs.String("checkpoint", "", "the checkpoint (file, or a run folder: its newest)")
	out := fs.String("out", "", "the .safetensors file to write")
	scopes := fs.String("scope", pretrain.EMAScope, "comma-separated scopes to keep (the default: a diffusion teacher's EMA UNet)")
	dtypeFlag := fs.String("dtype", "", "float16, bfloat16, float32 or float64 for the floating-point weights (default: as stored)")
	if err := parse(fs, args); err != nil {
		return err
	}
	src, err := checkpointPath("checkpoint", *ckpt)
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	dtype := dtypes.InvalidDType
	switch *dtypeFlag {
	case "":
	case "float16":
		dtype = dtypes.Float16
	case "bfloat16":
		dtype = dtypes.BFloat16
	case "float32":
		dtype = dtypes.Float32
	case "float64":
		dtype = dtypes.Float64
	default:
		return usagef("--dtype %q: want float16, bfloat16, float32 or float64", *dtypeFlag)
	}
	n, err := train.Export(src, *out, strings.Split(*scopes, ","), dtype)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d tensors under %s of %s -> %s\n", n, *scopes, src, *out)
	return nil
}
