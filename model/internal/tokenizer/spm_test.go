package tokenizer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
)

type testPiece struct {
	text  string
	score float32
	typ   int // spNormal, spUnknown, …; 6 = BYTE
}

const spByte = 6

// modelProto writes a SentencePiece ModelProto (BPE, byte fallback,
// Gemma's normalizer spec) with the protobuf wire format.
func modelProto(pieces []testPiece, normalizer []byte) []byte {
	tag := func(b []byte, field, wire int) []byte { return binary.AppendUvarint(b, uint64(field<<3|wire)) }
	msg := func(b []byte, field int, m []byte) []byte {
		b = tag(b, field, 2)
		return append(binary.AppendUvarint(b, uint64(len(m))), m...)
	}
	varint := func(b []byte, field int, v uint64) []byte { return binary.AppendUvarint(tag(b, field, 0), v) }
	var out []byte
	for _, p := range pieces {
		var m []byte
		m = msg(m, 1, []byte(p.text))
		m = binary.LittleEndian.AppendUint32(tag(m, 2, 5), math.Float32bits(p.score))
		m = varint(m, 3, uint64(p.typ))
		out = msg(out, 1, m)
	}
	var trainer []byte
	trainer = varint(trainer, 3, 2)  // model_type BPE
	trainer = varint(trainer, 35, 1) // byte_fallback
	out = msg(out, 2, trainer)
	if normalizer == nil {
		normalizer = msg(nil, 1, []byte("identity"))
		normalizer = varint(normalizer, 3, 0) // add_dummy_prefix
		normalizer = varint(normalizer, 4, 0) // remove_extra_whitespaces
		normalizer = varint(normalizer, 5, 1) // escape_whitespaces
	}
	return msg(out, 3, normalizer)
}

// tinyModel: controls, <unk>, 256 bytes, a user-defined "▁▁", and pieces
// whose score is minus their merge order.
func tinyModel() []testPiece {
	ps := []testPiece{{"<pad>", 0, spControl}, {"<eos>", 0, spControl}, {"<bos>", 0, spControl},
		{"<unk>", 0, spUnknown}, {"<start_of_turn>", 0, spUserDefined}, {"▁▁", 0, spUserDefined}}
	for b := 0; b < 256; b++ {
		ps = append(ps, testPiece{byteTokenName(byte(b)), 0, spByte})
	}
	for _, s := range []string{"a", "b", "c", "▁", "é"} {
		ps = append(ps, testPiece{s, 0, spNormal})
	}
	for i, s := range []string{"bc", "ab", "▁a"} {
		ps = append(ps, testPiece{s, -float32(i + 1), spNormal})
	}
	return ps
}

func TestSentencePieceTiny(t *testing.T) {
	tok, err := FromSentencePiece(bytes.NewReader(modelProto(tinyModel(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	if s := tok.Special(); s != (SpecialIDs{Pad: 0, EOS: 1, BOS: 2, Unk: 3}) || tok.VocabSize() != 6+256+8 {
		t.Fatalf("special %+v, vocab %d", s, tok.VocabSize())
	}
	o := Options{NoBOS: true}
	expect(t, tok, "abc", o, "a", "bc")       // "bc" scores higher
	expect(t, tok, "a ab", o, "a", "▁", "ab") // "ab" scores higher than "▁a"
	expect(t, tok, "a a", o, "a", "▁a")
	expect(t, tok, "a€", o, "a", "<0xE2>", "<0x82>", "<0xAC>")
	expect(t, tok, "<bos>a<start_of_turn>", o, "<bos>", "a", "<start_of_turn>")
	expect(t, tok, "a  b", o, "a", "▁▁", "b")
	expect(t, tok, "abc", Options{MaxLength: 2}, "<bos>", "a")
	if d := tok.Decode(tok.Encode("abé €")); d != "<bos>abé €" {
		t.Errorf("Decode = %q", d)
	}
}

func TestSentencePieceRefused(t *testing.T) {
	dummy := []byte{3 << 3, 1} // add_dummy_prefix: true
	_, err := FromSentencePiece(bytes.NewReader(modelProto(tinyModel(), dummy)))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("dummy prefix: err = %v, want ErrUnsupported", err)
	}
	for name, raw := range map[string][]byte{
		"empty":     nil,
		"truncated": modelProto(tinyModel(), nil)[:50],
		"garbage":   []byte("\xff\xff\xff"),
	} {
		if _, err := FromSentencePiece(bytes.NewReader(raw)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// A tokenizer.model made from the golden tokenizer.json (piece order, types
// from the added tokens, score = minus the rank of the first merge making
// the piece, which is how HF's converter ordered the merges) must give the
// golden ids through FromSentencePiece too. This checks the SentencePiece
// path end to end; the real Gemma tokenizer.model is checked by
// TestGoldenSentencePiece when one is in the cache.
func TestGoldenSentencePieceFromJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: rebuilds a 256000-piece model")
	}
	g := loadGolden(t)
	loadGemmaHF(t, g) // skip or fail as the HF golden test does
	raw, err := os.ReadFile(cacheFile(t, hfJSONName, true))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
		Model struct {
			Vocab  map[string]int `json:"vocab"`
			Merges hfMerges       `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	ps := make([]testPiece, len(f.Model.Vocab))
	for s, id := range f.Model.Vocab {
		ps[id] = testPiece{s, float32(-len(f.Model.Merges) - 1 - id), spNormal}
		if s == "\t" {
			// HF's GemmaConverter renamed the byte piece <0x09> to "\t".
			ps[id].text = "<0x09>"
		}
		if _, ok := byteToken(ps[id].text); ok {
			ps[id].typ = spByte
		}
	}
	rank := 0
	err = f.Model.Merges.eachMerge(func(_, _, ab []byte) error {
		if p := &ps[f.Model.Vocab[string(ab)]]; p.score < -float32(rank) {
			p.score = -float32(rank) // the first merge making the piece
		}
		rank++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range f.AddedTokens {
		switch a.Content {
		case "<pad>", "<eos>", "<bos>":
			ps[a.ID].typ = spControl
		case "<unk>":
			ps[a.ID].typ = spUnknown
		default:
			ps[a.ID].typ = spUserDefined
		}
	}
	tok, err := FromSentencePiece(bytes.NewReader(modelProto(ps, nil)))
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, tok, g)
}

// The piece types of the tiny model decide what the front end matches.
func TestSentencePieceAddedOnly(t *testing.T) {
	tok, err := FromSentencePiece(bytes.NewReader(modelProto(tinyModel(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	// "<0x41>" in the text is plain text (byte pieces are not added tokens).
	got := pieces(tok, tok.EncodeWith("<0x41>", Options{NoBOS: true}))
	if strings.Join(got, "") != "<0x3C><0x30><0x78><0x34><0x31><0x3E>" {
		t.Errorf("got %q", got)
	}
}
