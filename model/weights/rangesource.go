package weights

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// RangeSource is a file whose bytes are read by range: a local file, an
// object behind HTTP range requests, and (in the browser) fetch. ReadAt
// has io.ReaderAt's contract; Size is the file's length in bytes.
type RangeSource interface {
	io.ReaderAt
	Size() int64
}

// Files opens the files of a pack (its manifest and shards) by name,
// relative to one place: a folder, a URL prefix.
type Files interface {
	Open(name string) (RangeSource, error)
}

// ErrRangeIgnored is returned when an HTTP server answers a range request
// with the whole file (200) instead of the range (206): reading on would
// download everything, so we stop.
var ErrRangeIgnored = errors.New("server ignored the Range header")

// FileRange is a local file read by range. BytesRead counts the bytes
// ReadAt returned.
type FileRange struct {
	f    *os.File
	size int64
	n    atomic.Int64
}

// OpenFileRange opens a local file for range reads. Close it when done.
func OpenFileRange(path string) (*FileRange, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("weights: %w", err)
	}
	return &FileRange{f: f, size: st.Size()}, nil
}

// ReadAt implements io.ReaderAt.
func (r *FileRange) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.f.ReadAt(p, off)
	r.n.Add(int64(n))
	return n, err
}

// Size is the file's length.
func (r *FileRange) Size() int64 { return r.size }

// BytesRead is the number of bytes read so far.
func (r *FileRange) BytesRead() int64 { return r.n.Load() }

// Close closes the file.
func (r *FileRange) Close() error { return r.f.Close() }

// String is the file's path.
func (r *FileRange) String() string { return r.f.Name() }

// Dir is a folder of local files. Names must be local (no "..", not
// absolute). BytesRead counts the bytes read through every file it opened.
type Dir struct {
	Path string
	n    atomic.Int64
}

// Open implements Files. The file stays open until the process ends or
// the caller closes it through io.Closer.
func (d *Dir) Open(name string) (RangeSource, error) {
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return nil, fmt.Errorf("weights: %w: file name %q is not inside %s", ErrFormat, name, d.Path)
	}
	f, err := OpenFileRange(filepath.Join(d.Path, filepath.FromSlash(name)))
	if err != nil {
		return nil, err
	}
	return &countedFile{f, &d.n}, nil
}

// BytesRead is the number of bytes read through the files Open returned.
func (d *Dir) BytesRead() int64 { return d.n.Load() }

type countedFile struct {
	*FileRange
	total *atomic.Int64
}

func (c *countedFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.FileRange.ReadAt(p, off)
	c.total.Add(int64(n))
	return n, err
}

// HTTPRange is one object read with HTTP range requests. Every ReadAt is
// one GET with "Range: bytes=a-b"; the answer must be 206 with a matching
// Content-Range. A 200 answer (the server ignored Range) is ErrRangeIgnored
// unless the whole object was asked for. BytesRead counts body bytes
// received.
type HTTPRange struct {
	url    string
	client *http.Client
	ctx    context.Context
	size   int64
	n      atomic.Int64
	shared *atomic.Int64 // the HTTPFiles total, or nil
}

// OpenHTTPRange learns the object's size with a one-byte range request
// (not HEAD, which some edge runtimes answer badly) and returns the
// source. client nil means http.DefaultClient.
func OpenHTTPRange(ctx context.Context, client *http.Client, rawURL string) (*HTTPRange, error) {
	if client == nil {
		client = http.DefaultClient
	}
	r := &HTTPRange{url: rawURL, client: client, ctx: ctx}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	req.Header.Set("Range", "bytes=0-0")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		_, _, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || total < 0 {
			return nil, fmt.Errorf("weights: %s: bad Content-Range %q", rawURL, resp.Header.Get("Content-Range"))
		}
		n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 2))
		r.n.Add(n)
		r.size = total
	case http.StatusRequestedRangeNotSatisfiable: // an empty object: "bytes */0"
		cr := resp.Header.Get("Content-Range")
		if cr != "bytes */0" {
			return nil, fmt.Errorf("weights: %s: 416 with Content-Range %q", rawURL, cr)
		}
	case http.StatusOK:
		return nil, fmt.Errorf("weights: %s: %w (answered 200 to a 1-byte range request; Content-Length %d)", rawURL, ErrRangeIgnored, resp.ContentLength)
	default:
		return nil, fmt.Errorf("weights: %s: %s", rawURL, resp.Status)
	}
	return r, nil
}

