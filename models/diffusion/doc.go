// Package diffusion is the Gaussian diffusion process of guided-diffusion
// (gaussian_diffusion.py, respace.py, losses.py), separate from the network (models/adm):
// beta schedules, the forward process q(x_t | x_0), the reverse step p(x_{t-1} | x_t), the
// training objective, DDPM and DDIM sampling, and DreamTeacher's encoder.
//
// All coefficients are computed in float64 on the host when the process is made (New,
// NewFromBetas, Respace) and enter graphs as constants gathered by timestep (Extract).
// Timesteps are integer indices [N] into the process; the network is called with the timesteps
// of the original process (TimestepMap, for respaced processes), as floats.
//
//	d, _ := diffusion.New(diffusion.DefaultConfig(true))   // 1000 linear steps, learned range
//	// training graph: losses["loss"] is the hybrid objective, "mse" and "vb" its terms
//	losses := d.TrainingLosses(scope, diffusion.UNet(cfg), x0, nil)
//	// teacher features: one UNet pass on x0 noised to t=150 with fresh noise
//	feats := d.EncodeAt(scope, adm.New(scope, cfg), x0, 150, nil).Taps
//	// sampling: a compiled step graph called from a host loop
//	imgs, _ := d.SampleDDIM(backend, store, diffusion.UNet(cfg), diffusion.SampleOptions{N: 4, Height: 32, Width: 32, Channels: 3, Steps: 50})
//
// Not implemented: PREVIOUS_X mean prediction, rescale_timesteps, importance-sampled timesteps
// (LossSecondMomentResampler), classifier guidance, DDIM inversion and the full-VLB evaluation
// loop (calc_bpd_loop); each is a few lines over the functions here.
package diffusion
