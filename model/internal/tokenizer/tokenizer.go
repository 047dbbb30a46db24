// Package tokenizer is the Gemma-2 tokenizer as Lumina-Image 2.0 uses it
// (spec §1.3): text → ids with <bos> first, no <eos>, no dummy-prefix space,
// truncated on the right to 256 ids including <bos>.
//
// Two sources give the same Tokenizer:
//
//   - FromHFJSON reads a Hugging Face tokenizer.json and runs its BPE here
//     (merges by rank over the whole text, byte fallback). This is the
//     tokenizer that produced the golden ids, and it matches all of them.
//   - FromSentencePiece reads a SentencePiece tokenizer.model (what ComfyUI
//     embeds as spiece_model and HF folders carry) through
//     github.com/eliben/go-sentencepiece.
//
// Both share the front end of the HF tokenizer: added tokens (<bos>,
// <start_of_turn>, <unused0>, runs of "\n", …) written in the input are
// matched verbatim, case-sensitively, leftmost-longest, on the raw text,
// before spaces become "▁"; the text between them goes to the model.
package tokenizer

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Gemma's special ids (the same in tokenizer.json and tokenizer.model).
const (
	GemmaPadID = 0
	GemmaEOSID = 1
	GemmaBOSID = 2
	GemmaUnkID = 3

	// GemmaVocabSize is the size of Gemma's vocabulary.
	GemmaVocabSize = 256000

	// DefaultMaxLength is Lumina's caption length limit, <bos> included
	// (spec §1.3; the model's RoPE table allows at most 299).
	DefaultMaxLength = 256
)

// ErrUnsupported is returned for a tokenizer file that uses a feature this
// package does not implement (another model type, normalizer, or
// pre-tokenizer than Gemma's).
var ErrUnsupported = errors.New("tokenizer: unsupported tokenizer file")

// Options controls EncodeWith. The zero value is Lumina's setting: <bos>
// first, at most DefaultMaxLength ids.
type Options struct {
	// MaxLength is the most ids returned, <bos> included; the tail is
	// dropped. 0 means DefaultMaxLength, a negative value means no limit.
	MaxLength int
	// NoBOS leaves out the leading <bos>.
	NoBOS bool
}

// SpecialIDs are the ids of the control tokens; -1 where the vocabulary has
// none.
type SpecialIDs struct {
	Pad, EOS, BOS, Unk int
}

// Tokenizer turns text into Gemma token ids and back. It is immutable after
// construction and safe for concurrent use.
type Tokenizer struct {
	pieces  []string // id → token text, "▁" for spaces
	special SpecialIDs
	added   addedMatcher
	model   segmentModel
}

// segmentModel encodes one stretch of raw text that contains no added token
// (spaces not yet replaced), appending its ids to dst.
type segmentModel interface {
	encode(dst []int, raw string) []int
}

// Encode returns the ids of text with Lumina's settings: <bos> first, no
// <eos>, at most DefaultMaxLength ids.
//
//	ids := tok.Encode(tokenizer.Prompt(tokenizer.SystemReal, "a red fox"))
func (t *Tokenizer) Encode(text string) []int { return t.EncodeWith(text, Options{}) }

// EncodeWith returns the ids of text under o.
func (t *Tokenizer) EncodeWith(text string, o Options) []int {
	limit := o.MaxLength
	if limit == 0 {
		limit = DefaultMaxLength
	}
	n := len(text)/3 + 2 // about 4 bytes a token in English
	if limit >= 0 {
		n = min(n, limit)
	}
	ids := make([]int, 0, n)
	if !o.NoBOS {
		ids = append(ids, t.special.BOS)
	}
	full := func() bool { return limit >= 0 && len(ids) >= limit }
	// Segments are encoded independently, so stopping once the limit is
	// reached gives the same ids as encoding everything and truncating.
	for rest := text; rest != "" && !full(); {
		at, n, id := t.added.find(rest)
		if at < 0 {
			ids = t.model.encode(ids, rest)
			break
		}
		if at > 0 {
			ids = t.model.encode(ids, rest[:at])
		}
		ids = append(ids, id)
		rest = rest[at+n:]
	}
	if limit >= 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	return ids
}

// Decode returns the text of ids as Hugging Face's decoder does with
// skip_special_tokens=False: "▁" becomes a space, runs of byte tokens
// <0xNN> are joined into UTF-8 (a run that is not valid UTF-8 becomes one
// U+FFFD per byte), and every other token, control tokens included, is its
// text. Ids outside the vocabulary are skipped.
func (t *Tokenizer) Decode(ids []int) string {
	var sb strings.Builder
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			sb.Write(run)
		} else {
			sb.WriteString(strings.Repeat("\uFFFD", len(run)))
		}
		run = run[:0]
	}
	for _, id := range ids {
		if id < 0 || id >= len(t.pieces) {
			continue
		}
		p := t.pieces[id]
		if b, ok := byteToken(p); ok {
			run = append(run, b)
			continue
		}
		flush()
		sb.WriteString(strings.ReplaceAll(p, "▁", " "))
	}
	flush()
	return sb.String()
}

// Piece returns the text of token id as stored in the vocabulary ("▁" for
// a space, "<0x0A>" for a byte token), or "" for an id out of range.
func (t *Tokenizer) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// VocabSize is the number of token ids (256000 for Gemma).
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// Special returns the ids of <pad>, <eos>, <bos> and <unk>.
func (t *Tokenizer) Special() SpecialIDs { return t.special }

// byteToken parses a byte-fallback token "<0xNN>".
func byteToken(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(p[3])
	lo, ok2 := hexDigit(p[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// byteTokenName is the vocabulary entry of byte b ("<0x0A>").
func byteTokenName(b byte) string {
	const hex = "0123456789ABCDEF"
	return string([]byte{'<', '0', 'x', hex[b>>4], hex[b&15], '>'})
}

// specialIDs looks up the control tokens by their Gemma names.
func specialIDs(lookup func(string) (int, bool)) SpecialIDs {
	get := func(s string) int {
		if id, ok := lookup(s); ok {
			return id
		}
		return -1
	}
	return SpecialIDs{Pad: get("<pad>"), EOS: get("<eos>"), BOS: get("<bos>"), Unk: get("<unk>")}
}

// addedMatcher finds added tokens in raw text, leftmost first and the
// longest at that position (the Aho-Corasick LeftmostLongest rule of HF
// tokenizers).
type addedMatcher struct {
	byFirst [256][]addedToken // by first byte, longest first
}

type addedToken struct {
	text string
	id   int
}

func newAddedMatcher(tokens []addedToken) addedMatcher {
	var m addedMatcher
	for _, a := range tokens {
		if a.text == "" {
			continue
		}
		l := &m.byFirst[a.text[0]]
		i := 0
		for i < len(*l) && len((*l)[i].text) >= len(a.text) {
			i++
		}
		*l = append(*l, addedToken{})
		copy((*l)[i+1:], (*l)[i:])
		(*l)[i] = a
	}
	return m
}

// find returns the byte offset, length and id of the first added token in
// s, or at = -1 when there is none.
func (m *addedMatcher) find(s string) (at, n, id int) {
	for i := 0; i < len(s); i++ {
		for _, a := range m.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], a.text) {
				return i, len(a.text), a.id
			}
		}
	}
	return -1, 0, 0
}
