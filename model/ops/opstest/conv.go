package opstest

import "math/rand/v2"

// convCases: placeholder until the family lands.
func convCases(cfg Config, rng *rand.Rand) []Case { return nil }
