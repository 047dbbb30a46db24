package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/luminaweb/lumina/model"
)

// genFlags are generate's flags, named like diffusers' options.
type genFlags struct {
	model                     string
	prompt, negative          string
	width, height, steps      int
	guidance, cfgTrunc, shift float64
	renorm, cache             float64
	diffusers, dynamicShift   bool
	cfgTruncRatio             float64
	solver, system, out       string
	seed                      uint64
	cpu                       bool
	backend                   string
	bench                     int
	quiet                     bool
	files                     sepFiles
	preview                   string
	lowMemory                 bool
}

func parseGenerate(args []string) (*genFlags, error) {
	f := &genFlags{}
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.StringVar(&f.model, "model", "", "model: a Hugging Face Lumina-Image-2.0 folder; empty for the embedded demo model")
	fs.StringVar(&f.prompt, "prompt", "", "what to draw")
	fs.StringVar(&f.negative, "negative", "", "negative prompt")
	fs.IntVar(&f.width, "width", 0, "image width in pixels, a multiple of 16 (0: the model's native size)")
	fs.IntVar(&f.height, "height", 0, "image height in pixels, a multiple of 16 (0: the model's native size)")
	fs.IntVar(&f.steps, "steps", 0, "solver steps (0: the model's default)")
	fs.Float64Var(&f.guidance, "guidance", 0, "classifier-free guidance scale (0: 4; 1 turns CFG off)")
	fs.Float64Var(&f.cfgTrunc, "cfg-trunc", 0, "run CFG only while the model time t < this (0: always)")
	fs.Float64Var(&f.renorm, "renorm", 0, "CFG renormalisation: clamp the guided velocity's norm to this × the conditional one's (0: 1; negative: off)")
	fs.StringVar(&f.solver, "solver", "", "midpoint, euler or dpm (empty: the model's default)")
	fs.Float64Var(&f.shift, "shift", 0, "time shift (0: the model's default)")
	fs.BoolVar(&f.diffusers, "diffusers", false, "use the diffusers pipeline's semantics where the references differ: per-row CFG renormalisation, --cfg-trunc-ratio, --dynamic-shift")
	fs.Float64Var(&f.cfgTruncRatio, "cfg-trunc-ratio", 0, "with --diffusers: skip CFG at step i of N when (i+1)/N > this (0: never)")
	fs.BoolVar(&f.dynamicShift, "dynamic-shift", false, "with --diffusers: the shift from the image's token count")
	fs.Float64Var(&f.cache, "cache", 0, "TeaCache threshold: reuse the joint layers' residual on evaluations judged redundant (0: off; 0.3 is the published setting)")
	fs.StringVar(&f.system, "system", "real", "system prompt: real, align, base, aesthetics, 4grid or empty")
	fs.Uint64Var(&f.seed, "seed", 0, "noise seed")
	fs.StringVar(&f.out, "out", "lumina.png", "output PNG file")
	fs.BoolVar(&f.cpu, "cpu", false, "run on the CPU reference backend (no GPU)")
	fs.StringVar(&f.backend, "backend", "", "require this WebGPU backend (vulkan, metal, d3d12, ...)")
	fs.IntVar(&f.bench, "bench", 0, "generate this many times and print per-stage timings")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress bar")
	f.files.flags(fs)
	fs.BoolVar(&f.lowMemory, "low-memory", false, "free the text encoder's weights on the device after encoding (reloaded for each image)")
	fs.StringVar(&f.preview, "preview", "", "write the predicted image after every model evaluation to this PNG (a full VAE decode each time)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (the prompt goes in --prompt)", fs.Arg(0))
	}
	return f, nil
}

// request maps the flags to a model.Request, in one place.
func (f *genFlags) request() (model.Request, error) {
	sys, err := model.ParseSystemPrompt(f.system)
	if err != nil {
		return model.Request{}, err
	}
	return model.Request{Prompt: f.prompt, Negative: f.negative, Width: f.width, Height: f.height,
		Steps: f.steps, Guidance: f.guidance, CFGTrunc: f.cfgTrunc, Renorm: f.renorm,
		Solver: f.solver, Shift: f.shift, Seed: f.seed, System: sys, Cache: f.cache,
		Diffusers: f.diffusers, CFGTruncRatio: f.cfgTruncRatio, DynamicShift: f.dynamicShift}, nil
}

func generate(args []string) error {
	f, err := parseGenerate(args)
	if err != nil {
		return err
	}
	req, err := f.request()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	bar := newBar(f.quiet)
	cfg := f.files.config(model.Config{CPU: f.cpu, GPUBackend: f.backend, Progress: bar.report, LowMemory: f.lowMemory})
	if f.preview != "" {
		cfg.Preview = func(eval, total int, img *image.NRGBA) {
			if err := writePNG(f.preview, img, nil); err != nil {
				fmt.Fprintln(os.Stderr, "lumina: preview:", err)
			}
		}
	}
	t0 := time.Now()
	p, err := model.Open(ctx, f.model, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	load := time.Since(t0)
	runs := max(1, f.bench)
	var img image.Image
	for i := range runs {
		img, err = p.Generate(ctx, req)
		bar.finish()
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("interrupted")
			}
			return err
		}
		s := p.Stats()
		if f.bench > 0 {
			fmt.Printf("run %d: encode %v, denoise %v (%d evaluations, %v each), decode %v\n", i+1,
				s.Encode.Round(time.Millisecond), s.Denoise.Round(time.Millisecond), s.Evals,
				(s.Denoise / time.Duration(max(1, s.Evals))).Round(time.Millisecond), s.Decode.Round(time.Millisecond))
		}
	}
	if err := writePNG(f.out, img, f.pngText(p, req)); err != nil {
		return err
	}
	s := p.Stats()
	reused := ""
	if s.Reused > 0 {
		reused = fmt.Sprintf(", %d branch evaluations reused", s.Reused)
	}
	fmt.Printf("%s: %dx%d in %v (load %v, encode %v, denoise %v for %d model evaluations%s, decode %v), peak GPU memory %s, on %s\n",
		f.out, img.Bounds().Dx(), img.Bounds().Dy(), time.Since(t0).Round(time.Millisecond),
		load.Round(time.Millisecond), s.Encode.Round(time.Millisecond), s.Denoise.Round(time.Millisecond), s.Evals, reused,
		s.Decode.Round(time.Millisecond), mib(s.PeakGPUBytes), p.Backend())
	return nil
}

