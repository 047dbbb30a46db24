package opstest

import "math/rand/v2"

// attentionCases: placeholder until the family lands.
func attentionCases(cfg Config, rng *rand.Rand) []Case { return nil }
