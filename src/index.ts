// tinyseek's public API: the reference and everything a notebook, a test or another program needs. Backends
// load by name (loadBackend) or from their own entry points, `tinyseek/wasm` and `tinyseek/webgpu`.

export * from "./tensor.ts";
export { TinyseekError, argError } from "./errors.ts";
export { Random, randn, randBounded } from "./random.ts";
export * as ops from "./ops.ts";
export { ropeFrequencies, applyRope, yarnSoftmaxFactor } from "./rope.ts";
export * as masks from "./masks.ts";
export { attention } from "./attention/attention.ts";
export { decayAttention, retnetGammas } from "./attention/decay.ts";
export { mla, initMla, createMlaCache } from "./attention/mla.ts";
export { dsa, initDsa, createDsaCache } from "./attention/dsa.ts";
export { segmentedAttention, initSegmented, createSegmentedState } from "./attention/segmented.ts";
export { sparseAttention, initSparse, createSparseState } from "./attention/sparse.ts";
export { crossModalAttention, earlyFusion, initCrossModal } from "./attention/crossmodal.ts";
export { patchEmbed, initPatchEmbedding, readPpm } from "./attention/patch.ts";
export { spaceChannelTimeAttention, initVideoAttention } from "./attention/video.ts";
export { moeLayer, initMoe, routeTokens } from "./moe/layer.ts";
export { route } from "./moe/router.ts";
export { reference, type Kernels, type FusedAttentionOptions } from "./kernels.ts";
export { loadBackend, referenceBackend, NotSupportedError, BACKENDS, type Backend } from "./backend.ts";
export { resolveConfig, validateConfig, type ModelConfig } from "./model/config.ts";
export { preset, PRESET_NAMES } from "./model/presets.ts";
export { countParameters } from "./model/params.ts";
export { encode, decode, BOS, EOS, PAD, IMG, VOCAB_SIZE } from "./model/tokenizer.ts";
export { initModel, loadModel, saveModel, type Model } from "./model/weights.ts";
export { forward, forwardBatch } from "./model/model.ts";
export { createCache } from "./model/cache.ts";
export { generate } from "./model/generate.ts";
export { runBatched } from "./model/batching.ts";
export { depthSweep } from "./model/depth.ts";
export { createTrace, saveTrace, compareTraces } from "./trace.ts";
export { stepRecord } from "./step/record.ts";
export { readSafetensors, writeSafetensors, readSafetensorsFile, writeSafetensorsFile, SafetensorsError } from "./io/safetensors.ts";
export { goldenSuite } from "./golden/suite.ts";
export { checkGolden, compareGolden, writeGoldenCase } from "./io/golden.ts";
export * as quant from "./quant/index.ts";
export { initLora, mergeLora, unmergeLora, loraLinear, initBottleneck, bottleneck } from "./adapters.ts";