func mib(b uint64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// pngText is the generation parameters, in the "parameters" text chunk
// other image tools read.
func (f *genFlags) pngText(p *model.Pipeline, r model.Request) map[string]string {
	var b strings.Builder
	b.WriteString(r.Prompt)
	if r.Negative != "" {
		fmt.Fprintf(&b, "\nNegative prompt: %s", r.Negative)
	}
	fmt.Fprintf(&b, "\nSteps: %s, Sampler: %s, CFG scale: %s, Seed: %d, Size: %s, Shift: %s, CFG trunc: %g, Renorm: %s, Cache: %g, System prompt: %s, Model: %s",
		orDefault(f.steps), orDefaultS(f.solver), orDefaultF(f.guidance), r.Seed, size(f.width, f.height),
		orDefaultF(f.shift), f.cfgTrunc, orDefaultF(f.renorm), f.cache, f.system, p.Name())
	return map[string]string{"parameters": b.String(), "Software": "lumina"}
}

func orDefault(v int) string {
	if v == 0 {
		return "default"
	}
	return fmt.Sprint(v)
}

func orDefaultF(v float64) string {
	if v == 0 {
		return "default"
	}
	return fmt.Sprint(v)
}

func orDefaultS(v string) string {
	if v == "" {
		return "default"
	}
	return v
}

func size(w, h int) string {
	if w == 0 && h == 0 {
		return "native"
	}
	return fmt.Sprintf("%dx%d", w, h)
}

// writePNG encodes img with tEXt chunks (keyword, text) after IHDR.
func writePNG(path string, img image.Image, text map[string]string) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	data := buf.Bytes()
	const ihdrEnd = 8 + 8 + 13 + 4 // signature, IHDR header, IHDR data, CRC
	var out bytes.Buffer
	out.Write(data[:ihdrEnd])
	for _, k := range []string{"parameters", "Software"} {
		v, ok := text[k]
		if !ok {
			continue
		}
		body := append(append([]byte(k), 0), latin1(v)...)
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
		copy(hdr[4:], "tEXt")
		out.Write(hdr[:])
		out.Write(body)
		crc := crc32.NewIEEE()
		crc.Write(hdr[4:])
		crc.Write(body)
		binary.Write(&out, binary.BigEndian, crc.Sum32())
	}
	out.Write(data[ihdrEnd:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// latin1 keeps what tEXt (ISO 8859-1) can hold and replaces the rest.
func latin1(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 256 && r != 0 {
			b = append(b, byte(r))
		} else {
			b = append(b, '?')
		}
	}
	return b
}

// bar draws one progress bar per stage on the terminal.
type bar struct {
	quiet bool
	cur   model.Stage
	pb    *progressbar.ProgressBar
}

// newBar draws on stderr only when it is a terminal, so logs stay clean.
func newBar(quiet bool) *bar {
	return &bar{quiet: quiet || !term.IsTerminal(int(os.Stderr.Fd()))}
}

func (b *bar) report(p model.Progress) {
	if b.quiet {
		return
	}
	if p.Stage != b.cur || b.pb == nil {
		b.finish()
		b.cur = p.Stage
		b.pb = progressbar.NewOptions(p.Total, progressbar.OptionSetDescription(fmt.Sprintf("%-8s", p.Stage)),
			progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
	}
	b.pb.Set(p.Done)
}

func (b *bar) finish() {
	if b.pb != nil {
		b.pb.Finish()
		b.pb = nil
	}
}

// sepFiles are the flags for a model given as separate files.
type sepFiles struct{ textEncoder, vae, tokenizer, configs string }

func (s *sepFiles) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.textEncoder, "text-encoder", "", "with --model FILE.safetensors (ComfyUI's single file): the Gemma-2 file, e.g. gemma_2_2b_fp16.safetensors")
	fs.StringVar(&s.vae, "vae", "", "with --model FILE.safetensors: the VAE file, e.g. ae.safetensors")
	fs.StringVar(&s.tokenizer, "tokenizer", "", "with --model FILE.safetensors: a tokenizer.json or tokenizer.model (default: the one inside the Gemma file)")
	fs.StringVar(&s.configs, "configs", "", "with --model FILE.safetensors: a folder with transformer/, text_encoder/, vae/ config.json (default: the real Lumina-Image-2.0 configuration)")
}

func (s *sepFiles) config(c model.Config) model.Config {
	c.TextEncoder, c.VAE, c.Tokenizer, c.Configs = s.textEncoder, s.vae, s.tokenizer, s.configs
	return c
}
