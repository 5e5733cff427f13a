// One way for every backend-parameterised suite to start a backend: before a describe's tests, after them dispose.
// A backend that cannot start here fails its tests, except an optional one (WebGPU without an adapter, an engine
// feature this Node lacks) outside CI, which skips each test with its one-line reason; under CI=true it fails too.
import { afterAll, beforeAll } from "vitest";

export interface BackendRow<B> {
  name: string;
  create: () => Promise<B>;
  /** May be missing here (no GPU adapter): skips outside CI, fails under CI=true. */
  optional?: boolean;
}

/** Call inside a describe: `ready(context)` gives the started backend, or skips the test naming why. */
export function startBackend<B>(row: BackendRow<B>, dispose: (b: B) => Promise<void>): { ready(context: { skip(note: string): void }): B } {
  let backend: B | undefined;
  let reason = "";
  beforeAll(async () => {
    try {
      backend = await row.create();
    } catch (error) {
      if (!row.optional || process.env.CI === "true") throw error;
      reason = (error as Error).message.split("\n")[0]!;
    }
  });
  afterAll(async () => {
    if (backend) await dispose(backend);
  });
  return {
    ready(context) {
      if (backend === undefined) context.skip(`${row.name} unavailable: ${reason}`);
      return backend!;
    },
  };
}
