package opstest

import "math/rand/v2"

// normCases: placeholder until the family lands.
func normCases(cfg Config, rng *rand.Rand) []Case { return nil }
