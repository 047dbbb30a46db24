package dit

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
)

// Plan is what depends only on the geometry of a forward pass, the latent
// size and the caption lengths: the RoPE tables of the three stages and the
// key lengths of the masked attentions. It is built once per geometry (the
// model caches it) and reused by every denoising step.
type Plan struct {
	B, Lc   int   // batch, padded caption length
	Hp, Wp  int   // patch rows and columns (latent H/p, W/p)
	CapLens []int // real caption tokens per entry
	N       int   // image tokens, Hp·Wp
	S       int   // joint length, max_b(CapLens[b] + N)

	csCap    *ops.Tensor // (1, Lc, Dh/2, 2) caption ids (k, 0, 0), shared by the batch
	csImg    *ops.Tensor // (B, N, Dh/2, 2) image ids (CapLens[b], r, q)
	csJoint  *ops.Tensor // (B, S, Dh/2, 2) [caption ids; image ids; padding (0,0,0)]
	capLen   *ops.Tensor // (B) caption key lengths; nil when no caption is padded
	jointLen *ops.Tensor // (B) joint key lengths; nil when no joint sequence is padded
	zeros    *ops.Tensor // (maxPad·D) zeros for the joint padding rows; nil without padding

	residual *ops.Tensor // (B·S, D) the joint layers' last output − input per entry (JointCache)
	hasRes   []bool      // per entry: residual holds a value
}

func planKey(B, Lc, Hp, Wp int, capLens []int) string {
	var sb strings.Builder
	for _, v := range append([]int{B, Lc, Hp, Wp}, capLens...) {
		sb.WriteString(strconv.Itoa(v))
		sb.WriteByte(',')
	}
	return sb.String()
}

// plan returns the cached plan of this geometry, building it on first use.
func (m *Model) plan(B, Lc, H, W int, capLens []int) (*Plan, error) {
	p := m.Cfg.PatchSize
	Hp, Wp := H/p, W/p
	key := planKey(B, Lc, Hp, Wp, capLens)
	if pl, ok := m.plans[key]; ok {
		return pl, nil
	}
	pl, err := m.newPlan(B, Lc, Hp, Wp, capLens)
	if err != nil {
		return nil, err
	}
	if m.plans == nil {
		m.plans = map[string]*Plan{}
	}
	m.plans[key] = pl
	return pl, nil
}

func (m *Model) newPlan(B, Lc, Hp, Wp int, capLens []int) (*Plan, error) {
	c := m.Cfg
	pl := &Plan{B: B, Lc: Lc, Hp: Hp, Wp: Wp, CapLens: slices.Clone(capLens), N: Hp * Wp}
	maxCap, minJoint := 0, math.MaxInt
	for _, n := range capLens {
		maxCap = max(maxCap, n)
		minJoint = min(minJoint, n+pl.N)
	}
	pl.S = maxCap + pl.N
	// The original's RoPE tables stop at axes_lens (spec §3.5).
	if maxCap >= c.AxesLens[0] || Hp > c.AxesLens[1] || Wp > c.AxesLens[2] {
		return nil, fmt.Errorf("dit: caption of %d tokens or %d×%d patches exceed the RoPE tables (axes_lens %v)", maxCap, Hp, Wp, c.AxesLens)
	}
	half := c.HeadDim() / 2
	ids := positionIDs(capLens, Hp, Wp)
	capIDs := make([][3]int, Lc)
	for k := range capIDs {
		capIDs[k] = [3]int{k, 0, 0}
	}
	imgIDs := make([][3]int, 0, B*pl.N)
	for b, n := range capLens {
		imgIDs = append(imgIDs, ids[b][n:n+pl.N]...)
	}
	var err error
	upload := func(values []float32, shape ...int) *ops.Tensor {
		if err != nil {
			return nil
		}
		var t *ops.Tensor
		if t, err = m.b.New(tensor.F32, shape...); err != nil {
			return nil
		}
		if err = m.b.Write(t, values); err != nil {
			m.b.Release(t)
			return nil
		}
		return t
	}
	pl.csCap = upload(ropeTable(capIDs, c.AxesDims, c.RopeTheta), 1, Lc, half, 2)
	pl.csImg = upload(ropeTable(imgIDs, c.AxesDims, c.RopeTheta), B, pl.N, half, 2)
	pl.csJoint = upload(ropeTable(slices.Concat(ids...), c.AxesDims, c.RopeTheta), B, pl.S, half, 2)
	if slices.Min(capLens) < Lc {
		pl.capLen = upload(lengths(capLens, 0), B)
	}
	if minJoint < pl.S {
		pl.jointLen = upload(lengths(capLens, pl.N), B)
		pl.zeros = upload(make([]float32, (pl.S-minJoint)*c.Dim), (pl.S-minJoint)*c.Dim)
	}
	if err != nil {
		pl.release(m.b)
		return nil, fmt.Errorf("dit: plan: %w", err)
	}
	return pl, nil
}

func lengths(capLens []int, plus int) []float32 {
	v := make([]float32, len(capLens))
	for i, n := range capLens {
		v[i] = float32(n + plus)
	}
	return v
}

func (pl *Plan) release(b ops.Backend) {
	if pl.residual != nil {
		b.Release(pl.residual)
	}
	for _, t := range []*ops.Tensor{pl.csCap, pl.csImg, pl.csJoint, pl.capLen, pl.jointLen, pl.zeros} {
		if t != nil {
			b.Release(t)
		}
	}
}

// positionIDs returns the joint sequence's position ids per entry, padded
// to S = max_b(capLens[b]) + Hp·Wp rows (spec §3.5): caption token k is
// (k, 0, 0), image token (r, q) is (capLens[b], r, q) in row-major patch
// order, padding rows (0, 0, 0).
func positionIDs(capLens []int, Hp, Wp int) [][][3]int {
	S := slices.Max(capLens) + Hp*Wp
	ids := make([][][3]int, len(capLens))
	for b, n := range capLens {
		ids[b] = make([][3]int, S)
		for k := range n {
			ids[b][k] = [3]int{k, 0, 0}
		}
		for r := range Hp {
			for q := range Wp {
				ids[b][n+r*Wp+q] = [3]int{n, r, q}
			}
		}
	}
	return ids
}

// ropeTable returns (len(ids), Dh/2, 2) cos/sin pairs: pair m belongs to
// axis a (the axes' pairs concatenated, axis 0 first) with frequency
// ω_k = 1/θ^(2k/d_a) and angle pos_a·ω_k. As the original
// (NextDiT.precompute_freqs_cis), frequencies and products are float64,
// the angle is rounded to float32 and cos/sin are taken of that.
func ropeTable(ids [][3]int, axesDims []int, theta float64) []float32 {
	half := 0
	for _, d := range axesDims {
		half += d / 2
	}
	cs := make([]float32, len(ids)*half*2)
	m0 := 0
	for a, d := range axesDims {
		for k := range d / 2 {
			w := 1 / math.Pow(theta, float64(2*k)/float64(d))
			for i, id := range ids {
				phi := float64(float32(float64(id[a]) * w))
				sin, cos := math.Sincos(phi)
				j := (i*half + m0 + k) * 2
				cs[j], cs[j+1] = float32(cos), float32(sin)
			}
		}
		m0 += d / 2
	}
	return cs
}
