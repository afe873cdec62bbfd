package adm

import "fmt"

// stepKind is the kind of one step of the UNet's layout.
type stepKind int

const (
	stepStem    stepKind = iota // 3x3 conv from the image: input_blocks[0]
	stepEncoder                 // res block (+ attention) of an encoder level
	stepDown                    // down-sampling at the end of an encoder level
	stepMiddle                  // res, attention, res at the lowest resolution
	stepDecoder                 // concatenate a skip, res block (+ attention)
	stepUp                      // up-sampling at the end of a decoder level
)

// step is one block of the UNet, in guided-diffusion's order. The layout is computed from the
// Config alone — the builder, the taps, the parameter count and the torch key map all read it —
// and the skip connections are derived from the encoder's channel stack as in unet.py.
type step struct {
	kind  stepKind
	name  string // scope path and tap name, e.g. "input/level1/block0", "middle", "output/level2/up"
	level int
	block int // index within the level (encoder and decoder blocks)

	in     int // channels in (for decoder blocks, before the skip is concatenated)
	skip   int // channels of the concatenated skip (decoder blocks)
	out    int // channels out
	stride int // stride of the output, relative to the input image
	attn   bool
	heads  int

	// torch locates the block in guided-diffusion's module tree: "input_blocks.4",
	// "middle_block", "output_blocks.2". For stepUp, torchSub is the index of the up-sampling
	// layer inside its output block (after the res block and the optional attention).
	torch    string
	torchSub int
}

// layout returns the steps of the UNet described by cfg (which must be valid).
func (c Config) layout() []step {
	var steps []step
	attnRate := map[int]bool{}
	for _, r := range c.AttentionRates() {
		attnRate[r] = true
	}
	ch := c.ModelChannels * c.ChannelMult[0]
	stack := []int{ch} // channels of every encoder output, popped by the decoder
	steps = append(steps, step{kind: stepStem, name: "input/conv", in: c.InChannels, out: ch, stride: 1, torch: "input_blocks.0"})
	inputIndex := 1
	rate := 1
	for level, mult := range c.ChannelMult {
		for b := range c.NumResBlocks {
			out := c.ModelChannels * mult
			s := step{kind: stepEncoder, name: fmt.Sprintf("input/level%d/block%d", level, b), level: level, block: b,
				in: ch, out: out, stride: rate, attn: attnRate[rate], torch: fmt.Sprintf("input_blocks.%d", inputIndex)}
			if s.attn {
				s.heads = c.heads(out)
			}
			steps = append(steps, s)
			ch = out
			stack = append(stack, ch)
			inputIndex++
		}
		if level != c.Levels()-1 {
			rate *= 2
			steps = append(steps, step{kind: stepDown, name: fmt.Sprintf("input/level%d/down", level), level: level,
				in: ch, out: ch, stride: rate, torch: fmt.Sprintf("input_blocks.%d", inputIndex)})
			stack = append(stack, ch)
			inputIndex++
		}
	}
	steps = append(steps, step{kind: stepMiddle, name: "middle", level: c.Levels() - 1, in: ch, out: ch, stride: rate,
		attn: true, heads: c.heads(ch), torch: "middle_block"})
	outputIndex := 0
	for level := c.Levels() - 1; level >= 0; level-- {
		for b := range c.NumResBlocks + 1 {
			skip := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			out := c.ModelChannels * c.ChannelMult[level]
			s := step{kind: stepDecoder, name: fmt.Sprintf("output/level%d/block%d", level, b), level: level, block: b,
				in: ch, skip: skip, out: out, stride: rate, attn: attnRate[rate],
				torch: fmt.Sprintf("output_blocks.%d", outputIndex)}
			if s.attn {
				s.heads = c.heads(out)
			}
			steps = append(steps, s)
			ch = out
			if level > 0 && b == c.NumResBlocks {
				rate /= 2
				sub := 1
				if s.attn {
					sub = 2
				}
				steps = append(steps, step{kind: stepUp, name: fmt.Sprintf("output/level%d/up", level), level: level,
					in: ch, out: ch, stride: rate, torch: s.torch, torchSub: sub})
			}
			outputIndex++
		}
	}
	if len(stack) != 0 {
		panic(fmt.Sprintf("adm: %d encoder outputs left on the skip stack", len(stack)))
	}
	return steps
}
