package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/luminaweb/lumina/model"
	"github.com/luminaweb/lumina/wgpu"
)

// plan prints the GPU memory a generation needs, per stage, from the
// model's configuration alone (no weights), and checks it against an
// adapter when asked.
func plan(args []string) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	src := fs.String("model", "", `"" for the real Lumina-Image-2.0 configuration, "demo", or a Hugging Face folder (configs only)`)
	width := fs.Int("width", 0, "image width (0: the model's native size)")
	height := fs.Int("height", 0, "image height (0: the model's native size)")
	tokens := fs.Int("tokens", 0, "prompt length in tokens (0: 256, the worst case)")
	quant := fs.String("quant", "f32", "format of the matrices on the device: f32, f16, bf16, q8 or q4 (as a pack of that format)")
	low := fs.Bool("low-memory", false, "free the text encoder's weights after encoding (generate --low-memory)")
	check := fs.Bool("check", false, "also check the plan against this machine's WebGPU adapter")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	mp, err := model.Plan(ctx, model.PlanRequest{Source: *src, Width: *width, Height: *height, CaptionTokens: *tokens, Weights: *quant, LowMemory: *low})
	if err != nil {
		return err
	}
	fmt.Printf("%s, %dx%d, %d caption tokens, %s weights\n\n", mp.Model, mp.Width, mp.Height, mp.CaptionTokens, *quant)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "stage\tpeak GPU memory\t\n")
	for _, s := range mp.Stages {
		fmt.Fprintf(w, "%s\t%s\t\n", s.Stage, gib(s.Peak))
	}
	w.Flush()
	fmt.Printf("\nweights on the device  %s (the text encoder's embedding table stays in the checkpoint)\n", gib(mp.Weights))
	fmt.Printf("largest buffer         %s %s (needs maxBufferSize at least that)\n", gib(mp.LargestTensor), mp.LargestShape)
	fmt.Printf("tensors allocated      %d\n", mp.Tensors)
	if *check {
		dev, err := wgpu.Open(ctx, wgpu.Options{})
		if err != nil {
			return err
		}
		defer dev.Close()
		if err := mp.Check(dev.Limits()); err != nil {
			return err
		}
		fmt.Printf("fits the limits of %s\n", dev.Info())
	}
	return nil
}

func gib(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d B", b)
}
