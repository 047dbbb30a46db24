package gemma2_test

import (
	"math"
	"testing"

	"github.com/luminaweb/lumina/internal/golden"
	"github.com/luminaweb/lumina/model/internal/gemma2"
	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/ops"
)

// countingSource counts the embedding rows read, to show the table is
// never read whole when it is streamed.
type countingSource struct {
	*golden.Case
	rows, whole int
}

func (s *countingSource) Float32(name string) ([]float32, error) {
	if name == "model.embed_tokens.weight" {
		s.whole++
	}
	return s.Case.Float32(name)
}

func (s *countingSource) Float32Rows(name string, row, n int) ([]float32, error) {
	s.rows += n
	v, err := s.Case.Float32(name)
	if err != nil {
		return nil, err
	}
	info, _ := s.Info(name)
	D := info.Shape[1]
	return v[row*D : (row+n)*D], nil
}

// With the embedding table streamed (never uploaded, only the prompt's
// rows read), the features are bit-identical to the gathered ones.
func TestEncodeTokensStreamed(t *testing.T) {
	c := golden.Open(t, "gemma2_tiny")
	cfg := goldenConfig(t, c)
	in := readInputs(t, c)
	ids := make([][]int, in.B)
	distinct := map[int]bool{}
	for r := range in.B {
		for j := range in.L {
			if in.mask[r*in.L+j] == 1 {
				id := int(in.ids[r*in.L+j])
				ids[r] = append(ids[r], id)
				distinct[id] = true
			}
		}
	}
	b := ops.NewCPU()
	n := cfg.NumHiddenLayers - 1
	full, err := gemma2.LoadLayers(&nn.Loader{B: b, Src: c}, cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{Case: c}
	streamed, err := gemma2.LoadStreamed(&nn.Loader{B: b, Src: src}, cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	if streamed.EmbedTokens != nil {
		t.Fatal("the streamed model uploaded the table")
	}
	want, lens, err := full.EncodeTokens(ids, n)
	if err != nil {
		t.Fatal(err)
	}
	got, lens2, err := streamed.EncodeTokens(ids, n)
	if err != nil {
		t.Fatal(err)
	}
	if src.whole != 0 || src.rows != len(distinct) {
		t.Errorf("read the whole table %d times and %d rows; want 0 and the %d distinct ids", src.whole, src.rows, len(distinct))
	}
	wv, gv := read(t, b, want), read(t, b, got)
	L, D := want.Shape()[1], cfg.HiddenSize
	for r := range lens {
		if lens[r] != lens2[r] {
			t.Fatalf("lengths %v vs %v", lens, lens2)
		}
		for j := range lens[r] {
			for k := range D {
				i := (r*L+j)*D + k
				if math.Float32bits(wv[i]) != math.Float32bits(gv[i]) {
					t.Fatalf("row %d token %d dim %d: streamed %v, gathered %v", r, j, k, gv[i], wv[i])
				}
			}
		}
	}
	if _, _, err := streamed.EncodeTokens([][]int{{cfg.VocabSize}}, n); err == nil {
		t.Error("an id outside the vocabulary was accepted")
	}
}
