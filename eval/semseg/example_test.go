package semseg_test

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/eval/semseg"
)

func ExampleEvaluator() {
	e := semseg.New(2, semseg.DefaultIgnoreIndex)
	// One 2x2 image: the pixel labelled 255 is not counted.
	_ = e.Process([]int32{0, 1, 1, 1}, []int32{0, 0, 1, 255})
	r := e.Evaluate()
	fmt.Printf("IoU %.2f mIoU %.4f aAcc %.4f\n", r.IoU, r.MIoU, r.AAcc)
	// Output: IoU [0.50 0.50] mIoU 0.5000 aAcc 0.6667
}