// parseContentRange parses "bytes first-last/total" (total -1 for "*").
func parseContentRange(s string) (first, last, total int64, err error) {
	bad := fmt.Errorf("bad Content-Range %q", s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if first, err = strconv.ParseInt(a, 10, 64); err != nil || first < 0 {
		return 0, 0, 0, bad
	}
	if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
		return 0, 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= last {
			return 0, 0, 0, bad
		}
	}
	return first, last, total, nil
}

// Size is the object's length.
func (r *HTTPRange) Size() int64 { return r.size }

// BytesRead is the number of body bytes received so far.
func (r *HTTPRange) BytesRead() int64 { return r.n.Load() }

// String is the URL.
func (r *HTTPRange) String() string { return r.url }

// ReadAt implements io.ReaderAt with one range request.
func (r *HTTPRange) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("weights: %s: negative offset %d", r.url, off)
	}
	if off >= r.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := min(int64(len(p)), r.size-off)
	if want == 0 {
		return 0, nil
	}
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return 0, fmt.Errorf("weights: %w", err)
	}
	last := off + want - 1
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, last))
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("weights: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		a, b, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || a != off || b != last || (total >= 0 && total != r.size) {
			return 0, fmt.Errorf("weights: %s: asked for bytes %d-%d of %d, got Content-Range %q", r.url, off, last, r.size, resp.Header.Get("Content-Range"))
		}
	case http.StatusOK:
		// Only acceptable when the request covered the whole object.
		if off != 0 || want != r.size {
			return 0, fmt.Errorf("weights: %s: %w (asked for bytes %d-%d of %d)", r.url, ErrRangeIgnored, off, last, r.size)
		}
	default:
		return 0, fmt.Errorf("weights: %s: bytes %d-%d: %s", r.url, off, last, resp.Status)
	}
	n, err := io.ReadFull(io.LimitReader(resp.Body, want), p[:want])
	r.n.Add(int64(n))
	if r.shared != nil {
		r.shared.Add(int64(n))
	}
	if err != nil {
		return n, fmt.Errorf("weights: %s: bytes %d-%d: %w", r.url, off, last, err)
	}
	if int64(len(p)) > want {
		return n, io.EOF
	}
	return n, nil
}

// HTTPFiles opens the objects under a base URL ("https://host/packs/x/").
// Names must be relative paths without "..". BytesRead counts body bytes
// received through every object it opened.
type HTTPFiles struct {
	Base   string
	Client *http.Client    // nil: http.DefaultClient
	Ctx    context.Context // nil: context.Background()
	n      atomic.Int64
}

// Open implements Files.
func (h *HTTPFiles) Open(name string) (RangeSource, error) {
	if name == "" || path.IsAbs(name) || strings.Contains(name, "\\") || !filepath.IsLocal(name) || path.Clean(name) != name {
		return nil, fmt.Errorf("weights: %w: file name %q is not below %s", ErrFormat, name, h.Base)
	}
	base, err := url.Parse(h.Base)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	ref := &url.URL{Path: name}
	u := base.ResolveReference(ref).String()
	ctx := h.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	r, err := OpenHTTPRange(ctx, h.Client, u)
	if err != nil {
		return nil, err
	}
	h.n.Add(r.n.Load())
	r.shared = &h.n
	return r, nil
}

// BytesRead is the number of body bytes received so far.
func (h *HTTPFiles) BytesRead() int64 { return h.n.Load() }
