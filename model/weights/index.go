package weights

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Index is a checkpoint split into several safetensors shards, described by
// a "*.safetensors.index.json" file (HF transformers and diffusers), loaded
// as one Source. Close it when done.
type Index struct {
	path   string
	shards []*File          // in the order of their file names
	where  map[string]*File // every tensor, U8 included
	names  []string         // sorted float tensor names
}

// indexJSON is the index file: weight_map maps tensor name → shard file
// (relative to the index); metadata.total_size, when present, is the sum
// of the tensors' data bytes.
type indexJSON struct {
	Metadata struct {
		TotalSize *int64 `json:"total_size"`
	} `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// OpenIndex opens the shards an index file names, reading their headers.
// Every tensor the index names must be in its shard, no tensor may be in
// two shards, and a total_size in the index must match the shards.
func OpenIndex(path string) (*Index, error) {
	return openIndex(path, OpenSafetensors)
}

// openIndex opens shards with open, which tests replace.
func openIndex(path string, open func(string) (*File, error)) (*Index, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	var ij indexJSON
	if err := json.Unmarshal(raw, &ij); err != nil {
		return nil, fmt.Errorf("weights: index %s: %w: %v", path, ErrFormat, err)
	}
	if len(ij.WeightMap) == 0 {
		return nil, fmt.Errorf("weights: index %s: %w: no weight_map", path, ErrFormat)
	}
	x := &Index{path: path, where: map[string]*File{}}
	byName := map[string]*File{}
	var shardNames []string
	for _, s := range ij.WeightMap {
		if _, ok := byName[s]; !ok {
			byName[s] = nil
			shardNames = append(shardNames, s)
		}
	}
	slices.Sort(shardNames)
	fail := func(err error) (*Index, error) {
		x.Close()
		return nil, err
	}
	dir := filepath.Dir(path)
	for _, s := range shardNames {
		if !filepath.IsLocal(s) {
			return fail(fmt.Errorf("weights: index %s: %w: shard %q is outside the index's folder", path, ErrFormat, s))
		}
		f, err := open(filepath.Join(dir, s))
		if err != nil {
			return fail(fmt.Errorf("weights: index %s: %w", path, err))
		}
		byName[s] = f
		x.shards = append(x.shards, f)
	}
	var total int64
	for _, f := range x.shards {
		for _, e := range f.Tensors() {
			if g, dup := x.where[e.Name]; dup {
				return fail(fmt.Errorf("weights: index %s: %w: tensor %q is in both %s and %s", path, ErrFormat, e.Name, g, f))
			}
			x.where[e.Name] = f
			total += e.Size
			if e.DType != "U8" {
				x.names = append(x.names, e.Name)
			}
		}
	}
	for name, s := range ij.WeightMap {
		if x.where[name] != byName[s] {
			return fail(fmt.Errorf("weights: index %s: %w: tensor %q is listed in %s, which does not hold it", path, ErrFormat, name, s))
		}
	}
	if t := ij.Metadata.TotalSize; t != nil && *t != total {
		return fail(fmt.Errorf("weights: index %s: %w: total_size is %d, the shards hold %d bytes of tensors", path, ErrFormat, *t, total))
	}
	slices.Sort(x.names)
	return x, nil
}

// String returns the index file's path.
func (x *Index) String() string { return x.path }

// Close closes every shard.
func (x *Index) Close() error {
	var errs []error
	for _, f := range x.shards {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// Shards returns the shard files, in the order of their names.
func (x *Index) Shards() []*File { return slices.Clone(x.shards) }

// Names implements Source.
func (x *Index) Names() []string { return slices.Clone(x.names) }

// Info implements Source.
func (x *Index) Info(name string) (Info, bool) {
	f, ok := x.where[name]
	if !ok {
		return Info{}, false
	}
	return f.Info(name)
}

func (x *Index) shard(name string) (*File, error) {
	f, ok := x.where[name]
	if !ok {
		return nil, fmt.Errorf("weights: index %s: %w %q", x.path, ErrNotFound, name)
	}
	return f, nil
}

// Float32 implements Source.
func (x *Index) Float32(name string) ([]float32, error) {
	f, err := x.shard(name)
	if err != nil {
		return nil, err
	}
	return f.Float32(name)
}

// Float32Rows implements RowReader.
func (x *Index) Float32Rows(name string, row, n int) ([]float32, error) {
	f, err := x.shard(name)
	if err != nil {
		return nil, err
	}
	return f.Float32Rows(name, row, n)
}

// Raw returns a float tensor's stored bytes and Info (see File.Raw).
func (x *Index) Raw(name string) ([]byte, Info, error) {
	f, err := x.shard(name)
	if err != nil {
		return nil, Info{}, err
	}
	return f.Raw(name)
}

// Bytes implements ByteSource.
func (x *Index) Bytes(name string) ([]byte, error) {
	f, err := x.shard(name)
	if err != nil {
		return nil, err
	}
	return f.Bytes(name)
}
