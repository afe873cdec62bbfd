// Package nn holds the building blocks that every DreamTeacher model is made of: convolutions,
// pooling, up-sampling, normalisation, attention, timestep embeddings, activations, dropout and
// spectral normalisation.
//
// Conventions, shared by all blocks:
//   - Feature maps are channels-last: [batch, height, width, channels] (NHWC).
//   - Convolution kernels are [kh, kw, in/groups, out] (HWIO).
//   - Variables take the dtype of the input, so a block built on float64 inputs is checked
//     against finite differences in float64 (see internal/gradcheck).
//   - Builders follow GoMLX's pattern: New(scope, x, ...) returns a builder with PyTorch's
//     defaults, setters change them, Done() builds the graph.
//
// Every block works on every backend and has a gradient on every backend. Where the Go backend
// lacks an op or its gradient, or is slow (convolution and MaxPool speed, BatchNormForTraining,
// the gradient of Interpolate for batch > 1, convolutions with even kernels) the block is
// written from ops that have correct gradients; see the comments on each one.
package nn
