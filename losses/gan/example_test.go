package gan_test

import (
	"fmt"
	"math"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/losses/gan"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// The two-trainer pattern on a toy problem: G(z) = a z + b learns to imitate samples of
// N(3, 0.5²) against a small discriminator. Two train.Trainers share one store; Config.Train
// restricts each to its network's variables. The D step holds G's samples fixed (StopGradient:
// no work is spent on G's gradient); the G step backpropagates through D without updating it.
//
// Both trainers advance the store's one step counter (train.StepVar), harmless here (SGD,
// constant learning rate) but not for Adam's bias correction: train/pretrain.GANTrainer, the
// complete orchestration, keeps a counter per network.
func Example_twoTrainers() {
	const n = 64
	generator := func(scope *model.Scope, z *Node) *Node {
		a := scope.WithInitializer(nn.OnesInit(scope, 0, 0)).VariableWithShape("a", shapes.Make(dtypes.Float32)).NodeValue(z.Graph())
		b := scope.WithInitializer(nn.ZeroInit(scope, 0, 0)).VariableWithShape("b", shapes.Make(dtypes.Float32)).NodeValue(z.Graph())
		return Add(Mul(z, a), b)
	}
	discriminator := func(scope *model.Scope, x *Node) *Node {
		h := nn.ReLU(nn.Linear(scope.In("hidden"), x, 16).Done())
		return nn.Linear(scope.In("out"), h, 1).Done()
	}
	sample := func(scope *model.Scope, g *Graph) *Node {
		return scope.RandomNormal(g, shapes.Make(dtypes.Float32, n, 1))
	}

	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(1); err != nil {
		panic(err)
	}
	sgd := train.OptimizerConfig{Name: "sgd"}
	dStep, err := train.NewTrainer(backend.Go(), store, train.Config{
		Optimizer: sgd, Schedule: train.Schedule{Kind: "constant", BaseLR: 0.01}, Train: []string{"/discriminator"},
	}, func(scope *model.Scope, batch []*Node) map[string]*Node {
		fake := StopGradient(generator(scope.In("generator"), sample(scope, batch[0].Graph())))
		d := scope.In("discriminator")
		return gan.DiscriminatorLoss(gan.Hinge, discriminator(d, batch[0]), discriminator(d.ResetVisited(), fake))
	})
	if err != nil {
		panic(err)
	}
	gStep, err := train.NewTrainer(backend.Go(), store, train.Config{
		Optimizer: sgd, Schedule: train.Schedule{Kind: "constant", BaseLR: 0.002}, Train: []string{"/generator"},
	}, func(scope *model.Scope, batch []*Node) map[string]*Node {
		fake := generator(scope.In("generator"), sample(scope, batch[0].Graph()))
		return gan.GeneratorLoss(gan.Hinge, discriminator(scope.In("discriminator"), fake))
	})
	if err != nil {
		panic(err)
	}

	data := make([]float32, n)
	next := 0.0
	real := func() *tensors.Tensor {
		for i := range data { // a deterministic stand-in for N(3, 0.5²) samples
			next += 0.618034
			data[i] = float32(3 + 0.5*math.Sqrt2*math.Erfinv(2*(next-math.Floor(next))-1))
		}
		return tensors.FromFlatDataAndDimensions(data, n, 1)
	}
	for range 300 {
		if _, err := dStep.Step(real()); err != nil { // one D step per G step here
			panic(err)
		}
		if _, err := gStep.Step(real()); err != nil { // the G step ignores its batch
			panic(err)
		}
	}
	b := store.GetVariable("/generator/b").MustValue().Value().(float32)
	fmt.Printf("mean of G(z) moved from 0 to within 1 of 3: %v\n", math.Abs(float64(b)-3) < 1)
	// Output:
	// mean of G(z) moved from 0 to within 1 of 3: true
}
