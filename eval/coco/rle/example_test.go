package rle_test

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
)

func ExampleFrPoly() {
	// The square with corners (1,1) and (3,3) in a 5x5 image covers pixels 1 and 2 of rows 1
	// and 2. Counts run down the columns.
	r := rle.FrPoly([]float64{1, 1, 1, 3, 3, 3, 3, 1}, 5, 5)
	fmt.Println(r.Counts, r.String(), r.Area(), r.ToBbox())
	// Output: [6 2 3 2 12] 62309 4 [1 1 2 2]
}
