package tokenizer

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// tinyJSON builds a tokenizer.json in Gemma's layout over a hand-written
// vocabulary: <pad> <eos> <bos> <unk> <start_of_turn>, the 256 byte tokens,
// then pieces, with merges in the given order (rank = position).
func tinyJSON(t testing.TB, pieces []string, merges []string, extra map[string]any) []byte {
	t.Helper()
	vocab := map[string]int{}
	var order []string
	add := func(s string) {
		if _, ok := vocab[s]; !ok {
			vocab[s] = len(order)
			order = append(order, s)
		}
	}
	for _, s := range []string{"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<b>", "<bold>"} {
		add(s)
	}
	for b := 0; b < 256; b++ {
		add(byteTokenName(byte(b)))
	}
	for _, s := range pieces {
		add(s)
	}
	added := []map[string]any{}
	for i, s := range order[:7] {
		added = append(added, map[string]any{
			"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
			"normalized": false, "special": i < 5,
		})
	}
	f := map[string]any{
		"version":      "1.0",
		"added_tokens": added,
		"normalizer":   map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		"pre_tokenizer": map[string]any{"type": "Split", "pattern": map[string]any{"String": " "},
			"behavior": "MergedWithPrevious", "invert": false},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": "<unk>", "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
			"vocab": vocab, "merges": merges,
		},
	}
	for k, v := range extra {
		f[k] = v
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tiny(t testing.TB, pieces, merges []string) *Tokenizer {
	t.Helper()
	tok, err := FromHFJSON(strings.NewReader(string(tinyJSON(t, pieces, merges, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pieces renders ids as their vocabulary strings, for readable failures.
func pieces(tok *Tokenizer, ids []int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = tok.Piece(id)
	}
	return out
}

func expect(t *testing.T, tok *Tokenizer, text string, o Options, want ...string) {
	t.Helper()
	got := pieces(tok, tok.EncodeWith(text, o))
	if !slices.Equal(got, want) {
		t.Errorf("%q: got %q, want %q", text, got, want)
	}
}

var abc = []string{"a", "b", "c", "▁", "ab", "bc", "abc", "▁a", "é"}

// Merges apply lowest rank first, over the whole text (no pre-tokenizer),
// the leftmost first among equal ranks.
func TestMergeOrder(t *testing.T) {
	o := Options{NoBOS: true}
	tok := tiny(t, abc, []string{"a b", "b c", "ab c"})
	expect(t, tok, "abc", o, "abc")
	expect(t, tok, "abcbc", o, "abc", "bc")

	tok = tiny(t, abc, []string{"b c", "a b", "ab c"})
	expect(t, tok, "abc", o, "a", "bc") // "b c" wins, and "a bc" is no merge

	// Spaces become "▁" and merge like any character: "a a" is one word.
	tok = tiny(t, abc, []string{"▁ a", "a b"})
	expect(t, tok, "a ab", o, "a", "▁a", "b")
	expect(t, tok, " ", o, "▁")
	// Equal rank: leftmost first ("a a a" with only "a a"... use "aaa").
	tok = tiny(t, append(abc, "aa"), []string{"a a"})
	expect(t, tok, "aaa", o, "aa", "a")
}

// A character outside the vocabulary becomes its UTF-8 bytes; Decode joins
// them back, and an invalid run becomes U+FFFD per byte.
func TestByteFallback(t *testing.T) {
	tok := tiny(t, abc, []string{"a b"})
	o := Options{NoBOS: true}
	expect(t, tok, "aé€b", o, "a", "é", "<0xE2>", "<0x82>", "<0xAC>", "b")
	expect(t, tok, "\x00", o, "<0x00>")
	ids := tok.EncodeWith("ab€ 😀", o)
	if d := tok.Decode(ids); d != "ab€ 😀" {
		t.Errorf("Decode = %q", d)
	}
	bad := []int{tok.EncodeWith("\xC3", o)[0], tok.EncodeWith("a", o)[0], tok.EncodeWith("\xE2\x82", o)[0]}
	if d := tok.Decode(bad); d != "\uFFFDa\uFFFD" {
		t.Errorf("Decode(invalid) = %q", d)
	}
	if d := tok.Decode([]int{-1, 1 << 30}); d != "" {
		t.Errorf("Decode(out of range) = %q", d)
	}
}

// Without byte tokens, unknown characters become one fused <unk>; as in HF,
// a pending <unk> is written after byte tokens that follow it.
func TestUnknown(t *testing.T) {
	raw := tinyJSON(t, abc, nil, nil)
	var f map[string]any
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	m := f["model"].(map[string]any)
	m["byte_fallback"] = false
	raw, _ = json.Marshal(f)
	tok, err := FromHFJSON(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{NoBOS: true}
	expect(t, tok, "a€€b", o, "a", "<unk>", "b")
	m["fuse_unk"] = false
	raw, _ = json.Marshal(f)
	if tok, err = FromHFJSON(strings.NewReader(string(raw))); err != nil {
		t.Fatal(err)
	}
	expect(t, tok, "a€€b", o, "a", "<unk>", "<unk>", "b")
}

// Added tokens are matched verbatim on the raw text, leftmost and longest
// first, case-sensitively; the text between is encoded on its own.
func TestSpecialTokens(t *testing.T) {
	tok := tiny(t, append(abc, "<", ">", "o", "s", "B", "O", "S", "l", "d"), []string{"a b"})
	o := Options{NoBOS: true}
	expect(t, tok, "ab<bos>ab", o, "ab", "<bos>", "ab")
	expect(t, tok, "<start_of_turn><pad><eos>", o, "<start_of_turn>", "<pad>", "<eos>")
	expect(t, tok, "<bold><b>", o, "<bold>", "<b>")
	expect(t, tok, "<BOS>", o, "<", "B", "O", "S", ">")
	expect(t, tok, "<bo", o, "<", "b", "o")
	expect(t, tok, "<bos>", Options{}, "<bos>", "<bos>")
	if got := tok.Decode(tok.Encode("a<bos> b")); got != "<bos>a<bos> b" {
		t.Errorf("Decode = %q", got)
	}
}

// <bos> comes first unless NoBOS; truncation keeps MaxLength ids including
// it; 0 means 256 and a negative value means no limit.
func TestTruncation(t *testing.T) {
	tok := tiny(t, abc, nil)
	s := tok.Special()
	if s != (SpecialIDs{Pad: 0, EOS: 1, BOS: 2, Unk: 3}) || tok.VocabSize() != 7+256+len(abc) {
		t.Fatalf("special %+v, vocab %d", s, tok.VocabSize())
	}
	if got := tok.Encode(""); !slices.Equal(got, []int{2}) {
		t.Errorf("Encode(\"\") = %v", got)
	}
	text := strings.Repeat("a", 300)
	cases := []struct {
		o    Options
		want int
	}{{Options{}, 256}, {Options{MaxLength: 5}, 5}, {Options{MaxLength: -1}, 301},
		{Options{MaxLength: 1}, 1}, {Options{MaxLength: 5, NoBOS: true}, 5}, {Options{MaxLength: 400}, 301}}
	for _, c := range cases {
		ids := tok.EncodeWith(text, c.o)
		if len(ids) != c.want {
			t.Errorf("%+v: %d ids, want %d", c.o, len(ids), c.want)
		}
		if (ids[0] == 2) == c.o.NoBOS {
			t.Errorf("%+v: first id %d", c.o, ids[0])
		}
	}
	// Stopping early at the limit must agree with encoding everything.
	long := strings.Repeat("ab<bos>c ", 100)
	full := tok.EncodeWith(long, Options{MaxLength: -1})
	for _, n := range []int{1, 2, 3, 7, 50, 256} {
		if got := tok.EncodeWith(long, Options{MaxLength: n}); !slices.Equal(got, full[:n]) {
			t.Errorf("MaxLength %d: %v, want %v", n, got, full[:n])
		}
	}
}

// Merges may be written as "a b" or ["a", "b"].
func TestMergeArrays(t *testing.T) {
	raw := strings.Replace(string(tinyJSON(t, abc, []string{"MERGES"}, nil)), `"merges":["MERGES"]`,
		`"merges":[["b","c"],["a","b"]]`, 1)
	tok, err := FromHFJSON(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, tok, "abc", Options{NoBOS: true}, "a", "bc")
}

// Files that are not Gemma's layout are refused, not mis-tokenized.
func TestUnsupported(t *testing.T) {
	for name, extra := range map[string]map[string]any{
		"normalizer":    {"normalizer": map[string]any{"type": "NFKC"}},
		"pre-tokenizer": {"pre_tokenizer": map[string]any{"type": "ByteLevel"}},
		"model":         {"model": map[string]any{"type": "Unigram", "vocab": map[string]int{"a": 0}}},
	} {
		_, err := FromHFJSON(strings.NewReader(string(tinyJSON(t, abc, nil, extra))))
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
	for name, raw := range map[string]string{
		"truncated":   string(tinyJSON(t, abc, nil, nil))[:100],
		"bad merge":   string(tinyJSON(t, abc, []string{"a zz"}, nil)),
		"merge parts": string(tinyJSON(t, abc, []string{"a b c"}, nil)),
	} {
		if _, err := FromHFJSON(strings.NewReader(raw)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
