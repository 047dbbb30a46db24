package weights

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/luminaweb/lumina/model/tensor"
)

// Kind is the network a checkpoint holds.
type Kind uint8

// The three networks of the pipeline.
const (
	DiT   Kind = iota + 1 // Next-DiT; canonical names: the original checkpoint's
	Gemma                 // Gemma-2 text encoder; canonical: HF names without "model."
	VAE                   // FLUX VAE decoder; canonical: diffusers "decoder.*" names
)

func (k Kind) String() string {
	switch k {
	case DiT:
		return "dit"
	case Gemma:
		return "gemma"
	case VAE:
		return "vae"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Naming is a family of tensor names a checkpoint may use.
type Naming string

// The namings Map understands.
const (
	Original  Naming = "original"  // Next-DiT: Alpha-VLLM's names (ComfyUI's lumina_2_model_bf16 too)
	Diffusers Naming = "diffusers" // Next-DiT: Lumina2Transformer2DModel; VAE: AutoencoderKL
	HF        Naming = "hf"        // Gemma: transformers Gemma2Model
	BFL       Naming = "bfl"       // VAE: BFL/LDM (FLUX and ComfyUI ae.safetensors)
)

// Layout says how a checkpoint names one network's tensors: every name
// starts with Prefix (e.g. "model.diffusion_model." or "model."), and the
// rest follows Naming.
type Layout struct {
	Kind   Kind
	Naming Naming
	Prefix string
}

func (l Layout) String() string {
	s := l.Kind.String() + "/" + string(l.Naming)
	if l.Prefix != "" {
		s += fmt.Sprintf(" (prefix %q)", l.Prefix)
	}
	return s
}

// target is where one stored tensor goes in the canonical view: the
// canonical name, and which of how many row blocks it is (1 of 1 for a
// plain rename; q, k, v = 0, 1, 2 of 3 for Next-DiT's fused qkv).
type target struct {
	name     string
	part, of int
}

// renamer returns the function that maps a stored name (prefix removed)
// to its canonical target, or nil for a layout Map does not know. names
// are the stored names with the prefix removed (BFL's up-block reversal
// needs their count).
func (l Layout) renamer(names []string) func(string) (target, bool) {
	switch {
	case l.Kind == DiT && l.Naming == Original:
		return ditOriginal
	case l.Kind == DiT && l.Naming == Diffusers:
		return ditFromDiffusers
	case l.Kind == Gemma && l.Naming == HF:
		return gemmaHF
	case l.Kind == VAE && l.Naming == Diffusers:
		return vaeFromDiffusers
	case l.Kind == VAE && l.Naming == BFL:
		levels := bflLevels(names)
		return func(name string) (target, bool) { return vaeFromBFL(name, levels) }
	}
	return nil
}

// Mapped presents another Source under a network's canonical names. It
// implements Source, RowReader and, when the underlying source does,
// io.Closer; Next-DiT's diffusers to_q/to_k/to_v appear as one qkv tensor.
type Mapped struct {
	base    Source
	layout  Layout
	entries map[string]*mappedEntry
	names   []string
	unused  []string
}

type mappedEntry struct {
	info  Info
	parts []string // stored names, concatenated along rows in this order
	rows  []int    // rows of each part
}

// Map wraps src with the canonical names of layout. It fails when the
// layout does not apply: two stored tensors with one canonical name, a
// fused tensor with a part missing or parts whose shapes do not fit.
func Map(src Source, layout Layout) (*Mapped, error) {
	m := &Mapped{base: src, layout: layout, entries: map[string]*mappedEntry{}}
	fail := func(format string, a ...any) (*Mapped, error) {
		return nil, fmt.Errorf("weights: %s as %s: %s", describe(src), layout, fmt.Sprintf(format, a...))
	}
	var rests []string
	for _, n := range src.Names() {
		if rest, ok := strings.CutPrefix(n, layout.Prefix); ok {
			rests = append(rests, rest)
		}
	}
	rename := layout.renamer(rests)
	if rename == nil {
		return fail("unknown layout")
	}
	for _, n := range src.Names() {
		rest, ok := strings.CutPrefix(n, layout.Prefix)
		var t target
		if ok {
			t, ok = rename(rest)
		}
		if !ok {
			m.unused = append(m.unused, n)
			continue
		}
		e := m.entries[t.name]
		if e == nil {
			e = &mappedEntry{parts: make([]string, t.of), rows: make([]int, t.of)}
			m.entries[t.name] = e
		}
		if len(e.parts) != t.of || e.parts[t.part] != "" {
			return fail("%q and %q both map to %q", first(e.parts), n, t.name)
		}
		e.parts[t.part] = n
	}
	for name, e := range m.entries {
		info, err := joinParts(src, name, e)
		if err != nil {
			return fail("%v", err)
		}
		if layout.Kind == VAE {
			info.Shape = squeezeAttention(name, info.Shape)
		}
		e.info = info
		m.names = append(m.names, name)
	}
	slices.Sort(m.names)
	return m, nil
}

func first(parts []string) string {
	for _, p := range parts {
		if p != "" {
			return p
		}
	}
	return ""
}

// joinParts computes the Info of a canonical tensor from its stored parts.
func joinParts(src Source, name string, e *mappedEntry) (Info, error) {
	infos := make([]Info, len(e.parts))
	for i, p := range e.parts {
		if p == "" {
			return Info{}, fmt.Errorf("%q: found %q but not part %d of %d", name, first(e.parts), i, len(e.parts))
		}
		infos[i], _ = src.Info(p)
		if len(infos[i].Shape) == 0 {
			return Info{}, fmt.Errorf("%q: part %q is a scalar", name, p)
		}
		e.rows[i] = infos[i].Shape[0]
	}
	out := Info{Name: name, DType: infos[0].DType, Shape: infos[0].Shape.Clone()}
	for i, in := range infos[1:] {
		if in.DType != out.DType || !in.Shape[1:].Equal(out.Shape[1:]) {
			return Info{}, fmt.Errorf("%q: cannot join %q %s%v and %q %s%v by rows", name, e.parts[0], infos[0].DType, infos[0].Shape, e.parts[i+1], in.DType, in.Shape)
		}
		out.Shape[0] += in.Shape[0]
	}
	if len(infos) == 3 && infos[1].Shape[0] != infos[2].Shape[0] {
		return Info{}, fmt.Errorf("%q: k %q has %d rows, v %q has %d", name, e.parts[1], infos[1].Shape[0], e.parts[2], infos[2].Shape[0])
	}
	return out, nil
}

// Layout returns the layout the source was mapped with.
func (m *Mapped) Layout() Layout { return m.layout }

// Base returns the wrapped source.
func (m *Mapped) Base() Source { return m.base }

// Unused lists the stored float tensors that have no canonical name (the
// VAE encoder, another network of an all-in-one file), sorted.
func (m *Mapped) Unused() []string { return slices.Clone(m.unused) }

// String describes the source and its layout.
func (m *Mapped) String() string { return describe(m.base) + " as " + m.layout.String() }

// Close closes the wrapped source when it is an io.Closer.
func (m *Mapped) Close() error {
	if c, ok := m.base.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Names implements Source: the canonical names, sorted.
func (m *Mapped) Names() []string { return slices.Clone(m.names) }

// Info implements Source.
func (m *Mapped) Info(name string) (Info, bool) {
	e, ok := m.entries[name]
	if !ok {
		return Info{}, false
	}
	info := e.info
	info.Shape = info.Shape.Clone()
	return info, true
}

// Stored returns the stored names a canonical tensor is read from (one,
// or q, k, v for a fused qkv).
func (m *Mapped) Stored(name string) ([]string, bool) {
	e, ok := m.entries[name]
	if !ok {
		return nil, false
	}
	return slices.Clone(e.parts), true
}

func (m *Mapped) entry(name string) (*mappedEntry, error) {
	e, ok := m.entries[name]
	if !ok {
		return nil, fmt.Errorf("weights: %s: %w %q", m, ErrNotFound, name)
	}
	return e, nil
}

// Float32 implements Source; a fused tensor is its parts' rows in order.
func (m *Mapped) Float32(name string) ([]float32, error) {
	e, err := m.entry(name)
	if err != nil {
		return nil, err
	}
	if len(e.parts) == 1 {
		return m.base.Float32(e.parts[0])
	}
	out := make([]float32, 0, e.info.Shape.Numel())
	for _, p := range e.parts {
		v, err := m.base.Float32(p)
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
	}
	return out, nil
}

// Float32Rows implements RowReader; rows of a fused tensor come from the
// parts that hold them.
func (m *Mapped) Float32Rows(name string, row, n int) ([]float32, error) {
	e, err := m.entry(name)
	if err != nil {
		return nil, err
	}
	rowLen, err := rowSpan(m.String(), name, e.info.Shape, row, n)
	if err != nil {
		return nil, err
	}
	out := make([]float32, 0, n*rowLen)
	for i, p := range e.parts {
		lo, hi := max(row, 0), min(row+n, e.rows[i])
		if lo < hi {
			v, err := Rows(m.base, p, lo, hi-lo)
			if err != nil {
				return nil, err
			}
			out = append(out, v...)
		}
		row -= e.rows[i]
	}
	return out, nil
}

// SentencePiece returns the SentencePiece model ComfyUI stores in its Gemma
// file as the U8 tensor "spiece_model" (the bytes of tokenizer.model).
func (m *Mapped) SentencePiece() ([]byte, error) {
	bs, ok := m.base.(ByteSource)
	if !ok {
		return nil, fmt.Errorf("weights: %s: cannot read raw bytes, so no SentencePiece model", m)
	}
	for _, name := range []string{m.layout.Prefix + spieceName, spieceName, "text_encoders." + spieceName} {
		if b, err := bs.Bytes(name); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("weights: %s: %w %q (no SentencePiece model in this checkpoint)", m, ErrNotFound, spieceName)
}

const spieceName = "spiece_model"

// squeezeAttention presents the VAE's mid-block attention projections as
// the [C,C] linear weights diffusers uses when they are stored as 1×1
// convolutions [C,C,1,1] (BFL; some diffusers conversions).
func squeezeAttention(name string, s tensor.Shape) tensor.Shape {
	if strings.Contains(name, ".attentions.") && strings.HasSuffix(name, ".weight") &&
		len(s) == 4 && s[2] == 1 && s[3] == 1 {
		return s[:2]
	}
	return s
}

// Packed returns a tensor's stored bytes and type when they can be
// uploaded to a GPU as they are: one stored tensor (not a fused qkv) kept
// as f16, bf16 (safetensors or a pack) or q8, q4 (a pack), and not a
// host-only table. ok is false otherwise, and the tensor is read through
// Float32.
func (m *Mapped) Packed(name string) (raw []byte, dt tensor.DType, ok bool, err error) {
	e, ok := m.entries[name]
	if !ok || len(e.parts) != 1 {
		return nil, 0, false, nil
	}
	stored := e.parts[0]
	switch base := m.base.(type) {
	case *Pack:
		t, found := base.Tensor(stored)
		if !found || t.HostOnly {
			return nil, 0, false, nil
		}
		switch t.DType {
		case PackF16:
			dt = tensor.F16
		case PackBF16:
			dt = tensor.BF16
		case PackQ8:
			dt = tensor.Q8
		case PackQ4:
			dt = tensor.Q4
		default:
			return nil, 0, false, nil
		}
		raw, _, err = base.Raw(stored)
		return raw, dt, err == nil, err
	case *File:
		info, found := base.Info(stored)
		if !found || (info.DType != tensor.F16 && info.DType != tensor.BF16) {
			return nil, 0, false, nil
		}
		raw, _, err = base.Raw(stored)
		return raw, info.DType, err == nil, err
	}
	return nil, 0, false, nil
}
