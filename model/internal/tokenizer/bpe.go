package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// hfFile is the part of a Hugging Face tokenizer.json that Gemma's
// tokenizer uses. The post-processor (<bos> $A) and the decoder
// (Replace "▁"→" ", ByteFallback, Fuse) are fixed by this package.
type hfFile struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		Lstrip     bool   `json:"lstrip"`
		Rstrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
	} `json:"added_tokens"`
	Normalizer   *hfReplace `json:"normalizer"`
	PreTokenizer *struct {
		Type     string          `json:"type"`
		Pattern  hfPattern       `json:"pattern"`
		Behavior string          `json:"behavior"`
		Invert   bool            `json:"invert"`
		Rest     json.RawMessage `json:"pretokenizers"`
	} `json:"pre_tokenizer"`
	Model struct {
		Type                    string   `json:"type"`
		Dropout                 *float64 `json:"dropout"`
		UnkToken                *string  `json:"unk_token"`
		ContinuingSubwordPrefix *string  `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string  `json:"end_of_word_suffix"`
		FuseUnk                 bool     `json:"fuse_unk"`
		ByteFallback            bool     `json:"byte_fallback"`
		IgnoreMerges            bool     `json:"ignore_merges"`
		Vocab                   hfVocab  `json:"vocab"`
		Merges                  hfMerges `json:"merges"`
	} `json:"model"`
}

type hfReplace struct {
	Type    string    `json:"type"`
	Pattern hfPattern `json:"pattern"`
	Content string    `json:"content"`
}

type hfPattern struct {
	String *string `json:"String"`
}

// hfVocab is the vocabulary, piece → id. Its UnmarshalJSON keeps all
// pieces in one string rather than one allocation each.
type hfVocab map[string]int32

func (v *hfVocab) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*v = nil
		return nil
	}
	var arena []byte
	type entry struct{ end, id int32 }
	var entries []entry
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errors.New("vocab: not an object")
	}
	for i = skipSpace(b, i+1); i < len(b) && b[i] != '}'; {
		var err error
		if arena, i, err = jsonString(b, i, arena); err != nil {
			return fmt.Errorf("vocab: %w", err)
		}
		if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
			return errors.New("vocab: want ':'")
		}
		i = skipSpace(b, i+1)
		id, n := 0, 0
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9' && n < 10; i, n = i+1, n+1 {
			id = id*10 + int(b[i]-'0')
		}
		if n == 0 || id > math.MaxInt32 {
			return errors.New("vocab: want an id from 0 to 2^31-1")
		}
		entries = append(entries, entry{int32(len(arena)), int32(id)})
		if i = skipSpace(b, i); i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	all := string(arena)
	m := make(hfVocab, len(entries))
	start := int32(0)
	for _, e := range entries {
		m[all[start:e.end]] = e.id
		start = e.end
	}
	*v = m
	return nil
}

// hfMerges is the raw JSON array of merges, each written "a b" (older
// files) or ["a", "b"]. It is resolved against the vocabulary by eachMerge
// without allocating a string per merge (580604 of them for Gemma).
type hfMerges []byte

func (m *hfMerges) UnmarshalJSON(b []byte) error {
	*m = append((*m)[:0], b...)
	return nil
}

// eachMerge calls fn with the two parts of each merge and their
// concatenation, in rank order. The slices are reused between calls.
func (m hfMerges) eachMerge(fn func(a, b, ab []byte) error) error {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	var sa, sb, ab []byte
	i := skipSpace(m, 0)
	if i >= len(m) || m[i] != '[' {
		return errors.New("merges: not an array")
	}
	i = skipSpace(m, i+1)
	if i < len(m) && m[i] == ']' {
		return nil
	}
	for rank := 0; ; rank++ {
		var err error
		switch {
		case i < len(m) && m[i] == '"':
			if sa, i, err = jsonString(m, i, sa[:0]); err != nil {
				return err
			}
			sp := bytes.IndexByte(sa, ' ')
			if sp < 0 || bytes.IndexByte(sa[sp+1:], ' ') >= 0 {
				return fmt.Errorf("merge %d %q: want two parts", rank, sa)
			}
			sb = append(sb[:0], sa[sp+1:]...)
			sa = sa[:sp]
		case i < len(m) && m[i] == '[':
			if sa, i, err = jsonString(m, skipSpace(m, i+1), sa[:0]); err != nil {
				return err
			}
			if i = skipSpace(m, i); i >= len(m) || m[i] != ',' {
				return fmt.Errorf("merge %d: want two parts", rank)
			}
			if sb, i, err = jsonString(m, skipSpace(m, i+1), sb[:0]); err != nil {
				return err
			}
			if i = skipSpace(m, i); i >= len(m) || m[i] != ']' {
				return fmt.Errorf("merge %d: want two parts", rank)
			}
			i++
		default:
			return fmt.Errorf("merge %d: want a string or an array", rank)
		}
		ab = append(append(ab[:0], sa...), sb...)
		if err := fn(sa, sb, ab); err != nil {
			return err
		}
		i = skipSpace(m, i)
		if i < len(m) && m[i] == ']' {
			return nil
		}
		if i >= len(m) || m[i] != ',' {
			return errors.New("merges: malformed array")
		}
		i = skipSpace(m, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonString appends the value of the JSON string starting at b[i] (its
// opening quote) to dst and returns the index after the closing quote.
// encoding/json has already validated the document; this is only the
// fast path for the two big tables.
func jsonString(b []byte, i int, dst []byte) ([]byte, int, error) {
	if i >= len(b) || b[i] != '"' {
		return dst, i, errors.New("want a string")
	}
	for i++; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return dst, i + 1, nil
		case c != '\\':
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			break
		}
		switch e := b[i+1]; e {
		case 'u':
			r, n := jsonRune(b[i:])
			if n == 0 {
				return dst, i, errors.New("bad \\u escape")
			}
			dst = utf8.AppendRune(dst, r)
			i += n
		default:
			r := e
			switch e {
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case '"', '\\', '/':
			default:
				return dst, i, errors.New("bad escape")
			}
			dst = append(dst, r)
			i += 2
		}
	}
	return dst, i, errors.New("unterminated string")
}

// jsonRune decodes "\uXXXX", or a surrogate pair of two, at the start of b.
func jsonRune(b []byte) (rune, int) {
	hex4 := func(b []byte) rune {
		if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
			return -1
		}
		var r rune
		for _, c := range b[2:6] {
			d, ok := hexDigit(c)
			if !ok {
				return -1
			}
			r = r<<4 | rune(d)
		}
		return r
	}
	r := hex4(b)
	if r < 0 {
		return 0, 0
	}
	if utf16.IsSurrogate(r) {
		if r2 := hex4(b[6:]); r2 >= 0 {
			if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
				return d, 12
			}
		}
		return utf8.RuneError, 6
	}
	return r, 6
}

// FromHFJSON reads a Hugging Face tokenizer.json with Gemma's layout: a BPE
// model (byte fallback, merges by rank), a normalizer that only replaces " "
// by "▁", no pre-tokenizer (or the Split on " " that is a no-op after that
// normalizer), and added tokens matched on the raw text. Anything else is
// ErrUnsupported.
func FromHFJSON(r io.Reader) (*Tokenizer, error) {
	var f hfFile
	if err := json.NewDecoder(r).Decode(&f); err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.json: %w", err)
	}
	return newHF(&f)
}

func newHF(f *hfFile) (*Tokenizer, error) {
	m := &f.Model
	unsupported := func(what string, args ...any) error {
		return fmt.Errorf("%w: "+what, append([]any{ErrUnsupported}, args...)...)
	}
	switch {
	case m.Type != "BPE":
		return nil, unsupported("model type %q (want BPE)", m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, unsupported("BPE dropout")
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "",
		m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, unsupported("subword prefix or suffix")
	}
	replace := ""
	if n := f.Normalizer; n != nil {
		if n.Type != "Replace" || n.Pattern.String == nil || *n.Pattern.String != " " {
			return nil, unsupported("normalizer %q (want Replace \" \")", n.Type)
		}
		replace = n.Content
	}
	if p := f.PreTokenizer; p != nil {
		// Split(" ", MergedWithPrevious) cuts after each space; once the
		// normalizer has removed every space it cuts nothing.
		noop := p.Type == "Split" && p.Pattern.String != nil && *p.Pattern.String == " " &&
			!p.Invert && p.Behavior == "MergedWithPrevious" && replace != "" && !strings.Contains(replace, " ")
		if !noop {
			return nil, unsupported("pre-tokenizer %q", p.Type)
		}
	}

	// Ids run from 0 to the largest; gaps are allowed (a Subset keeps the
	// original ids of the pieces it keeps) and decode to nothing.
	n := 0
	for _, id := range m.Vocab {
		n = max(n, int(id)+1)
	}
	if n > 1<<24 {
		return nil, fmt.Errorf("tokenizer: vocab id %d is implausibly large", n-1)
	}
	pieces := make([]string, n)
	for s, id := range m.Vocab {
		if id < 0 || pieces[id] != "" {
			return nil, fmt.Errorf("tokenizer: vocab id %d of %q is negative or repeated", id, s)
		}
		pieces[id] = s
	}
	var added []addedToken
	for _, a := range f.AddedTokens {
		switch {
		case a.SingleWord || a.Lstrip || a.Rstrip || a.Normalized:
			return nil, unsupported("added token %q with single_word, lstrip, rstrip or normalized", a.Content)
		case a.ID < 0 || a.ID >= n || pieces[a.ID] != a.Content:
			return nil, fmt.Errorf("tokenizer: added token %q id %d is not that vocab entry", a.Content, a.ID)
		}
		added = append(added, addedToken{a.Content, a.ID})
	}

	b := &bpe{
		vocab:        m.Vocab,
		merges:       make(map[uint64]uint64, bytes.Count(m.Merges, []byte{'"'})/2),
		replace:      replace,
		unk:          -1,
		fuseUnk:      m.FuseUnk,
		ignoreMerges: m.IgnoreMerges,
	}
	rank := 0
	err := m.Merges.eachMerge(func(l, r, lr []byte) error {
		a, ok1 := m.Vocab[string(l)]
		c, ok2 := m.Vocab[string(r)]
		id, ok3 := m.Vocab[string(lr)]
		if !ok1 || !ok2 || !ok3 {
			return fmt.Errorf("tokenizer: merge %d %q+%q: part or result not in vocab", rank, l, r)
		}
		// A repeated pair takes its last rank, as HF's collect into a map.
		b.merges[uint64(a)<<32|uint64(c)] = uint64(rank)<<32 | uint64(id)
		rank++
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range b.bytes {
		b.bytes[i] = -1
		if m.ByteFallback {
			if id, ok := m.Vocab[byteTokenName(byte(i))]; ok {
				b.bytes[i] = id
			}
		}
	}
	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("tokenizer: unk token %q not in vocab", *m.UnkToken)
		}
		b.unk = id
	}
	m.Merges = nil // let the parsed strings go

	t := &Tokenizer{
		pieces: pieces,
		added:  newAddedMatcher(added),
		model:  b,
	}
	t.special = specialIDs(func(s string) (int, bool) { id, ok := m.Vocab[s]; return int(id), ok })
	if t.special.BOS < 0 {
		return nil, fmt.Errorf("tokenizer: no <bos> in vocab")
	}
	return t, nil
}

// bpe is the BPE model of HF tokenizers (tokenizers/src/models/bpe), as
// Gemma configures it: one word per segment, merges applied lowest rank
// first and leftmost among equal ranks, byte fallback for characters not in
// the vocabulary.
type bpe struct {
	vocab        map[string]int32
	merges       map[uint64]uint64                            // left<<32|right → rank<<32|merged id
	trace        func(left, right, merged int32, rank uint32) // Subset's recorder; nil otherwise
	bytes        [256]int32                                   // byte-fallback ids, -1 if absent
	replace      string                                       // what a space becomes ("▁"), "" for nothing
	unk          int32
	fuseUnk      bool
	ignoreMerges bool
}

type bpeSymbol struct {
	id         int32
	prev, next int32
	gone       bool
}

type bpeMerge struct {
	rank uint32
	pos  int32
	id   int32
}

func (b *bpe) encode(dst []int, raw string) []int {
	word := raw
	if b.replace != "" {
		word = strings.ReplaceAll(raw, " ", b.replace)
	}
	if b.ignoreMerges {
		if id, ok := b.vocab[word]; ok {
			return append(dst, int(id))
		}
	}

	// One symbol per character; a character outside the vocabulary becomes
	// its byte tokens, or else <unk>. As in HF's BPE::merge_word, a pending
	// <unk> (fused with the next ones under fuse_unk) is written only when a
	// character in the vocabulary or the end of the word comes, so it lands
	// after any byte tokens met in between.
	syms := make([]bpeSymbol, 0, len(word))
	push := func(id int32) {
		if b.trace != nil {
			b.trace(-1, -1, id, 0)
		}
		n := int32(len(syms))
		syms = append(syms, bpeSymbol{id: id, prev: n - 1, next: n + 1})
	}
	pendingUnk := false
	for i := 0; i < len(word); {
		_, w := utf8.DecodeRuneInString(word[i:])
		ch := word[i : i+w]
		i += w
		if id, ok := b.vocab[ch]; ok {
			if pendingUnk {
				push(b.unk)
				pendingUnk = false
			}
			push(id)
			continue
		}
		if b.fallback(ch) {
			for j := 0; j < len(ch); j++ {
				push(b.bytes[ch[j]])
			}
			continue
		}
		if b.unk < 0 {
			continue // no <unk>: HF drops the character
		}
		if pendingUnk && !b.fuseUnk {
			push(b.unk)
		}
		pendingUnk = true
	}
	if pendingUnk {
		push(b.unk)
	}
	if len(syms) == 0 {
		return dst
	}
	syms[len(syms)-1].next = -1

	var q mergeQueue
	for i := 0; i+1 < len(syms); i++ {
		if rank, id, ok := b.merge(syms[i].id, syms[i+1].id); ok {
			q.push(bpeMerge{rank, int32(i), id})
		}
	}
	for q.len() > 0 {
		top := q.pop()
		s := &syms[top.pos]
		if s.gone || s.next < 0 {
			continue
		}
		right := &syms[s.next]
		if _, id, ok := b.merge(s.id, right.id); !ok || id != top.id {
			continue // stale: a neighbour changed since this was queued
		}
		if b.trace != nil {
			b.trace(s.id, right.id, top.id, top.rank)
		}
		s.id = top.id
		s.next = right.next
		right.gone = true
		if s.next >= 0 {
			syms[s.next].prev = top.pos
		}
		if s.prev >= 0 {
			if rank, id, ok := b.merge(syms[s.prev].id, s.id); ok {
				q.push(bpeMerge{rank, s.prev, id})
			}
		}
		if s.next >= 0 {
			if rank, id, ok := b.merge(s.id, syms[s.next].id); ok {
				q.push(bpeMerge{rank, top.pos, id})
			}
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, int(syms[i].id))
	}
	return dst
}

// fallback reports whether every byte of ch has a byte token.
func (b *bpe) fallback(ch string) bool {
	for j := 0; j < len(ch); j++ {
		if b.bytes[ch[j]] < 0 {
			return false
		}
	}
	return true
}

func (b *bpe) merge(left, right int32) (rank uint32, id int32, ok bool) {
	v, ok := b.merges[uint64(left)<<32|uint64(uint32(right))]
	return uint32(v >> 32), int32(uint32(v)), ok
}

// mergeQueue is a binary min-heap on (rank, pos).
type mergeQueue struct{ h []bpeMerge }

func (q *mergeQueue) len() int { return len(q.h) }

func less(a, b bpeMerge) bool { return a.rank < b.rank || a.rank == b.rank && a.pos < b.pos }

func (q *mergeQueue) push(m bpeMerge) {
	q.h = append(q.h, m)
	for i := len(q.h) - 1; i > 0; {
		p := (i - 1) / 2
		if !less(q.h[i], q.h[p]) {
			break
		}
		q.h[i], q.h[p] = q.h[p], q.h[i]
		i = p
	}
}

func (q *mergeQueue) pop() bpeMerge {
	top := q.h[0]
	last := len(q.h) - 1
	q.h[0] = q.h[last]
	q.h = q.h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && less(q.h[l], q.h[m]) {
			m = l
		}
		if r < last && less(q.h[r], q.h[m]) {
			m = r
		}
		if m == i {
			break
		}
		q.h[i], q.h[m] = q.h[m], q.h[i]
		i = m
	}
	return top
}
