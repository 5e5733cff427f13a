// Placeholder until the WASM issue lands: nothing to build yet.
