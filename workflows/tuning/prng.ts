/**
 * The tuner's random numbers: mulberry32, a 32-bit generator whose whole state is one integer, so a study keeps it
 * in its workflow state (and could carry it across continue-as-new) and the same seed draws the same trials.
 * Workflow code must not use Math.random for this: the SDK's is seeded per run, not by the study's spec.
 */
export interface Rng {
  /** The generator's state; advanced by every draw. */
  state: number;
}

export function createRng(seed: number): Rng {
  // Spread small seeds over the 32 bits so seeds 1 and 2 do not start alike.
  return { state: Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0 };
}

/** A uniform number in [0, 1). */
export function nextFloat(rng: Rng): number {
  rng.state = (rng.state + 0x6d2b79f5) >>> 0;
  let t = rng.state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** A uniform integer in [0, n). */
export function nextInt(rng: Rng, n: number): number {
  return Math.min(n - 1, Math.floor(nextFloat(rng) * n));
}

/** A standard normal draw (Box–Muller). */
export function nextGaussian(rng: Rng): number {
  const u = Math.max(nextFloat(rng), 1e-12);
  const v = nextFloat(rng);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
