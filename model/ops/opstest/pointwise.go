package opstest

import "math/rand/v2"

// pointwiseCases: placeholder until the family lands.
func pointwiseCases(cfg Config, rng *rand.Rand) []Case { return nil }
