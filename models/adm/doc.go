// Package adm is guided-diffusion's UNet ("ADM", openai/guided-diffusion unet.py's UNetModel)
// as a GoMLX builder, with named feature taps on the decoder: DreamTeacher's diffusion teacher.
//
// The network is described by a Config (registered ones in Configs): ChannelMult gives the
// levels (level l works at stride 2^l), NumResBlocks the residual blocks per encoder level,
// AttentionResolutions where attention blocks go. AttentionResolutions are feature-map sides in
// pixels at Config.ImageSize, as guided-diffusion's command-line flag (32,16,8 at 256 means
// downsample rates 8, 16, 32); this is the only place pixels are used. The decoder is derived
// from the encoder's channel stack, as in unet.py.
//
// Use:
//
//	out := adm.New(scope, cfg).Taps("dec_s32", "dec_s16").Done(x, t, nil)
//	// out.Eps [N,H,W,3], out.Var [N,H,W,3] (LearnSigma), out.Taps["dec_s32"] [N,H/32,W/32,C]
//
// Images are NHWC in [-1, 1]; t holds timesteps [N]; labels y [N] only for class-conditional
// configurations. Scale-shift (FiLM) conditioning, GroupNorm(32)+SiLU, zero-initialised last
// convs of every residual block, of the attention projections and of the output conv (so the
// initial output is exactly 0), residual up/down-sampling, learned sigma and dropout are as in
// guided-diffusion.
//
// Scopes (and tap names) under the UNet's scope:
//
//	time_embed/linear0, time_embed/linear1, label_emb
//	input/conv
//	input/level<l>/block<b>/{res,attn}      b < NumResBlocks
//	input/level<l>/down                      a residual block (ResblockUpdown) or down/conv
//	middle/{res0,attn,res1}
//	output/level<l>/block<b>/{res,attn}     b <= NumResBlocks, levels from the coarsest
//	output/level<l>/up                       a residual block (ResblockUpdown) or up/conv
//	out/{norm,conv}
//
// Residual blocks hold in_norm, in_conv, emb_proj, out_norm, out_conv and skip; attention blocks
// norm, qkv and proj. TorchParams and TorchKeyToScope map every key of a guided-diffusion
// checkpoint onto these variables (with the layout transform of its values), so a converter can
// load the official models.
//
// Feature taps: TapNames lists them. DreamTeacher's teacher features (DefaultTaps) are
// "dec_s32", "dec_s16", "dec_s8", "dec_s4": the last output block of each decoder level before
// its up-sampling — our reading of the paper's "decoder blocks 3, 6, 9, 12" (see
// shared/PAPER.md). guided-diffusion's literal output_blocks[k] outputs (after up-sampling) are
// the "output/level<l>/up" taps.
//
// Not implemented: use_new_attention_order (the 64x64 ImageNet model's qkv order),
// num_heads_upsample (deprecated upstream), fractional channel multipliers (the 512x512 model's
// 0.5), gradient checkpointing and fp16 (which change no parameter).
package adm
