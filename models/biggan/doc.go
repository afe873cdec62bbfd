// Package biggan is BigGAN (Brock, Donahue and Simonyan, "Large Scale GAN Training for High
// Fidelity Natural Image Synthesis", ICLR 2019), written after the authors' reference PyTorch
// implementation ajbrock/BigGAN-PyTorch (BigGAN.py, layers.py), and its use as a DreamTeacher
// teacher.
//
// A GAN cannot encode a real image, so DreamTeacher trains the student on a "synthesized
// dataset": it samples z (and, for the paper's class-conditional ImageNet BigGAN, a class y),
// generates x = G(z, y) and records G's multi-scale features on the fly (Generate returns
// both; see TapNames for the feature maps and their strides).
//
// The architecture follows the reference:
//
//   - Generator: an SN linear layer projects (a chunk of) z to a BottomWidth x BottomWidth map;
//     GBlocks (conditional BatchNorm, ReLU, nearest 2x up-sampling, 3x3 SN conv, conditional BN,
//     ReLU, 3x3 SN conv, plus a 1x1 SN conv shortcut) double the resolution; a non-local block
//     (SA-GAN's attention with SN 1x1 convs and 2x2 max-pooled keys and values) follows the
//     GBlock of the configured resolution; the output is BN, ReLU, 3x3 SN conv, tanh. With
//     classes, the conditional BN's gain and bias are SN linear maps of [shared class embedding,
//     z chunk] (the hierarchical latent, Config.Hier); unconditional generators use plain BN.
//   - Discriminator: DBlocks (ReLU, 3x3 SN conv, ReLU, 3x3 SN conv, 2x2 average pooling, 1x1 SN
//     conv shortcut; the first block without the leading ReLU, the "optimized" block), the
//     non-local block, ReLU, global sum pooling, an SN linear output plus the projection
//     <embed(y), h> with an SN class embedding.
//
// The API:
//
//   - Configs / Get / Names: the registered configurations (biggan_128 and biggan_256, the
//     class-conditional ImageNet models of the BigGAN paper, the paper's GAN teacher; small
//     CPU ones, conditional or not), NumParams, TapNames / DefaultTaps.
//   - Generate (or NewGenerator(...).Taps(...).Done) and Discriminate build the networks;
//     SampleZ (with the truncation trick), SampleLabels (uniform over the classes) and
//     SampleLabelsFrom (uniform over a given list of classes) draw their inputs in the graph.
//   - Sampler draws batches of images (and their classes) and generator features in eval
//     mode, optionally from the EMA of G: the teacher side of DreamTeacher's GAN distillation.
//
// Training is a recipe, not part of the model: train/pretrain's GANTrainer trains both
// networks (D steps, then a G step), on labelled images for a conditional configuration.
//
// Feature maps are NHWC and conv kernels HWIO (see models/nn). Variables live under the scope
// the caller passes; the convention, which GAN training follows, is GeneratorScope and
// DiscriminatorScope under the root: "/generator/blocks/block0/conv1/weights",
// "/discriminator/blocks/block2/conv_sc/weights", ...
//
// A float64 training-mode pass of a small conditional model with the reference's parameters
// gives the reference's image and logits to 1e-15 (TestMatchesReference; testdata holds the
// script that made the numbers), and the parameter counts of the registered configurations
// equal the reference's (TestParamCounts, TestReferenceCounts): biggan_128 as the reference's
// ImageNet launch script, biggan_256 as the 256 model of the BigGAN paper (attention at 128 px
// in G and D, z of 140; see Configs).
//
// Weights are initialised as the reference's (G_init/D_init "ortho", its default and its
// ImageNet scripts'): every conv, linear and embedding weight orthogonal (nn.OrthogonalInit:
// the Q of a Gaussian matrix, drawn with the store's random generator); Config.Init selects
// Xavier-uniform ("xavier") or N(0, 0.02) ("N02") instead, as the reference's other scripts.
//
// Where this package differs from the reference:
//
//   - Spectral norm is models/nn's: one power iteration per training step with eps 1e-12 (the
//     launch scripts use SN_eps 1e-6); in eval mode the stored u and v are used as they are,
//     where the reference runs one more (unsaved) power iteration.
//   - Shortcuts apply their 1x1 conv before the nearest up-sampling in GBlocks and after the
//     average pooling in DBlocks. A 1x1 conv commutes with both, so the function is the same
//     and the conv is 4x cheaper.
//   - Attention resolutions are the side of the block's output map, in pixels, for G and D.
//     The reference's 32 px discriminator table labels all its blocks "16"; at 64, 128, 256 px
//     the two agree.
//   - BatchNorm has no "standing statistics"; sampling in eval mode uses the running averages.
//   - GAN training's EMA of G averages the trainable weights from the first step (the
//     reference also averages the BN statistics and starts at ema_start).
package biggan
