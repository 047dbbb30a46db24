package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// Subset returns a tokenizer.json that encodes every text of corpus exactly
// as the full tokenizer.json does, keeping only what those encodings use:
// the symbols they start from, the merges that fire (in their original
// order) and their results, plus the byte-fallback pieces and the added
// tokens, all with their original ids.
//
// Why it is exact on the corpus: at every step BPE applies the
// lowest-ranked applicable merge. On a corpus text the full tokenizer's
// choice fired, so the subset has it; the subset's applicable merges are a
// subset of the full ones; so the subset makes the same choice each time.
// Text outside the corpus may fall back to byte pieces where the full
// tokenizer has a piece. The embedded demo model uses this: its text encoder
// knows only the words of its caption grammar.
func Subset(full io.Reader, corpus []string) ([]byte, error) {
	raw, err := io.ReadAll(full)
	if err != nil {
		return nil, err
	}
	var f hfFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := newHF(&f)
	if err != nil {
		return nil, err
	}
	b := t.model.(*bpe)
	keep := map[int32]bool{}
	type merge struct {
		left, right, merged int32
		rank                uint32
	}
	fired := map[uint32]merge{}
	b.trace = func(l, r, m int32, rank uint32) {
		keep[m] = true
		if l >= 0 {
			keep[l], keep[r] = true, true
			fired[rank] = merge{l, r, m, rank}
		}
	}
	for _, text := range corpus {
		t.EncodeWith(text, Options{MaxLength: -1})
	}
	b.trace = nil
	for _, id := range b.bytes {
		if id >= 0 {
			keep[id] = true
		}
	}
	if b.unk >= 0 {
		keep[b.unk] = true
	}
	for _, id := range []int{t.special.Pad, t.special.EOS, t.special.BOS} {
		if id >= 0 {
			keep[int32(id)] = true
		}
	}
	for _, a := range f.AddedTokens {
		keep[int32(a.ID)] = true
	}

	// Rebuild the file around the kept pieces, passing through the parts
	// this package does not interpret.
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	var model map[string]json.RawMessage
	if err := json.Unmarshal(doc["model"], &model); err != nil {
		return nil, err
	}
	vocab := map[string]int32{}
	for id := range keep {
		vocab[t.pieces[id]] = id
	}
	ranks := make([]uint32, 0, len(fired))
	for r := range fired {
		ranks = append(ranks, r)
	}
	sort.Slice(ranks, func(i, j int) bool { return ranks[i] < ranks[j] })
	merges := make([][2]string, len(ranks))
	for i, r := range ranks {
		m := fired[r]
		merges[i] = [2]string{t.pieces[m.left], t.pieces[m.right]}
	}
	if model["vocab"], err = json.Marshal(vocab); err != nil {
		return nil, err
	}
	if model["merges"], err = json.Marshal(merges); err != nil {
		return nil, err
	}
	if doc["model"], err = json.Marshal(model); err != nil {
		return nil, err
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, out, "", " "); err != nil {
		return nil, err
	}
	return ind.Bytes(), nil
}
