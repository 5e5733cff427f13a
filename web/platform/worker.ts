// A module Web Worker, typed here rather than through the DOM library, so that this folder also type-checks in
// the project's Node configuration (the tests import web/platform/backends.ts).

export interface BrowserWorker {
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: { message?: string }) => void) | null;
  postMessage(message: unknown): void;
  terminate(): void;
}

export type WorkerConstructor = new (url: URL, options: { type: "module"; name: string }) => BrowserWorker;

/**
 * The engine's Worker class. Callers write `new Worker(new URL("./x.ts", import.meta.url), { type: "module" })`
 * with it, literally: that is the form the bundler recognises and builds into a worker chunk.
 */
export function workerClass(what: string): WorkerConstructor {
  const Worker = (globalThis as unknown as { Worker?: WorkerConstructor }).Worker;
  if (!Worker) throw new Error(`${what}: this engine has no Web Workers`);
  return Worker;
}
