// The test runner's side of gpu/native-stderr.ts. vitest's workers get a socket for stderr, which a process cannot
// reopen, so Dawn's known noise leaves them and reaches the runner, which writes each worker's stderr to its own.
// vitest.config.ts installs this filter on the runner's stderr: complete lines that are Dawn's noise are dropped,
// every other byte passes as it came (the check is only made on chunks that mention the noise at all).
import { withoutNoise } from "../gpu/native-stderr.ts";

const MARKERS = ["artificially reduced", "Couldn't load Vulkan"];

/** `chunk` without the complete lines that are Dawn's noise; anything it cannot decode exactly passes untouched. */
export function filterChunk(chunk: unknown): unknown {
  if (typeof chunk === "string") {
    if (!MARKERS.some((m) => chunk.includes(m))) return chunk;
    const end = chunk.lastIndexOf("\n") + 1; // the text after the last newline may be half a line: kept as it is
    return withoutNoise(chunk.slice(0, end)) + chunk.slice(end);
  }
  if (!(chunk instanceof Uint8Array)) return chunk;
  const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (!MARKERS.some((m) => bytes.includes(m))) return chunk;
  const end = bytes.lastIndexOf(0x0a) + 1;
  const lines = bytes.subarray(0, end).toString("utf8");
  if (!Buffer.from(lines, "utf8").equals(bytes.subarray(0, end))) return chunk; // a character cut by the chunking
  return Buffer.concat([Buffer.from(withoutNoise(lines), "utf8"), bytes.subarray(end)]);
}

/** Filters every write to `stream` through filterChunk. */
export function dropDawnNoise(stream: NodeJS.WriteStream): void {
  const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => write(filterChunk(chunk), ...rest)) as typeof stream.write;
}
