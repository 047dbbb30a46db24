package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/luminaweb/lumina/model"
)

// pack writes a model as a lumina pack (manifest + verified shards).
func pack(args []string) error {
	fs := flag.NewFlagSet("pack", flag.ContinueOnError)
	src := fs.String("model", "", "the model to pack: empty for the embedded demo, a Hugging Face folder, or a pack")
	out := fs.String("out", "", "output folder (created)")
	quant := fs.String("quant", "f16", "format of the large matrices: f32, f16, bf16, q8 or q4")
	shard := fs.Int64("shard-mib", 64, "largest shard in MiB (at most 128)")
	worst := fs.Int("worst", 5, "list this many tensors with the largest error")
	var files sepFiles
	files.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var bar *progressbar.ProgressBar
	opt := model.PackOptions{DType: *quant, ShardLimit: *shard << 20, Model: files.config(model.Config{})}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		opt.Progress = func(done, total int, name string) {
			if bar == nil {
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(),
					progressbar.OptionSetDescription("pack    "), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
			}
			bar.Set(done)
		}
	}
	t0 := time.Now()
	rep, err := model.Pack(ctx, *src, *out, opt)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d tensors in %d shards, %s in %v\n", *out, len(rep.Tensors), rep.Shards, gib(uint64(rep.TotalBytes)), time.Since(t0).Round(time.Millisecond))
	for _, c := range []string{"text_encoder", "transformer", "vae"} {
		fmt.Printf("  %-13s %s\n", c, gib(uint64(rep.Bytes[c])))
	}
	ts := append([]model.PackedTensor(nil), rep.Tensors...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].RelRMS > ts[j].RelRMS })
	fmt.Printf("largest errors against the source (max |Δ|, relative RMS):\n")
	for _, t := range ts[:min(*worst, len(ts))] {
		fmt.Printf("  %-60s %-4s %.3g  %.3g\n", t.Name, t.DType, t.MaxAbs, t.RelRMS)
	}
	return nil
}
