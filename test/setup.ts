// fast-check's seed: FC_SEED when given (to replay a failure), a fixed one under CI so that a landing is judged
// on the same cases every time, and a fresh one otherwise so that local runs keep exploring.
import fc from "fast-check";

const seed = process.env.FC_SEED ?? (process.env.CI ? "20261123" : undefined);
if (seed !== undefined) fc.configureGlobal({ seed: Number(seed) });
