package tokenizer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	sentencepiece "github.com/eliben/go-sentencepiece"
)

// SentencePiece piece types (sentencepiece_model.proto).
const (
	spNormal      = 1
	spUnknown     = 2
	spControl     = 3
	spUserDefined = 4
)

// FromSentencePiece reads a SentencePiece tokenizer.model (a serialized
// ModelProto) of BPE type, such as Gemma's, and encodes with
// github.com/eliben/go-sentencepiece.
//
// Control, unknown and user-defined pieces (<bos>, <unk>, <start_of_turn>,
// …) are matched on the raw text first, as Hugging Face's converted
// tokenizer does, so "<bos>" written in a prompt is id 2 here too (plain
// SentencePiece would spell it out).
func FromSentencePiece(r io.Reader) (*Tokenizer, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.model: %w", err)
	}
	m, err := parseModelProto(raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.model: %w", err)
	}
	// go-sentencepiece replaces spaces by "▁" and nothing else; refuse a
	// model whose normalizer would do more than that.
	switch {
	case m.addDummyPrefix, m.removeExtraWhitespaces, !m.escapeWhitespaces:
		return nil, fmt.Errorf("%w: normalizer needs add_dummy_prefix, remove_extra_whitespaces false and escape_whitespaces true", ErrUnsupported)
	case m.charsmap:
		return nil, fmt.Errorf("%w: normalizer %q has a character map", ErrUnsupported, m.normalizerName)
	}
	proc, err := newProcessor(raw)
	if err != nil {
		return nil, err
	}

	ids := make(map[string]int, len(m.pieces))
	var added []addedToken
	for i, p := range m.pieces {
		if _, dup := ids[p.text]; !dup {
			ids[p.text] = i
		}
		switch p.typ {
		case spUnknown, spControl, spUserDefined:
			added = append(added, addedToken{p.text, i})
		}
	}
	t := &Tokenizer{
		pieces: make([]string, len(m.pieces)),
		added:  newAddedMatcher(added),
		model:  spModel{proc},
	}
	for i, p := range m.pieces {
		t.pieces[i] = p.text
		if p.text == "<0x09>" {
			// Hugging Face's GemmaConverter names this byte piece "\t"; so
			// does Piece, so that both sources agree. Decode is the same.
			t.pieces[i] = "\t"
		}
	}
	t.special = specialIDs(func(s string) (int, bool) { id, ok := ids[s]; return id, ok })
	if t.special.BOS < 0 {
		return nil, fmt.Errorf("tokenizer: tokenizer.model has no <bos>")
	}
	return t, nil
}

// newProcessor wraps sentencepiece.NewProcessor, turning a panic on a
// malformed model into an error.
func newProcessor(raw []byte) (proc *sentencepiece.Processor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("tokenizer: tokenizer.model: %v", r)
		}
	}()
	proc, err = sentencepiece.NewProcessor(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.model: %w", err)
	}
	return proc, nil
}

type spModel struct{ proc *sentencepiece.Processor }

func (m spModel) encode(dst []int, raw string) []int {
	for _, tok := range m.proc.Encode(raw) {
		dst = append(dst, tok.ID)
	}
	return dst
}

// spModelInfo is what this package needs from a ModelProto.
type spModelInfo struct {
	pieces                 []spPiece
	normalizerName         string
	charsmap               bool
	addDummyPrefix         bool
	removeExtraWhitespaces bool
	escapeWhitespaces      bool
}

type spPiece struct {
	text string
	typ  int
}

// parseModelProto reads the pieces (field 1) and the normalizer spec
// (field 3) of a ModelProto with the protobuf wire format; other fields are
// skipped.
func parseModelProto(b []byte) (*spModelInfo, error) {
	// proto2 defaults of NormalizerSpec.
	m := &spModelInfo{addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true}
	err := walkProto(b, func(field int, v uint64, msg []byte) error {
		switch field {
		case 1:
			p := spPiece{typ: spNormal}
			err := walkProto(msg, func(f int, v uint64, s []byte) error {
				switch f {
				case 1:
					p.text = string(s)
				case 3:
					p.typ = int(v)
				}
				return nil
			})
			m.pieces = append(m.pieces, p)
			return err
		case 3:
			return walkProto(msg, func(f int, v uint64, s []byte) error {
				switch f {
				case 1:
					m.normalizerName = string(s)
				case 2:
					m.charsmap = len(s) > 0
				case 3:
					m.addDummyPrefix = v != 0
				case 4:
					m.removeExtraWhitespaces = v != 0
				case 5:
					m.escapeWhitespaces = v != 0
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(m.pieces) == 0 {
		return nil, errors.New("no pieces")
	}
	return m, nil
}

var errProto = errors.New("malformed protobuf")

// walkProto calls fn for each field of a protobuf message: v holds a
// varint or fixed value, msg the bytes of a length-delimited one.
func walkProto(b []byte, fn func(field int, v uint64, msg []byte) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errProto
		}
		b = b[n:]
		field := int(key >> 3)
		var v uint64
		var msg []byte
		switch key & 7 {
		case 0:
			v, n = binary.Uvarint(b)
			if n <= 0 {
				return errProto
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return errProto
			}
			v, b = binary.LittleEndian.Uint64(b), b[8:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errProto
			}
			msg, b = b[n:n+int(l)], b[n+int(l):]
		case 5:
			if len(b) < 4 {
				return errProto
			}
			v, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		default:
			return errProto
		}
		if err := fn(field, v, msg); err != nil {
			return err
		}
	}
	return nil
}
