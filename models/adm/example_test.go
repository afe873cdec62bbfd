package adm_test

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/models/adm"
)

// The teacher features of the official 256x256 model: DreamTeacher's P5..P2 levels.
func ExampleDefaultTaps() {
	cfg := adm.Configs["adm_256x256_uncond"]
	for _, name := range adm.DefaultTaps(cfg) {
		info, _ := adm.LookupTap(cfg, name)
		fmt.Printf("%s: %d channels, stride %d\n", info.Name, info.Channels, info.Stride)
	}
	fmt.Println(adm.NumParams(cfg), "parameters")
	// Output:
	// dec_s32: 1024 channels, stride 32
	// dec_s16: 1024 channels, stride 16
	// dec_s8: 512 channels, stride 8
	// dec_s4: 512 channels, stride 4
	// 552814086 parameters
}

// Loading a guided-diffusion checkpoint: each state_dict key names one of our variables.
func ExampleTorchKeyToScope() {
	cfg := adm.Configs["adm_256x256_uncond"]
	for _, key := range []string{"input_blocks.0.0.weight", "middle_block.1.qkv.weight", "output_blocks.2.2.in_layers.0.bias"} {
		path, transform, _ := adm.TorchKeyToScope(cfg, key)
		fmt.Println(key, "->", path, transform)
	}
	// Output:
	// input_blocks.0.0.weight -> input/conv/weights ConvOIHWToHWIO
	// middle_block.1.qkv.weight -> middle/attn/qkv/weights Conv1DToInOut
	// output_blocks.2.2.in_layers.0.bias -> output/level5/up/in_norm/offset Same
}
