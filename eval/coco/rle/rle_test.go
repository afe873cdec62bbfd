package rle

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The fixtures below marked "pycocotools" were produced by running pycocotools (cocodataset/cocoapi
// at 8c9bcc3, built from source against Debian's numpy) on the same inputs: frPyObjects, area,
// toBbox, merge and iou, with the compressed counts printed as strings
// (../testdata/oracle/rle_fixture.py).

func TestSquareByHand(t *testing.T) {
	// The square with corners (1,1) and (3,3) covers pixels x, y in {1, 2} of a 5x5 image.
	// Column-major: column 0 and row 0 of column 1 are off (6), rows 1-2 on (2), rows 3-4 of
	// column 1 and row 0 of column 2 off (3), rows 1-2 on (2), the rest off (2+5+5 = 12).
	r := FrPoly([]float64{1, 1, 1, 3, 3, 3, 3, 1}, 5, 5)
	if want := []uint32{6, 2, 3, 2, 12}; !slices.Equal(r.Counts, want) {
		t.Fatalf("counts %v, want %v", r.Counts, want)
	}
	// From the 4th count on the string holds differences: 2-2 = 0, 12-3 = 9.
	if got := r.String(); got != "62309" {
		t.Errorf("string %q, want %q", got, "62309")
	}
	if a := r.Area(); a != 4 {
		t.Errorf("area %d, want 4", a)
	}
	if bb := r.ToBbox(); bb != [4]float64{1, 1, 2, 2} {
		t.Errorf("bbox %v, want [1 1 2 2]", bb)
	}
	mask, err := r.Decode()
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{
		0, 0, 0, 0, 0,
		0, 1, 1, 0, 0,
		0, 1, 1, 0, 0,
		0, 0, 0, 0, 0,
		0, 0, 0, 0, 0,
	}
	if !slices.Equal(mask, want) {
		t.Errorf("decoded %v, want %v", mask, want)
	}
	// The same box through FrBbox.
	if got := FrBbox([4]float64{1, 1, 2, 2}, 5, 5); !slices.Equal(got.Counts, r.Counts) {
		t.Errorf("FrBbox counts %v, want %v", got.Counts, r.Counts)
	}
}

func TestAreaAndBboxByHand(t *testing.T) {
	tests := []struct {
		name   string
		r      RLE
		area   uint32
		bbox   [4]float64
		decode []uint8 // row-major
	}{
		{"empty", RLE{H: 2, W: 3, Counts: []uint32{6}}, 0, [4]float64{}, []uint8{0, 0, 0, 0, 0, 0}},
		{"full", RLE{H: 2, W: 3, Counts: []uint32{0, 6}}, 6, [4]float64{0, 0, 3, 2}, []uint8{1, 1, 1, 1, 1, 1}},
		{"one pixel", RLE{H: 2, W: 3, Counts: []uint32{3, 1, 2}}, 1, [4]float64{1, 1, 1, 1}, []uint8{0, 0, 0, 0, 1, 0}},
		// A run of 1s wrapping from the bottom of column 0 to the top of column 1 touches
		// the first and last rows.
		{"wrap", RLE{H: 3, W: 3, Counts: []uint32{2, 2, 5}}, 2, [4]float64{0, 0, 2, 3}, []uint8{0, 1, 0, 0, 0, 0, 1, 0, 0}},
		{"two runs", RLE{H: 3, W: 3, Counts: []uint32{1, 1, 5, 1, 1}}, 2, [4]float64{0, 1, 3, 1}, []uint8{0, 0, 0, 1, 0, 1, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a := tc.r.Area(); a != tc.area {
				t.Errorf("area %d, want %d", a, tc.area)
			}
			if bb := tc.r.ToBbox(); bb != tc.bbox {
				t.Errorf("bbox %v, want %v", bb, tc.bbox)
			}
			m, err := tc.r.Decode()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m, tc.decode) {
				t.Errorf("decoded %v, want %v", m, tc.decode)
			}
			if back := Encode(m, tc.r.H, tc.r.W); !slices.Equal(back.Counts, tc.r.Counts) {
				t.Errorf("re-encoded %v, want %v", back.Counts, tc.r.Counts)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		h, w := 1+rng.IntN(20), 1+rng.IntN(20)
		p := rng.Float64()
		mask := make([]uint8, h*w)
		for i := range mask {
			if rng.Float64() < p {
				mask[i] = 1
			}
		}
		r := Encode(mask, h, w)
		if err := r.Validate(); err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		back, err := r.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(back, mask) {
			t.Fatalf("trial %d: decode(encode(m)) != m", trial)
		}
		var area uint32
		for _, v := range mask {
			area += uint32(v)
		}
		if r.Area() != area {
			t.Errorf("trial %d: area %d, want %d", trial, r.Area(), area)
		}
		s := r.String()
		r2, err := FromString(s, h, w)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if !slices.Equal(r2.Counts, r.Counts) {
			t.Fatalf("trial %d: string round trip %v -> %q -> %v", trial, r.Counts, s, r2.Counts)
		}
	}
}

func TestStringLargeAndNegativeDeltas(t *testing.T) {
	// Counts far above 5 bits, and falling counts that give negative differences.
	counts := []uint32{1 << 20, 3, 70000, 1, 5, 1 << 22, 0, 17}
	var total int
	for _, c := range counts {
		total += int(c)
	}
	r := RLE{H: 1, W: total, Counts: counts}
	back, err := FromString(r.String(), 1, total)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Counts, counts) {
		t.Errorf("round trip %v, want %v", back.Counts, counts)
	}
}

func TestFromStringErrors(t *testing.T) {
	tests := []struct{ name, s string }{
		{"bad char", "6 309"},
		{"cut short", "6230" + string(rune(48+0x20))},
		{"wrong total", "6230"},
	}
	for _, tc := range tests {
		if _, err := FromString(tc.s, 5, 5); err == nil {
			t.Errorf("%s: FromString(%q) gave no error", tc.name, tc.s)
		}
	}
}

func TestPolygonsMatchPycocotools(t *testing.T) {
	const h, w = 17, 23
	tests := []struct {
		poly   []float64
		counts string
		area   uint32
		bbox   [4]float64
	}{ // pycocotools
		{poly: []float64{1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 1.0}, counts: "b02?0c:", area: 4, bbox: [4]float64{1.0, 1.0, 2.0, 2.0}},
		{poly: []float64{-3.2, -1.0, 25.7, 2.2, 10.1, 20.4}, counts: "05<1O2N2N1O2N1O2Nb00^O00000O1O1O1O1O1O2M2O1O1OO", area: 262, bbox: [4]float64{0.0, 0.0, 23.0, 17.0}},
		{poly: []float64{2.0, 2.0, 2.0, 2.0, 8.0, 3.0, 8.0, 3.0, 5.0, 9.0}, counts: "T11`02N3NO0N2Nn7", area: 19, bbox: [4]float64{2.0, 2.0, 6.0, 6.0}},
		{poly: []float64{4.5, 4.5, 4.5, 4.5, 4.5, 4.5}, counts: "W<", area: 0, bbox: [4]float64{0.0, 0.0, 0.0, 0.0}},
		{poly: []float64{0.0, 0.0, 23.0, 0.0, 23.0, 17.0, 0.0, 17.0}, counts: "0W<", area: 391, bbox: [4]float64{0.0, 0.0, 23.0, 17.0}},
		{poly: []float64{23.723857831349097, 10.267148810342011, 17.07926018582557, 14.833060961274146, 13.890604259369418, 7.45594509980907, 16.410679299431404, 7.442203364837927, 14.729180208719082, 6.661286991849936, 16.5645902350104, -0.7090246593118064, 20.61936875301306, 7.079770515509872}, counts: "e72<5J7NO2N2M3M2O1NH", area: 66, bbox: [4]float64{14.0, 0.0, 9.0, 14.0}},
		{poly: []float64{23.151899048504784, 7.892542770841853, 21.300844487246287, 7.009565048578544, 20.028734010740624, 5.659769293082002, 16.767180394970218, 6.000152550155189, 21.407469355139582, -1.4456358048225741, 23.56034713748423, -3.865196145249284, 23.63175149393837, 1.415930339122582, 24.34775609757503, 3.23711188160595}, counts: "V91>2O1N201O00", area: 28, bbox: [4]float64{17.0, 0.0, 6.0, 7.0}},
		{poly: []float64{17.055833571406318, 9.110633960085787, 11.692445363737932, 7.16547065477577, 14.121555198446925, 3.5917128562052207}, counts: "b61>3O02O1Nn2", area: 13, bbox: [4]float64{12.0, 4.0, 5.0, 5.0}},
		{poly: []float64{9.011009382318388, 10.03952165131497, 7.620235073428575, 10.652201611107131, 3.630740638544868, 6.961381890643487, 6.738765242343819, 3.9607575742806485, 5.964242183330737, 1.069260698809953, 11.717946579262106, 0.8830356291139045, 16.83445526407438, 6.522907988500242}, counts: "Z22>2KNH47300000O101N2O1O1N2OP3", area: 75, bbox: [4]float64{4.0, 1.0, 13.0, 9.0}},
		{poly: []float64{16.42882291602357, 8.601235675213967, 14.966525993685174, 2.8135806164612998, 12.289479900554, 1.5035389402953268, 11.776942108244079, -1.6817383660958583, 19.72660348483501, -4.747836784958709, 20.30522967406946, -0.7506964218879264, 17.751489693198856, 0.44580315677775884}, counts: "\\62?001O2N3MJk2", area: 22, bbox: [4]float64{12.0, 0.0, 6.0, 8.0}},
		{poly: []float64{11.194003433776992, 11.463548391232717, 3.005542751441843, 7.74625929331237, 3.0234675654172483, 6.6073914540144125, 8.587684274740054, -2.030333125551084}, counts: "i12=2O2M2O2O03N4KT6", area: 51, bbox: [4]float64{3.0, 0.0, 8.0, 11.0}},
		{poly: []float64{17.629663200735497, 14.158271385557757, 14.481518201166994, 19.791004549751612, 13.98709764431028, 13.84387000345979, 14.734954018714824, 9.832978970626188, 17.69588698303815, 6.4270096968901225, 18.66287042023537, 10.494796873648797, 20.902749494113426, 11.443379267489501}, counts: "i7692O0O06K2O0Oh0", area: 36, bbox: [4]float64{14.0, 6.0, 7.0, 11.0}},
	}
	var rles []RLE
	for i, tc := range tests {
		r := FrPoly(tc.poly, h, w)
		rles = append(rles, r)
		if got := r.String(); got != tc.counts {
			t.Errorf("polygon %d: counts %q, want %q", i, got, tc.counts)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("polygon %d: %v", i, err)
		}
		if a := r.Area(); a != tc.area {
			t.Errorf("polygon %d: area %d, want %d", i, a, tc.area)
		}
		if bb := r.ToBbox(); bb != tc.bbox {
			t.Errorf("polygon %d: bbox %v, want %v", i, bb, tc.bbox)
		}
	}

	union, err := Merge(rles[5:], false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := union.String(), "i12=2O2M3N10010O00N101JH38NH21R1OWO5MO0OKMO42LM43MK4"; got != want {
		t.Errorf("union %q, want %q", got, want)
	}
	inter, err := Merge(rles[5:7], true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := inter.String(), "V91>22N^1"; got != want {
		t.Errorf("intersection %q, want %q", got, want)
	}

	iou := IoU(rles[5:8], rles[8:11], []bool{false, true, false})
	wantIoU := [][]float64{
		{0.029197080291970802, 0.15151515151515152, 0.0},
		{0.0, 0.0, 0.0},
		{0.1282051282051282, 0.0, 0.0},
	}
	for d := range wantIoU {
		if !slices.Equal(iou[d], wantIoU[d]) {
			t.Errorf("iou row %d: %v, want %v", d, iou[d], wantIoU[d])
		}
	}
}

func TestBoxesMatchPycocotools(t *testing.T) {
	const h, w = 17, 23
	tests := []struct {
		box    [4]float64
		counts string
	}{ // pycocotools frPyObjects on an Nx4 array
		{box: [4]float64{0.0, 0.0, 5.0, 5.0}, counts: "05<0000000b9"},
		{box: [4]float64{2.3, 1.7, 10.2, 4.4}, counts: "T14=0000000000000000000X5"},
		{box: [4]float64{-2.0, -2.0, 30.0, 30.0}, counts: "0W<"},
		{box: [4]float64{20.5, 15.5, 4.0, 4.0}, counts: "e;1`00"},
		{box: [4]float64{7.0, 7.0, 0.0, 3.0}, counts: "W<"},
	}
	var boxes [][4]float64
	for i, tc := range tests {
		boxes = append(boxes, tc.box)
		if got := FrBbox(tc.box, h, w).String(); got != tc.counts {
			t.Errorf("box %d: counts %q, want %q", i, got, tc.counts)
		}
	}
	iou := BoxIoU(boxes[:3], boxes, []bool{false, false, true, false, true})
	want := [][]float64{ // pycocotools iou on boxes, crowd [0,0,1,0,1]
		{1.0, 0.14613744464490733, 1.0, 0.0, 0.0},
		{0.14613744464490733, 1.0, 1.0, 0.0, 0.0},
		{0.027777777777777776, 0.04986666666666667, 1.0, 0.017777777777777778, 0.0},
	}
	for d := range want {
		if !slices.Equal(iou[d], want[d]) {
			t.Errorf("box iou row %d: %v, want %v", d, iou[d], want[d])
		}
	}
}

func TestIoUByHand(t *testing.T) {
	// 4x4 image. dt: the 2x2 block at the top left (4 px). gt: the left two columns (8 px).
	dt := FrBbox([4]float64{0, 0, 2, 2}, 4, 4)
	gt := FrBbox([4]float64{0, 0, 2, 4}, 4, 4)
	far := FrBbox([4]float64{3, 3, 1, 1}, 4, 4)
	tests := []struct {
		name  string
		crowd bool
		want  float64
	}{
		{"normal: 4 / (4 + 8 - 4)", false, 0.5},
		{"crowd: 4 / area(dt)", true, 1.0},
	}
	for _, tc := range tests {
		got := IoU([]RLE{dt}, []RLE{gt}, []bool{tc.crowd})[0][0]
		if got != tc.want {
			t.Errorf("%s: iou %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := IoU([]RLE{far}, []RLE{gt}, nil)[0][0]; got != 0 {
		t.Errorf("disjoint iou %v, want 0", got)
	}
	other := FrBbox([4]float64{0, 0, 2, 2}, 5, 4)
	if got := IoU([]RLE{other}, []RLE{gt}, nil)[0][0]; got != -1 {
		t.Errorf("size mismatch iou %v, want -1", got)
	}

	boxTests := []struct {
		name   string
		dt, gt [4]float64
		crowd  bool
		want   float64
	}{
		{"overlap 1 of 7", [4]float64{0, 0, 2, 2}, [4]float64{1, 1, 2, 2}, false, 1.0 / 7},
		{"crowd: 1 / area(dt)", [4]float64{0, 0, 2, 2}, [4]float64{1, 1, 2, 2}, true, 0.25},
		{"touching edges", [4]float64{0, 0, 2, 2}, [4]float64{2, 0, 2, 2}, false, 0},
		{"inside", [4]float64{1, 1, 1, 1}, [4]float64{0, 0, 4, 4}, false, 1.0 / 16},
	}
	for _, tc := range boxTests {
		got := BoxIoU([][4]float64{tc.dt}, [][4]float64{tc.gt}, []bool{tc.crowd})[0][0]
		if math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("%s: box iou %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMergeByHand(t *testing.T) {
	a := FrBbox([4]float64{0, 0, 2, 2}, 4, 4) // pixels x, y in {0, 1}
	b := FrBbox([4]float64{1, 1, 2, 2}, 4, 4) // pixels x, y in {1, 2}
	union, err := Merge([]RLE{a, b}, false)
	if err != nil {
		t.Fatal(err)
	}
	if union.Area() != 7 {
		t.Errorf("union area %d, want 7", union.Area())
	}
	inter, err := Merge([]RLE{a, b}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{5, 1, 10}; !slices.Equal(inter.Counts, want) {
		t.Errorf("intersection counts %v, want %v", inter.Counts, want)
	}
	if _, err := Merge([]RLE{a, FrBbox([4]float64{0, 0, 1, 1}, 3, 4)}, false); err == nil {
		t.Error("merging masks of different sizes gave no error")
	}
	one, _ := Merge([]RLE{a}, false)
	if !slices.Equal(one.Counts, a.Counts) {
		t.Errorf("merge of one mask %v, want %v", one.Counts, a.Counts)
	}
}
