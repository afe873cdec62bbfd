package diffusion_test

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/models/diffusion"
)

// A 50-step DDIM schedule over guided-diffusion's 1000-step linear process.
func ExampleDiffusion_RespaceSteps() {
	d, _ := diffusion.New(diffusion.DefaultConfig(true))
	s, _ := d.RespaceSteps(50)
	fmt.Println(s.NumTimesteps, "steps; the network sees timesteps", s.TimestepMap[:4], "...", s.TimestepMap[49])
	fmt.Printf("alphā at t=150 (the ImageNet teacher's timestep): %.4f\n", d.AlphasCumprod[150])
	// Output:
	// 50 steps; the network sees timesteps [0 20 41 61] ... 999
	// alphā at t=150 (the ImageNet teacher's timestep): 0.7859
}
