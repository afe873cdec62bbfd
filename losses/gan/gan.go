// Package gan holds the adversarial losses of a GAN teacher (BigGAN), returned as named terms
// (losses.Terms) for the two training steps:
//
//	Hinge (BigGAN, SA-GAN; the reference's loss_hinge_dis / loss_hinge_gen):
//	  L_D = mean relu(1 - D(x)) + mean relu(1 + D(G(z)))
//	  L_G = -mean D(G(z))
//	NonSaturating (Goodfellow et al.; the reference's loss_dcgan_*):
//	  L_D = mean softplus(-D(x)) + mean softplus(D(G(z)))
//	  L_G = mean softplus(-D(G(z)))
//
// D's outputs are logits of any shape; means are over all their elements.
//
// A GAN trains with two optimisers on one store: a discriminator step (minimising L_D over
// the discriminator's variables, the generated images held fixed) then a generator step
// (minimising L_G over the generator's variables through a fixed D). With the project's
// train package that is two train.Trainers sharing the store, each restricted by
// train.Config.Train to its network's scope; see the example, and train/pretrain.GANTrainer for
// the complete orchestration (several D steps per G step, BigGAN's optimiser settings).
package gan

import (
	"fmt"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/losses"
	. "github.com/gomlx/gomlx/core/graph"
)

// Loss selects the adversarial loss.
type Loss int

const (
	// Hinge is BigGAN's loss (the default).
	Hinge Loss = iota
	// NonSaturating is the logistic loss with the non-saturating generator objective.
	NonSaturating
)

func (l Loss) String() string {
	switch l {
	case Hinge:
		return "hinge"
	case NonSaturating:
		return "nonsaturating"
	}
	return fmt.Sprintf("Loss(%d)", int(l))
}

// ParseLoss returns the loss named "hinge" or "nonsaturating" (also "ns", "dcgan").
func ParseLoss(name string) (Loss, error) {
	switch strings.ToLower(name) {
	case "hinge", "":
		return Hinge, nil
	case "nonsaturating", "non-saturating", "ns", "dcgan":
		return NonSaturating, nil
	}
	return 0, fmt.Errorf("unknown GAN loss %q: known losses are hinge, nonsaturating", name)
}

// Keys of the terms, besides losses.Total.
const (
	// KeyReal and KeyFake are the discriminator loss's parts on real and generated images.
	KeyReal = "real"
	KeyFake = "fake"
	// KeyDReal and KeyDFake are the mean logits of D on real and generated images (logged).
	KeyDReal = "d_real"
	KeyDFake = "d_fake"
)

// DiscriminatorLoss returns L_D from D's logits on real images and on generated ones:
// losses.Total = KeyReal + KeyFake, and the mean logits KeyDReal, KeyDFake.
func DiscriminatorLoss(kind Loss, dReal, dFake *Node) losses.Terms {
	var real, fake *Node
	switch kind {
	case Hinge:
		real = ReduceAllMean(relu(OneMinus(dReal)))
		fake = ReduceAllMean(relu(OnePlus(dFake)))
	case NonSaturating:
		real = ReduceAllMean(Softplus(Neg(dReal)))
		fake = ReduceAllMean(Softplus(dFake))
	default:
		panic(fmt.Sprintf("gan.DiscriminatorLoss: unknown loss %s", kind))
	}
	return losses.Terms{
		losses.Total: Add(real, fake),
		KeyReal:      real,
		KeyFake:      fake,
		KeyDReal:     StopGradient(ReduceAllMean(dReal)),
		KeyDFake:     StopGradient(ReduceAllMean(dFake)),
	}
}

// GeneratorLoss returns L_G from D's logits on generated images: losses.Total and the mean
// logit KeyDFake.
func GeneratorLoss(kind Loss, dFake *Node) losses.Terms {
	var loss *Node
	switch kind {
	case Hinge:
		loss = Neg(ReduceAllMean(dFake))
	case NonSaturating:
		loss = ReduceAllMean(Softplus(Neg(dFake)))
	default:
		panic(fmt.Sprintf("gan.GeneratorLoss: unknown loss %s", kind))
	}
	return losses.Terms{losses.Total: loss, KeyDFake: StopGradient(ReduceAllMean(dFake))}
}

func relu(x *Node) *Node { return Max(x, ZerosLike(x)) }
